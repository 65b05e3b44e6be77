"""``featurebus monitoring drift VIEW`` and ``featurebus monitoring parity SERVICE``: the drift and
live-parity reports of the control plane (``serving/control/routes_quality.py``), read through the
login of ``featurebus login`` like the other control-plane commands. A table on a terminal, the
control plane's JSON document with ``--json``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from featurebus.cli_jobs import AsJson
from featurebus.control_client import ControlClient
from featurebus.schemas.time import from_epoch_ms

__all__ = ["drift", "parity", "register_report_commands"]

console = Console(soft_wrap=True)

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", "-w", help="Workspace (default: the selected one).")
]


def _workspace(workspace: str | None) -> str:
    from featurebus.platform.config import selected_workspace

    return workspace or selected_workspace(None)


def _get(path: str, **params: Any) -> Any:
    client = ControlClient.from_config()
    try:
        return client.get(path, **params)
    finally:
        client.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _time(ms: Any) -> str:
    return "-" if ms is None else from_epoch_ms(int(ms)).strftime("%Y-%m-%dT%H:%MZ")


def drift(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    reference_dataset: Annotated[
        str | None, typer.Option("--reference-dataset", help="A saved dataset as the reference.")
    ] = None,
    reference_start: Annotated[
        str | None, typer.Option("--reference-start", help="Reference window start (epoch ms or ISO 8601).")
    ] = None,
    reference_end: Annotated[
        str | None, typer.Option("--reference-end", help="Reference window end (epoch ms or ISO 8601).")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="Compared range start (default: 24 buckets).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Compared range end (default: newest request).")] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="hour or day.")] = "hour",
    workspace: WorkspaceOption = None,
    as_json: AsJson = False,
) -> None:
    """Drift of the view's served (logged) values against a reference, per feature: the monitor's
    last report, or computed now when a reference or range is given."""
    name = _workspace(workspace)
    report = _get(
        f"/v1/workspaces/{name}/feature-views/{view}/drift",
        reference_dataset=reference_dataset,
        reference_start=reference_start,
        reference_end=reference_end,
        start=start,
        end=end,
        bucket=bucket,
    )
    if as_json:
        typer.echo(json.dumps(report))
        return
    console.print(
        f"Drift of {report['featureView']} in {report['workspace']}: {_time(report.get('startMs'))} to "
        f"{_time(report.get('endMs'))}, reference {json.dumps(report.get('reference'))}",
        highlight=False,
        markup=False,
    )
    table = Table("feature", "status", "latest bucket", "psi", "buckets")
    for feature in report["features"]:
        if not feature["comparable"]:
            table.add_row(feature["feature"], f"not comparable ({feature['dtype']})", "-", "-", "0")
            continue
        latest = feature["latest"]
        table.add_row(
            feature["feature"],
            "-" if latest is None else latest["status"],
            "-" if latest is None else _time(latest["bucketStartMs"]),
            _cell(feature["psi"]),
            str(len(feature["buckets"])),
        )
    console.print(table)


def parity(
    service: Annotated[str, typer.Argument(help="The feature service (with logging).")],
    workspace: WorkspaceOption = None,
    as_json: AsJson = False,
) -> None:
    """The live parity monitor's last round: logged served vectors recomputed through the
    training-set path, mismatches per feature."""
    name = _workspace(workspace)
    report = _get(f"/v1/workspaces/{name}/feature-services/{service}/parity")
    if as_json:
        typer.echo(json.dumps(report))
        return
    console.print(
        f"Parity of {report['featureService']} in {report['workspace']}: {report['checkedRequests']} logged "
        f"requests checked (floats within {report['relativeTolerance']:g} relative)",
        highlight=False,
        markup=False,
    )
    table = Table("feature view", "feature", "checked", "mismatches", "mismatch ratio")
    for feature in report["features"]:
        table.add_row(
            feature["featureView"],
            feature["feature"],
            str(feature["checked"]),
            str(feature["mismatches"]),
            _cell(feature["mismatchRatio"]),
        )
    console.print(table)
    for feature in report["features"]:
        for example in feature["examples"]:
            console.print(
                f"  {feature['featureView']}.{feature['feature']} request {example['requestId']} at "
                f"{example['requestTime']} {json.dumps(example['keys'])}: served {example['served']!r}, "
                f"offline {example['offline']!r}",
                highlight=False,
                markup=False,
            )


def register_report_commands(app: typer.Typer) -> None:
    """Add ``drift`` and ``parity`` to the ``monitoring`` group."""
    app.command("drift")(drift)
    app.command("parity")(parity)
