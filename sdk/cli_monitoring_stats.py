"""``featurebus monitoring stats VIEW``: the data-quality statistics of a feature view's features
per hour or day, read from the offline store under the platform's home (where the offline
materializer writes them). A table on a terminal, JSON with ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from featurebus.cli_jobs import AsJson, Direct, Home, parse_time
from featurebus.exceptions import InvalidRequestError
from featurebus.schemas.time import from_epoch_ms, now_ms

if TYPE_CHECKING:
    from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["monitoring_app", "stats"]

monitoring_app = typer.Typer(help="Data quality, drift and parity of features.", no_args_is_help=True)
console = Console(soft_wrap=True)

_DEFAULT_LOOKBACK_MS = {"hour": 24 * 3_600_000, "day": 7 * 86_400_000}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _applied_spec(name: str, bootstrap: str | None, home: Path | None) -> WorkspaceSpec | None:
    """Logged in (and no --bootstrap): from the control plane, which checks the viewer role and
    needs no Kafka credentials; else from the registry on the bus. The statistics themselves are
    files under the home either way (as training sets are)."""
    from featurebus.platform.config import control_login, resolve_bootstrap

    if bootstrap is None and control_login(home)[1] is not None:
        from featurebus.cli_control import current_spec
        from featurebus.control_client import ControlClient

        client = ControlClient.from_config(home)
        try:
            return current_spec(client, name)
        finally:
            client.close()
    from featurebus.platform.registry import KafkaRegistry

    return KafkaRegistry(resolve_bootstrap(bootstrap)).get(name)


@monitoring_app.command("stats")
def stats(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    feature: Annotated[str | None, typer.Option("--feature", help="Only this feature.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO 8601 start (default: 24 hours, or 7 days with --granularity day)."),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end (default: now).")] = None,
    granularity: Annotated[str, typer.Option("--granularity", help="hour or day.")] = "hour",
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Workspace (default: the selected one).")
    ] = None,
    as_json: AsJson = False,
    bootstrap: Direct = None,
    home: Home = None,
) -> None:
    """Row count, null rate, min, max, mean, stddev, quantiles, distinct count and histogram per
    feature and bucket of event time; a bucket without data says so."""
    from featurebus.platform.config import home_dir, selected_workspace
    from featurebus.platform.monitoring.quality import Granularity
    from featurebus.platform.monitoring.quality_report import monitored_view, view_statistics
    from featurebus.platform.monitoring.quality_store import QualityStore

    if granularity not in _DEFAULT_LOOKBACK_MS:
        raise InvalidRequestError(f"--granularity must be hour or day, got {granularity!r}")
    name = workspace or selected_workspace(home)
    spec = _applied_spec(name, bootstrap, home)
    if spec is None:
        raise InvalidRequestError(f"no workspace named {name!r}; `featurebus workspace list` shows them")
    view_spec = monitored_view(spec, view)
    end_ms = parse_time(until, "--until") if until else now_ms()
    start_ms = parse_time(since, "--since") if since else end_ms - _DEFAULT_LOOKBACK_MS[granularity]
    root = Path(home).resolve() / "offline" if home is not None else home_dir() / "offline"
    rows = view_statistics(
        QualityStore(root),
        name,
        view_spec,
        feature=feature,
        granularity=Granularity[granularity.upper()],
        since_ms=start_ms,
        until_ms=end_ms,
    )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("feature", "bucket", "rows", "null rate", "min", "max", "mean", "stddev", "p50", "distinct")
    for row in rows:
        bucket = from_epoch_ms(row["bucket_start_ms"]).strftime("%Y-%m-%dT%H:%MZ")
        if not row["has_data"]:
            table.add_row(row["feature"], bucket, "no data", *["-"] * 7)
            continue
        quantiles = row["quantiles"] or {}
        table.add_row(
            row["feature"],
            bucket,
            str(row["row_count"]),
            *(_cell(row[k]) for k in ("null_rate", "min", "max", "mean", "stddev")),
            _cell(quantiles.get("0.5")),
            _cell(row["distinct_estimate"]),
        )
    console.print(table)
