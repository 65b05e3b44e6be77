"""``featurebus materialize`` and ``featurebus jobs ...``: thin shells over
``featurebus.platform.jobs``. Tables on a terminal, plain tab-separated lines otherwise."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from featurebus.exceptions import InvalidRequestError
from featurebus.schemas.time import from_epoch_ms, now_ms, parse_iso_ms

if TYPE_CHECKING:
    from featurebus.platform.registry.jobs import JobStore
    from featurebus.schemas.jobs import Job

__all__ = ["jobs_app", "materialize"]

jobs_app = typer.Typer(
    help="Materialization and compaction jobs: list, show, cancel, retry, and the runner.", no_args_is_help=True
)
console = Console(soft_wrap=True)

Bootstrap = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap (default: FEATUREBUS_KAFKA_BOOTSTRAP or the local broker)."),
]
Home = Annotated[
    Path | None, typer.Option("--home", help="State directory (default: FEATUREBUS_HOME or ./.featurebus).")
]
Workspace = Annotated[
    str, typer.Option("--workspace", "-w", help="Workspace name (default: the selected one, else 'default').")
]
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
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for tools.")]


def parse_time(text: str, option: str) -> int:
    """ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00Z``) to epoch ms; no zone means UTC."""
    try:
        return parse_iso_ms(text)
    except ValueError:
        raise InvalidRequestError(
            f"{option} {text!r} is not a date or time; use ISO 8601, e.g. 2024-05-01 or "
            "2024-05-01T12:00:00Z (UTC unless a zone is given)"
        ) from None


def _iso(ms: int | None) -> str:
    return "" if ms is None else from_epoch_ms(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open(bootstrap: str | None, workspace: str) -> JobStore:
    from featurebus.platform.config import resolve_bootstrap
    from featurebus.platform.registry import KafkaRegistry

    return KafkaRegistry(resolve_bootstrap(bootstrap)).jobs(workspace)


def _via_control(action: str, workspace: str, job_id: str | None = None, view: str | None = None) -> Any:
    from featurebus.cli_control import jobs_via_control

    return jobs_via_control(action, workspace, job_id, view)


def _job_of(document: dict[str, Any]) -> Job:
    from featurebus.materialization_control import job_from_document

    return job_from_document(document)


def job_document(job: Job) -> dict[str, Any]:
    document = dataclasses.asdict(job)
    document.update(
        kind=job.kind.value,
        state=job.state.value,
        start=_iso(job.start_ms),
        end=_iso(job.end_ms),
        created=_iso(job.created_ms),
        updated=_iso(job.updated_ms),
    )
    return document


def _stores(job: Job) -> str:
    return "+".join(name for name, on in (("online", job.online), ("offline", job.offline)) if on)


def _print_jobs(jobs: list[Job]) -> None:
    columns = ["id", "kind", "view", "start", "end", "stores", "state", "progress", "attempt", "updated", "error"]
    rows = [
        [
            j.id,
            j.kind.value,
            j.view or "",
            _iso(j.start_ms),
            _iso(j.end_ms),
            _stores(j),
            j.state.value,
            f"{j.progress:.0%}",
            str(j.attempt),
            _iso(j.updated_ms),
            j.error or "",
        ]
        for j in jobs
    ]
    if console.is_terminal:
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        typer.echo("\t".join(columns))
        for row in rows:
            typer.echo("\t".join(row))


def _print_job(job: Job) -> None:
    for key, value in job_document(job).items():
        if key.endswith("_ms"):
            continue
        typer.echo(f"{key:>13}: {'' if value is None else value}")


def materialize(
    view: Annotated[str, typer.Argument(help="A batch feature view of the workspace.")],
    start: Annotated[str, typer.Option("--start", help="Start of the range (ISO 8601, UTC unless a zone is given).")],
    end: Annotated[str, typer.Option("--end", help="End of the range, exclusive.")],
    online: Annotated[bool, typer.Option("--online", help="Materialize to the online store.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Materialize to the offline store.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Run even if another job covers an overlapping range.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job to finish (exit 1 unless it succeeds).")
    ] = False,
    workspace: Workspace = "default",
    bootstrap: Direct = None,
) -> None:
    """Queue a materialization (backfill) job of a batch feature view over [start, end); without
    --online/--offline, every store the view materializes to. `featurebus jobs run` runs it."""
    if bootstrap is None:
        from featurebus.cli_control import materialize_via_control

        materialize_via_control(
            workspace,
            view,
            parse_time(start, "--start"),
            parse_time(end, "--end"),
            online=online if online or offline else None,
            offline=offline if online or offline else None,
            overwrite=overwrite,
            wait=wait,
        )
        return
    from featurebus.platform.config import resolve_bootstrap
    from featurebus.platform.jobs.client import submit_materialization, wait_for_job
    from featurebus.platform.registry import KafkaRegistry

    cluster = resolve_bootstrap(bootstrap)
    spec = KafkaRegistry(cluster).get(workspace)
    if spec is None:
        raise InvalidRequestError(
            f"workspace {workspace!r} does not exist or was never applied; `featurebus apply` first"
        )
    store = _open(cluster, workspace)
    try:
        job = submit_materialization(
            store,
            spec,
            view,
            parse_time(start, "--start"),
            parse_time(end, "--end"),
            now_ms(),
            online=online if online or offline else None,
            offline=offline if online or offline else None,
            overwrite=overwrite,
        )
        console.print(
            f"queued job {job.id}: {view} [{_iso(job.start_ms)}, {_iso(job.end_ms)}) to {_stores(job)}", highlight=False
        )
        if wait:
            last: list[str] = []

            def show(current: Job) -> None:
                line = f"{current.state.value} {current.progress:.0%}"
                if last != [line]:
                    console.print(f"job {current.id}: {line}", highlight=False)
                    last[:] = [line]

            done = wait_for_job(store, job.id, on_update=show)
            if done.state.value != "SUCCESS":
                raise InvalidRequestError(f"job {done.id} ended {done.state.value}: {done.error or 'cancelled'}")
    finally:
        store.close()


@jobs_app.command("list")
def jobs_list(
    view: Annotated[str | None, typer.Option("--view", help="Only this view's jobs.")] = None,
    as_json: AsJson = False,
    workspace: Workspace = "default",
    bootstrap: Direct = None,
) -> None:
    """The workspace's jobs, oldest first."""
    if bootstrap is None:
        jobs = [_job_of(d) for d in _via_control("list", workspace, view=view)]
    else:
        store = _open(bootstrap, workspace)
        try:
            jobs = [j for j in store.list() if view is None or j.view == view]
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps([job_document(j) for j in jobs], indent=2))
    else:
        _print_jobs(jobs)


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: AsJson = False, workspace: Workspace = "default", bootstrap: Direct = None) -> None:
    """One job: its range, stores, state, progress, attempts and error."""
    from featurebus.platform.jobs.client import find_job

    if bootstrap is None:
        job = _job_of(_via_control("show", workspace, job_id))
    else:
        store = _open(bootstrap, workspace)
        try:
            job = find_job(store, job_id)
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps(job_document(job), indent=2))
    else:
        _print_job(job)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, workspace: Workspace = "default", bootstrap: Direct = None) -> None:
    """Cancel a queued or running job (a running one stops between chunks; what it wrote stays)."""
    from featurebus.platform.jobs.client import request_cancel

    if bootstrap is None:
        job = _job_of(_via_control("cancel", workspace, job_id))
        console.print(
            f"cancel requested for job {job.id} ({job.state.value}); the job runner cancels it", highlight=False
        )
        return
    store = _open(bootstrap, workspace)
    try:
        job = request_cancel(store, job_id)
    finally:
        store.close()
    console.print(f"cancel requested for job {job.id} ({job.state.value}); the job runner cancels it", highlight=False)


@jobs_app.command("retry")
def jobs_retry(job_id: str, workspace: Workspace = "default", bootstrap: Direct = None) -> None:
    """Run a FAILED or CANCELLED job again, as a new attempt over the same range."""
    from featurebus.platform.jobs.client import retry_job

    if bootstrap is None:
        job = _job_of(_via_control("retry", workspace, job_id))
        console.print(f"job {job.id} queued again (attempt {job.attempt})", highlight=False)
        return
    store = _open(bootstrap, workspace)
    try:
        job = retry_job(store, job_id, now_ms())
    finally:
        store.close()
    console.print(f"job {job.id} queued again (attempt {job.attempt})", highlight=False)


@jobs_app.command("compact")
def jobs_compact(workspace: Workspace = "default", bootstrap: Direct = None) -> None:
    """Queue a compaction of the workspace's offline store (merges small Parquet files)."""
    if bootstrap is None:
        console.print(f"queued compaction job {_via_control('compact', workspace)['id']}", highlight=False)
        return

    from featurebus.platform.config import resolve_bootstrap
    from featurebus.platform.jobs.client import enqueue_compaction
    from featurebus.platform.registry import KafkaRegistry

    cluster = resolve_bootstrap(bootstrap)
    spec = KafkaRegistry(cluster).get(workspace)
    if spec is None:
        raise InvalidRequestError(f"workspace {workspace!r} does not exist")
    store = _open(cluster, workspace)
    try:
        job = enqueue_compaction(store, spec, now_ms())
    finally:
        store.close()
    console.print(f"queued compaction job {job.id}", highlight=False)


@jobs_app.command("run")
def jobs_run(
    workspace: Workspace = "default",
    bootstrap: Bootstrap = None,
    home: Home = None,
    compaction_every_s: Annotated[
        float, typer.Option(help="Compact the offline store this often (0: never).")
    ] = 3600.0,
    compaction_grace_s: Annotated[
        float,
        typer.Option(
            help="Keep merged files' inputs this long (0: delete at once; see featurebus.platform.offline.compaction)."
        ),
    ] = 0.0,
) -> None:
    """Run the workspace's jobs until stopped (one runner per workspace: a new one takes over)."""
    from featurebus.platform.config import home_dir, resolve_bootstrap
    from featurebus.platform.jobs.execute import job_executor
    from featurebus.platform.jobs.runner import RunnerSettings, run_workspace_jobs
    from featurebus.platform.offline.compaction import compaction_work
    from featurebus.platform.registry import KafkaRegistry

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cluster = resolve_bootstrap(bootstrap)
    root = (home.resolve() if home else home_dir()) / "offline"
    settings = RunnerSettings(compaction_every_ms=int(compaction_every_s * 1000) or None)
    try:
        ran = run_workspace_jobs(
            KafkaRegistry(cluster),
            workspace,
            lambda current_spec: job_executor(cluster, root, current_spec, compaction_grace_s),
            stop,
            settings=settings,
            compaction_work=lambda: compaction_work(root, workspace),
        )
    except KeyboardInterrupt:
        stop.set()
        return
    if not ran and not stop.is_set():
        Console(stderr=True).print(
            f"workspace {workspace!r} is a development workspace: it is never materialized; no jobs to run",
            highlight=False,
            markup=False,
        )


def enqueue_plan_backfills(cluster: str, applied: Any, changes: Any) -> None:
    """After ``apply``: queue backfills of the batch views the plan created or flagged for
    re-materialization (stream views re-compute inside the stream worker)."""
    from featurebus.platform.jobs.client import enqueue_apply_backfills

    views = [
        (c.name, c.action != "create")
        for c in changes.changes
        if c.kind == "batch_feature_view" and c.action != "delete" and (c.action == "create" or c.rematerialize)
    ]
    if not views or not applied.live:
        return
    store = _open(cluster, applied.name)
    try:
        jobs, notes = enqueue_apply_backfills(store, applied, views, now_ms())
    finally:
        store.close()
    for job in jobs:
        console.print(
            f"queued backfill job {job.id}: {job.view} [{_iso(job.start_ms)}, {_iso(job.end_ms)})", highlight=False
        )
    for note in notes:
        console.print(f"note: {note}", highlight=False)
