"""The ``featurebus`` command line. Each command is a thin shell over a library call; errors that
featurebus raises on purpose print as one clear line and exit 1, never as a traceback."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from featurebus.exceptions import FeaturebusError
from featurebus.schemas.kinds import StreamEngineKind
from featurebus.schemas.time import from_epoch_ms

if TYPE_CHECKING:
    from featurebus.plan import Plan
    from featurebus.platform.registry import KafkaRegistry
    from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["app", "main"]

app = typer.Typer(help="featurebus: features as code, computed from Kafka, served over HTTP.", no_args_is_help=True)
kafka_app = typer.Typer(help="A local single-node Kafka (KRaft) for development.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys scoped to a workspace.", no_args_is_help=True)
registry_app = typer.Typer(help="The versioned registry of applied definitions.", no_args_is_help=True)
workspace_app = typer.Typer(
    help="Workspaces: live ones are materialized and served, development ones hold definitions only.",
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")
from featurebus.cli_kafka_setup import kafka_setup  # noqa: E402

kafka_app.command("setup")(kafka_setup)  # component principals and ACLs on a secured cluster
app.add_typer(workspace_app, name="workspace")
app.add_typer(keys_app, name="api-key")
app.add_typer(registry_app, name="registry")
# Jobs live in their own module (cli.py is long enough): `featurebus materialize`, `featurebus jobs ...`.
from featurebus.cli_jobs import jobs_app, materialize  # noqa: E402

app.add_typer(jobs_app, name="jobs")
app.command("materialize")(materialize)
# Principals, roles and the audit log exist only with the control plane (cli_access.py).
from featurebus.cli_access import access_app, audit_app, control, login, service_account_app  # noqa: E402

app.add_typer(service_account_app, name="service-account")
app.add_typer(access_app, name="access-control")
app.add_typer(audit_app, name="audit")
app.command("login")(login)
app.command("control")(control)

# The Flink engine's commands: `featurebus flink fetch|submit|cluster start|stop`.
from featurebus.cli_flink import flink_app  # noqa: E402
from featurebus.cli_monitoring import MetricsPort, alerts_app, monitor, view_freshness  # noqa: E402

app.add_typer(alerts_app, name="alerts")
app.command("monitor")(monitor)

app.add_typer(flink_app, name="flink")
from featurebus.cli_deletes import delete_keys_command, destroy_command  # noqa: E402
from featurebus.cli_monitoring_reports import register_report_commands  # noqa: E402
from featurebus.cli_monitoring_stats import monitoring_app  # noqa: E402
from featurebus.cli_test import repo_test_command  # noqa: E402

app.add_typer(monitoring_app, name="monitoring")
register_report_commands(monitoring_app)  # monitoring drift VIEW | parity SERVICE, via the control plane
app.command("delete-keys")(delete_keys_command)
app.command("destroy")(destroy_command)

app.command("test", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(repo_test_command)

console = Console(soft_wrap=True)  # whole lines in pipes and logs; tables still fit the width
err = Console(stderr=True, soft_wrap=True)

Bootstrap = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap (default: FEATUREBUS_KAFKA_BOOTSTRAP or the local broker)."),
]
# Commands that change or read definitions, jobs and keys go through the control plane (the URL and
# key `featurebus login` stored); --bootstrap instead talks to that Kafka cluster directly, as
# before the control plane existed: for the bus's operators (unguarded, unaudited).
Direct = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help=(
            "Bypass the control plane: talk to this Kafka cluster directly (bus admins only, not audited; a "
            "secured bus needs admin Kafka credentials: this home's own broker's are used, else FEATUREBUS_KAFKA_*)."
        ),
    ),
]
Home = Annotated[
    Path | None, typer.Option("--home", help="State directory (default: FEATUREBUS_HOME or ./.featurebus).")
]
Workspace = Annotated[
    str,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace name (default: the one `featurebus workspace select` chose, else 'default').",
    ),
]


def _home(home: Path | None) -> Path:
    from featurebus.platform.config import home_dir

    if home is None:
        return home_dir()
    # Everything this command does (DuckDB's spill folder, state, the processes it starts) looks
    # the home up through home_dir(); one setting here reaches all of it, children included.
    os.environ["FEATUREBUS_HOME"] = str(home.resolve())
    return home_dir()


def _bootstrap(explicit: str | None) -> str:
    from featurebus.platform.config import resolve_bootstrap

    return resolve_bootstrap(explicit)


def _registry(cluster: str, timeout_s: float = 15.0) -> KafkaRegistry:
    from featurebus.platform.registry import KafkaRegistry

    return KafkaRegistry(cluster, timeout_s)


# -- kafka ---------------------------------------------------------------------------------------
@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the Kafka broker jars with Maven into the cache (once)."""
    from featurebus.platform.kafka.runtime import ensure_kafka_jars

    console.print(f"Kafka jars in {ensure_kafka_jars()}")


@kafka_app.command("start")
def kafka_start(home: Home = None) -> None:
    """Start a background broker on 127.0.0.1 (kept until `featurebus kafka stop`)."""
    from featurebus.platform.kafka.broker import LocalKafka

    info = LocalKafka.start_detached(_home(home) / "kafka")
    console.print(f"Kafka running at {info.bootstrap} (pid {info.pid}, started in {info.started_in_s:.1f}s)")


@kafka_app.command("stop")
def kafka_stop(home: Home = None) -> None:
    from featurebus.platform.kafka.broker import LocalKafka

    stopped = LocalKafka.stop_detached(_home(home) / "kafka")
    console.print("Kafka stopped" if stopped else "no local Kafka was running")


@kafka_app.command("status")
def kafka_status(home: Home = None) -> None:
    from featurebus.platform.kafka.broker import LocalKafka

    info = LocalKafka.status_detached(_home(home) / "kafka")
    if info is None:
        console.print("no local Kafka running")
        raise typer.Exit(1)
    console.print(f"Kafka running at {info.bootstrap} (pid {info.pid}); log: {info.log_path}")


# -- definitions -----------------------------------------------------------------------------------
RepoDir = Annotated[Path, typer.Option("--repo", help="Feature repository folder.")]


def _plan_repo(repo: Path, workspace: str, cluster: str) -> tuple[WorkspaceSpec | None, Plan]:
    """The repository's spec diffed against what the registry holds for the workspace now."""
    from featurebus.plan import plan
    from featurebus.repo import load_repo

    desired = load_repo(repo, workspace)
    current = _registry(cluster).get(workspace)
    return current, plan(current, desired)


def _plan_version(workspace: str, version: int, cluster: str) -> tuple[WorkspaceSpec | None, Plan]:
    """An earlier applied version diffed against the current one: a rollback is a new version."""
    from featurebus.plan import plan
    from featurebus.platform.registry import read_version

    registry = _registry(cluster)
    desired = read_version(registry, workspace, version)
    current = registry.get(workspace)
    return current, plan(current, desired)


def _require_workspace(cluster: str, workspace: str) -> None:
    """As Tecton: a workspace is created before anything is applied to it (live or not is a choice)."""
    from featurebus.exceptions import NotFoundError

    if workspace not in _registry(cluster).list():
        raise NotFoundError(
            f"workspace {workspace!r} does not exist; create it with `featurebus workspace create {workspace} --live` "
            f"(materialized and served) or `featurebus workspace create {workspace}` (development: definitions only, "
            "features computed ad hoc from Python)"
        )


def _print_plan(changes: Plan) -> None:
    from featurebus.plan_render import render_plan

    # Markup always: rich drops the styles when stdout is not a terminal. soft_wrap keeps long
    # lines whole instead of breaking them at 80 columns in pipes and logs.
    console.print(render_plan(changes, color=True), highlight=False, soft_wrap=True)


@app.command("plan")
def plan_command(
    repo: RepoDir = Path("."),
    workspace: Workspace = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON for tools.")] = False,
    bootstrap: Direct = None,
) -> None:
    """Show what `apply` would change in the workspace (and what must be re-materialized); changes nothing."""
    if bootstrap is None:
        from featurebus.cli_control import plan_via_control

        plan_via_control(repo, workspace, as_json)
        return
    from featurebus.source_topics import missing_source_topics, missing_topics_note

    cluster = _bootstrap(bootstrap)
    current, changes = _plan_repo(repo, workspace, cluster)
    missing = missing_source_topics(changes.apply_to(current), cluster)
    if as_json:
        from featurebus.plan_render import plan_to_json

        typer.echo(json.dumps({**plan_to_json(changes), "missing_source_topics": missing}, indent=2))
    else:
        _print_plan(changes)
        if missing:
            console.print(f"note: {missing_topics_note(missing, cluster)}", highlight=False, markup=False)


@app.command("apply")
def apply(
    repo: RepoDir = Path("."),
    workspace: Workspace = "default",
    version_to_restore: Annotated[
        int | None,
        typer.Option(
            "--version", help="Re-apply an earlier version from `featurebus registry log` instead of the repository."
        ),
    ] = None,
    create_topics: Annotated[
        bool | None,
        typer.Option(
            "--create-topics/--no-create-topics",
            help="Create the Kafka source topics that do not exist (default: on for the local development broker "
            "`featurebus up` or `featurebus kafka start` runs, off for an external cluster).",
        ),
    ] = None,
    partitions: Annotated[
        int, typer.Option(min=1, help="Partitions of each source topic --create-topics creates.")
    ] = 4,
    bootstrap: Direct = None,
) -> None:
    """Print the plan for the feature repository (or an earlier version), then apply it."""
    if bootstrap is None:
        from featurebus.cli_control import apply_via_control

        apply_via_control(repo, workspace, version_to_restore, create_topics, partitions)
        return
    from featurebus.platform.config import resolve_cluster
    from featurebus.platform.registry import apply_workspace
    from featurebus.source_topics import create_source_topics, missing_source_topics, missing_topics_note

    target = resolve_cluster(bootstrap)
    cluster = target.bootstrap
    _require_workspace(cluster, workspace)
    if version_to_restore is None:
        current, changes = _plan_repo(repo, workspace, cluster)
    else:
        current, changes = _plan_version(workspace, version_to_restore, cluster)
    _print_plan(changes)
    missing = missing_source_topics(changes.apply_to(current), cluster)
    if missing and (target.local if create_topics is None else create_topics):
        create_source_topics(missing, cluster, partitions)
        console.print(
            f"Created source topics {', '.join(missing)} ({partitions} partitions each) on {cluster}",
            highlight=False,
            markup=False,
        )
    elif missing:
        err.print(f"note: {missing_topics_note(missing, cluster)}", highlight=False, markup=False)
    version = current.version if current is not None else 0
    if changes.is_empty:
        console.print(f"No changes; workspace {workspace} stays at v{version}.")
        return
    applied = apply_workspace(_registry(cluster), changes.apply_to(current), create_live=False)
    console.print(
        f"Applied workspace [bold]{workspace}[/] v{applied.version}: {len(applied.entities)} entities, "
        f"{len(applied.stream_sources)} sources, {len(applied.stream_feature_views)} feature views, "
        f"{len(applied.feature_services)} feature services"
    )
    from featurebus.cli_jobs import enqueue_plan_backfills

    enqueue_plan_backfills(cluster, applied, changes)
    # The registry has no compare-and-set: say so when another apply landed after our plan.
    if applied.version != version + 1:
        err.print(
            f"[yellow]note: the workspace moved from v{version} to v{applied.version - 1} while planning; "
            "the plan above was made against the older version. Run `featurebus plan` to review.[/]"
        )


@app.command("describe")
def describe(
    name: Annotated[str, typer.Argument(help="The object's name (entity, source, feature view or feature service).")],
    workspace: Workspace = "default",
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="When several kinds share the name: entity, stream_source, "
            "batch_source, stream_feature_view, feature_table or feature_service.",
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo", help="Describe the repository's definitions instead of the applied ones (works without Kafka)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document for tools.")] = False,
    bootstrap: Direct = None,
) -> None:
    """An object's spec, lineage (source -> views -> services) and materialization state."""
    if bootstrap is None and repo is None:
        _describe_via_control(name, workspace, kind, as_json)
        return
    from featurebus.describe import (
        broker_reachable,
        describe_document,
        find_object,
        holds_data,
        read_state,
        render_description,
    )
    from featurebus.exceptions import KafkaUnavailableError
    from featurebus.platform.kafka.admin import unreachable_hint

    if repo is not None:
        from featurebus.describe import MaterializationState
        from featurebus.repo import load_repo

        spec, origin = load_repo(repo, workspace), f"definitions in {repo}"
        # A repository is described without Kafka: its state is shown only if a cluster is configured.
        try:
            cluster: str | None = _bootstrap(bootstrap)
        except KafkaUnavailableError as exc:
            cluster, unconfigured = None, MaterializationState(False, f"materialization state unknown: {exc}")
    else:
        cluster = _bootstrap(bootstrap)
        if not broker_reachable(cluster, 5.0):
            raise KafkaUnavailableError(
                f"{unreachable_hint(cluster)}; or pass --repo to describe a repository's definitions without Kafka"
            )
        applied = _registry(cluster, timeout_s=5.0).get(workspace)
        if applied is None:
            raise typer.BadParameter(
                f"workspace {workspace!r} has not been applied; run `featurebus apply` "
                "or pass --repo to describe a repository's definitions"
            )
        spec, origin = applied, "applied"
    object_kind, obj = find_object(spec, name, kind)
    state = read_state(cluster, spec, obj) if cluster is not None else (unconfigured if holds_data(obj) else None)
    freshness = view_freshness(workspace, obj.name) if repo is None and holds_data(obj) else None
    doc = describe_document(spec, object_kind, obj, state, origin, freshness)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        console.print(render_description(doc), highlight=False, markup=False)


def _describe_via_control(name: str, workspace: str, kind: str | None, as_json: bool) -> None:
    """The applied spec from the control plane; the materialization state from the bus when this
    machine can reach one (it is Kafka's view of the data), else left out."""
    from featurebus.cli_control import current_spec
    from featurebus.control_client import ControlClient
    from featurebus.describe import (
        broker_reachable,
        describe_document,
        find_object,
        holds_data,
        read_state,
        render_description,
    )

    client = ControlClient.from_config()
    try:
        spec = current_spec(client, workspace)
    finally:
        client.close()
    object_kind, obj = find_object(spec, name, kind)
    state = None
    try:
        cluster = _bootstrap(None)
        if broker_reachable(cluster, 2.0):
            state = read_state(cluster, spec, obj)
    except FeaturebusError:
        pass  # no bus configured here: the definition and lineage are still worth showing
    freshness = view_freshness(workspace, obj.name) if holds_data(obj) else None
    doc = describe_document(spec, object_kind, obj, state, "applied", freshness)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        console.print(render_description(doc), highlight=False, markup=False)


@registry_app.command("log")
def registry_log(workspace: Workspace = "default", bootstrap: Direct = None) -> None:
    """Every applied version of the workspace, newest first, with what each changed (and who applied it)."""
    if bootstrap is None:
        from featurebus.cli_control import registry_log_via_control

        registry_log_via_control(workspace)
        return

    from rich.table import Table

    from featurebus.plan import plan

    history = _registry(_bootstrap(bootstrap)).history(workspace)
    if not history:
        console.print(f"workspace {workspace!r} has no applied versions")
        raise typer.Exit(1)
    table = Table(title=f"registry of workspace {workspace}")
    for column in ("version", "applied at (UTC)", "views", "services", "changes"):
        table.add_column(column)
    previous = None
    rows = []
    for spec in history:
        summary = plan(previous, spec).summary()
        changed = ", ".join(f"{n} {action}" for action, n in summary.items() if n and action != "unchanged")
        applied_at = from_epoch_ms(spec.applied_at_ms).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            (
                f"v{spec.version}",
                applied_at,
                str(len(spec.stream_feature_views)),
                str(len(spec.feature_services)),
                changed or "none",
            )
        )
        previous = spec
    for row in reversed(rows):
        table.add_row(*row)
    console.print(table)


# -- workspaces -------------------------------------------------------------------------------------
@workspace_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Workspace name: letters, digits, '_' and '-'.")],
    live: Annotated[
        bool, typer.Option("--live", help="Materialize online and offline, and serve (default: development).")
    ] = False,
    bootstrap: Direct = None,
) -> None:
    """Create a workspace; `apply` publishes definitions into it."""
    if bootstrap is None:
        from featurebus.cli_control import workspace_via_control

        workspace_via_control("create", name, live=live)
        return
    from featurebus.platform.workspaces import create_workspace

    create_workspace(_registry(_bootstrap(bootstrap)), name, live)
    kind = (
        "live workspace (materialized and served)"
        if live
        else "development workspace (definitions only, never materialized)"
    )
    console.print(f"Created {kind} [bold]{name}[/]; `featurebus workspace select {name}` makes it the default.")


@workspace_app.command("list")
def workspace_list(bootstrap: Direct = None) -> None:
    """Every workspace you hold a role in (all for the admin), live or development; `*` marks the selected one."""
    from featurebus.platform.config import selected_workspace

    selected = selected_workspace()
    for summary in _workspace_summaries(bootstrap):
        mark = "*" if summary["name"] == selected else " "
        version = f"v{summary['version']}" if summary["version"] else "nothing applied"
        console.print(
            f"{mark} {summary['name']}  {'live' if summary['live'] else 'dev'}  {version}, "
            f"{summary['objects']} objects",
            highlight=False,
            markup=False,
        )
    if selected not in {summary["name"] for summary in _workspace_summaries(bootstrap)}:
        err.print(
            f"selected workspace {selected!r} does not exist; `featurebus workspace create {selected}` or "
            "`featurebus workspace select NAME`",
            highlight=False,
            markup=False,
        )


def _workspace_summaries(bootstrap: str | None) -> list[dict[str, Any]]:
    if bootstrap is None:
        from featurebus.cli_control import workspace_via_control

        listed: list[dict[str, Any]] = workspace_via_control("list")
        return listed
    from featurebus.platform.workspaces import list_workspaces, object_count

    return [
        {"name": s.name, "live": s.live, "version": s.version, "objects": object_count(s)}
        for s in list_workspaces(_registry(_bootstrap(bootstrap)))
    ]


@workspace_app.command("select")
def workspace_select(name: Annotated[str, typer.Argument(help="Workspace name.")], bootstrap: Direct = None) -> None:
    """Make NAME the default `--workspace` of every command (kept in FEATUREBUS_HOME/config.json)."""
    from featurebus.exceptions import NotFoundError
    from featurebus.platform.config import select_workspace

    summaries = {summary["name"]: summary for summary in _workspace_summaries(bootstrap)}
    if name not in summaries:
        known = ", ".join(sorted(summaries)) or "none"
        raise NotFoundError(f"no workspace named {name!r} (known: {known}); `featurebus workspace create {name}` first")
    path = select_workspace(name)
    console.print(
        f"Selected workspace {name} ({'live' if summaries[name]['live'] else 'dev'}), saved in {path}",
        highlight=False,
        markup=False,
    )


@workspace_app.command("delete")
def workspace_delete(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    force: Annotated[bool, typer.Option("--force", help="Delete it even though it still holds definitions.")] = False,
    bootstrap: Direct = None,
) -> None:
    """Delete a workspace's definitions and history (its topics and offline files stay)."""
    if bootstrap is None:
        from featurebus.cli_control import workspace_via_control

        workspace_via_control("delete", name, force=force)
        return
    from featurebus.platform.workspaces import delete_workspace

    deleted = delete_workspace(_registry(_bootstrap(bootstrap)), name, force)
    console.print(
        f"Deleted {'live' if deleted.live else 'development'} workspace {name}", highlight=False, markup=False
    )


# -- processes ---------------------------------------------------------------------------------------
EngineOption = Annotated[
    StreamEngineKind,
    typer.Option(
        "--engine",
        envvar="FEATUREBUS_ENGINE",
        help="Stream engine: featurebus's own worker, or a PyFlink job run in this process (needs the flink extra).",
    ),
]


@app.command("worker")
def worker(
    workspace: Workspace = "default",
    bootstrap: Bootstrap = None,
    home: Home = None,
    engine: EngineOption = StreamEngineKind.NATIVE,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the stream worker: source topics -> windowed tiles -> feature topics."""
    if engine == StreamEngineKind.FLINK:
        from featurebus.cli_flink import in_flink_python

        resolved_bootstrap, resolved_home = _bootstrap(bootstrap), _home(home)
        in_flink_python(
            [
                "worker",
                "--engine",
                "flink",
                "--workspace",
                workspace,
                "--bootstrap",
                resolved_bootstrap,
                "--home",
                str(resolved_home),
                "--metrics-port",
                str(metrics_port),
            ]
        )
        from featurebus.streams.runtime.flink.job import run_flink_worker

        run_flink_worker(resolved_bootstrap, workspace, resolved_home, metrics_port=metrics_port)
        return
    from featurebus.streams.runtime.worker import run_worker

    run_worker(_bootstrap(bootstrap), workspace, _home(home), metrics_port=metrics_port)


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option(min=1, help="Serving processes on the port, each with its own online store.")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request on stderr.")] = True,
    bootstrap: Bootstrap = None,
    home: Home = None,
) -> None:
    """Run the serving API; each process has its own online store, materialized from the feature topics."""
    from featurebus.serving.main import run_server

    run_server(
        _bootstrap(bootstrap),
        host=host,
        port=port,
        data_dir=_home(home) / "serving",
        workers=workers,
        access_log=access_log,
    )


@app.command("offline")
def offline(
    workspace: Workspace = "default",
    bootstrap: Bootstrap = None,
    home: Home = None,
    metrics_port: MetricsPort = 0,
    feature_monitor_interval_s: Annotated[
        float,
        typer.Option(
            "--feature-monitor-interval",
            min=0.1,
            envvar="FEATUREBUS_FEATURE_MONITOR_INTERVAL_S",
            help="Seconds between drift and parity rounds.",
        ),
    ] = 30.0,
    drift_bucket_s: Annotated[
        float,
        typer.Option(
            "--drift-bucket",
            min=1.0,
            envvar="FEATUREBUS_DRIFT_BUCKET_S",
            help="Seconds of served requests one drift statistic (featurebus_feature_drift) covers.",
        ),
    ] = 3600.0,
    quality_check_interval_s: Annotated[
        float,
        typer.Option(
            "--quality-check-interval",
            min=0.1,
            envvar="FEATUREBUS_QUALITY_CHECK_INTERVAL_S",
            help="Seconds between re-checks of a view's data-quality expectations at most.",
        ),
    ] = 10.0,
) -> None:
    """Run the offline materializer (source topics -> Parquet, data-quality statistics) and the
    feature monitor (logged features -> Parquet, drift, live parity)."""
    from prometheus_client import REGISTRY

    from featurebus.platform.monitoring.exposition import serve_metrics
    from featurebus.platform.offline.materializer import OfflineMaterializer
    from featurebus.platform.offline.offline_metrics import OfflineCollector
    from featurebus.platform.registry import wait_for_workspace
    from featurebus.platform.served.feature_monitor import FeatureMonitor

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cluster = _bootstrap(bootstrap)
    registry = _registry(cluster)
    try:
        spec = wait_for_workspace(registry, workspace, stop=stop)
        if spec is None:
            return
        if not spec.live:
            err.print(
                f"workspace {workspace!r} is a development workspace: it holds definitions only and is never "
                "materialized; nothing to do (features compute ad hoc from Python: featurebus.get_workspace)",
                highlight=False,
                markup=False,
            )
            return
        materializer = OfflineMaterializer(
            cluster,
            _home(home) / "offline",
            workspace,
            registry=registry,
            quality_check_interval_s=quality_check_interval_s,
        )
        REGISTRY.register(OfflineCollector(workspace, materializer))
        serve_metrics(metrics_port)
        # Feature logging to the offline store, drift and live parity (platform/monitoring/feature_monitor.py).
        monitor = FeatureMonitor(
            cluster,
            _home(home) / "offline",
            materializer.spec,
            interval_s=feature_monitor_interval_s,
            drift_bucket_ms=int(drift_bucket_s * 1000),
        )
        threading.Thread(target=monitor.run_forever, args=(stop,), name="feature-monitor", daemon=True).start()
        materializer.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()


@app.command("training-set")
def training_set(
    spine: Annotated[Path, typer.Option(help="Parquet file: join keys + a timestamp column.")],
    feature_service: Annotated[str, typer.Option("--feature-service", help="Feature service name.")],
    output: Annotated[Path, typer.Option(help="Parquet file to write.")] = Path("training_set.parquet"),
    workspace: Workspace = "default",
    bootstrap: Bootstrap = None,
    home: Home = None,
) -> None:
    """A point-in-time-correct training set for every row of the spine."""
    from featurebus.offline_access import applied_specs_via_control, confirm_before_training_set
    from featurebus.platform.training.training_sets import training_set_from_files

    # Logged in: the definitions come from the control plane (no Kafka credentials needed);
    # --bootstrap (or no login): from the registry on the bus.
    specs = None if bootstrap else applied_specs_via_control(_home(home))
    if specs is None:
        specs = _registry(_bootstrap(bootstrap)).list()
    confirm_before_training_set(specs, workspace, _home(home))  # the control plane's word on the role
    frame = training_set_from_files(specs, _home(home) / "offline", workspace, feature_service, spine, output)
    console.print(f"wrote {len(frame)} rows x {len(frame.columns)} columns to {output}")
    console.print(frame.head(5).to_string())


def _stop_on_signals() -> None:
    """SIGTERM (and Ctrl-C, even when inherited as ignored) unwind through the ``with`` blocks
    that own child processes, so every process ``up`` or ``demo`` started is stopped by PID."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@app.command("up")
def up(
    workspace: Workspace = "default",
    port: int = 8080,
    control_port: Annotated[
        int | None,
        typer.Option("--control-port", help="The control plane's port (default: 8090 when free, else any free port)."),
    ] = None,
    bootstrap: Bootstrap = None,
    home: Home = None,
    engine: EngineOption = StreamEngineKind.NATIVE,
) -> None:
    """Run the whole platform on this machine until Ctrl-C."""
    from featurebus.platform.local.up import LocalPlatform

    _stop_on_signals()
    with LocalPlatform(
        _home(home), workspace, port=port, bootstrap=bootstrap, control_port=control_port, engine=engine
    ) as platform:
        if platform.admin_secret is not None:
            console.print(
                f"An admin API key for this CLI (shown once, saved in "
                f"{_home(home) / 'config.json'}):\n  {platform.admin_secret}",
                highlight=False,
                markup=False,
            )
        console.print(
            f"featurebus is up: Kafka {platform.bootstrap}, serving {platform.serving_url}, "
            f"control plane {platform.control_url}, alert evaluator {platform.monitor_url}; Ctrl-C stops"
        )
        console.print(
            "metrics: " + ", ".join(f"{name} {url}" for name, url in platform.metrics_urls.items()),
            highlight=False,
            markup=False,
        )
        platform.run_until_interrupted()


@app.command("demo")
def demo(
    repo: Annotated[Path, typer.Option(help="Example feature repository.")] = Path("examples/fraud"),
    seconds: Annotated[float, typer.Option(help="How long to stream live events.")] = 10.0,
    home: Home = None,
) -> None:
    """Run the fraud example end to end: apply, stream events, serve, build a training set."""
    from featurebus.platform.local.demo import WORKSPACE, run_demo
    from featurebus.repo import load_repo

    spec = load_repo(repo, WORKSPACE)
    _stop_on_signals()
    run_demo(repo, spec, _home(home) / "demo", live_seconds=seconds, console=console)


# -- api keys ---------------------------------------------------------------------------------------
@keys_app.command("create")
def key_create(
    workspace: Workspace = "default",
    role: Annotated[
        str,
        typer.Option(
            help="viewer | consumer | operator | editor | owner (or the earlier "
            "reader | writer | admin: consumer, editor, owner)"
        ),
    ] = "reader",
    description: str = "",
    bootstrap: Direct = None,
) -> None:
    """Create a service account with ROLE in the workspace and one key; the secret is printed once
    and only its hash is stored."""
    if bootstrap is None:
        from featurebus.cli_control import keys_via_control

        keys_via_control("create", workspace=workspace, role=role, description=description)
        return
    from featurebus.platform.api_keys import create_api_key

    key_id, secret = create_api_key(_registry(_bootstrap(bootstrap)), workspace, role, description)
    console.print(f"key id: {key_id}\nsecret (shown once): {secret}")


@keys_app.command("list")
def key_list(bootstrap: Direct = None) -> None:
    """Your keys (every key for the admin); never a secret."""
    if bootstrap is None:
        from featurebus.cli_control import keys_via_control

        keys_via_control("list")
        return
    from featurebus.platform.api_keys import list_api_keys

    for key in list_api_keys(_registry(_bootstrap(bootstrap))):
        console.print(f"{key['key_id']}  {key['workspace']}  {key['role']}  {key.get('description', '')}")


@keys_app.command("revoke")
def key_revoke(key_id: str, bootstrap: Direct = None) -> None:
    if bootstrap is None:
        from featurebus.cli_control import keys_via_control

        keys_via_control("revoke", key_id=key_id)
        return
    from featurebus.platform.api_keys import revoke_api_key

    revoke_api_key(_registry(_bootstrap(bootstrap)), key_id)
    console.print(f"revoked {key_id}")


def _workspace_defaults(command: Any, selected: str) -> dict[str, Any]:
    """click's ``default_map``: the selected workspace as the default of every ``--workspace``."""
    defaults: dict[str, Any] = {}
    subcommands = getattr(command, "commands", None)  # a group (typer vendors its own click: no isinstance)
    if isinstance(subcommands, dict):
        for name, sub in subcommands.items():
            nested = _workspace_defaults(sub, selected)
            if nested:
                defaults[name] = nested
    elif any(param.name == "workspace" for param in command.params):
        defaults["workspace"] = selected
    return defaults


def main(argv: list[str] | None = None) -> Any:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from typer.main import get_command

        from featurebus.platform.config import selected_workspace

        command = get_command(app)
        return command.main(
            args=argv, standalone_mode=False, default_map=_workspace_defaults(command, selected_workspace())
        )
    except FeaturebusError as exc:
        err.print(f"[red]featurebus: {exc}[/]")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors arrive here with standalone_mode=False
        from click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
