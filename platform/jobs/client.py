"""Submitting and following jobs: what ``featurebus materialize``, ``featurebus jobs ...``, the SDK's
``fv.trigger_materialization_job(...)`` and ``apply`` call. Everything here goes through a
``JobStore`` and only writes what any client may write (see ``featurebus.platform.registry.jobs``): new PENDING jobs, retries
of FAILED or CANCELLED jobs, and cancel requests. The job runner does the rest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from featurebus.platform.jobs.schedule import backfill_ranges, due_ranges, scheduled, stream_backfill_ranges
from featurebus.platform.registry.jobs import JobStore
from featurebus.schemas.errors import InvalidRequestError, JobTimeoutError, NotFoundError
from featurebus.schemas.jobs import Job, JobKind, JobState, new_job, retry
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.cutover import history_range

__all__ = [
    "MANAGED_RETRY_ATTEMPTS",
    "enqueue_apply_backfills",
    "enqueue_compaction",
    "enqueue_scheduled",
    "enqueue_stream_backfills",
    "find_job",
    "request_cancel",
    "retry_job",
    "submit_materialization",
    "wait_for_job",
]

MANAGED_RETRY_ATTEMPTS = 3


def _require_live(spec: WorkspaceSpec, action: str) -> None:
    if not spec.live:
        raise InvalidRequestError(
            f"workspace {spec.name!r} is a development workspace, which is never materialized: cannot {action}. "
            "Apply the repository to a live workspace (`featurebus workspace create NAME --live`), or compute "
            "features ad hoc with get_features_for_events / get_features_in_range"
        )


def submit_materialization(
    store: JobStore,
    spec: WorkspaceSpec,
    view: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    *,
    online: bool | None = None,
    offline: bool | None = None,
    overwrite: bool = False,
    managed_retries: bool = True,
) -> Job:
    """Queue a materialization of batch view ``view`` over ``[start_ms, end_ms)``.

    ``online``/``offline`` None: every store the view materializes to. Without ``overwrite``, a
    range overlapping one a queued, running or successful job of the view covers is refused (as
    Tecton does); re-running it is safe (materialization is idempotent per range), so pass
    ``overwrite=True`` to do it anyway.
    """
    _require_live(spec, f"materialize {view!r}")
    if not spec.is_batch(view):
        stream = [v for v in spec.stream_feature_views if v.name == view]
        if stream and history_range(stream[0]) is None:
            raise InvalidRequestError(
                f"{view!r} is a stream feature view without batch history: the stream worker materializes it "
                "continuously, and re-computes it when an apply changes it. Materialization jobs are for batch "
                "feature views, and for the history of stream views with feature_start_time and a source "
                "batch_config"
            )
        if not stream:
            spec.batch_view(view)  # NotFoundError listing the batch views
    # A stream view's history job writes its tiles online; training sets read the files themselves.
    allowed_online, allowed_offline = (
        (spec.batch_view(view).online, spec.batch_view(view).offline) if spec.is_batch(view) else (True, False)
    )
    if online is None and offline is None:
        online, offline = allowed_online, allowed_offline
    online, offline = bool(online), bool(offline)
    for wanted, allowed, store_name in ((online, allowed_online, "online"), (offline, allowed_offline, "offline")):
        if wanted and not allowed and not spec.is_batch(view):
            raise InvalidRequestError(
                f"stream feature view {view!r}: a job of its batch history writes online only (training sets "
                "read the history from its batch_config files themselves); leave out --offline"
            )
        if wanted and not allowed:
            raise InvalidRequestError(
                f"batch feature view {view!r} has {store_name}=False: set {store_name}=True "
                f"and re-apply, or leave out --{store_name}"
            )
    if not online and not offline:
        raise InvalidRequestError(
            f"batch feature view {view!r} materializes to neither store (online=False, "
            "offline=False): set one of them on the view and re-apply"
        )
    if end_ms <= start_ms:
        raise InvalidRequestError(f"the end time must be after the start time (got start {start_ms}, end {end_ms} ms)")
    if not overwrite:
        for job in store.list():
            if (
                job.view == view
                and job.kind is JobKind.MATERIALIZE
                and job.state is not JobState.FAILED
                and job.state is not JobState.CANCELLED
                and job.start_ms is not None
                and job.end_ms is not None
                and job.start_ms < end_ms
                and start_ms < job.end_ms
                and ((online and job.online) or (offline and job.offline))
            ):
                raise InvalidRequestError(
                    f"job {job.id} ({job.state.value}) already materializes {view!r} over an overlapping range; "
                    "pass overwrite=True (--overwrite) to materialize it again"
                )
    job = new_job(
        uuid.uuid4().hex[:12],
        spec.name,
        JobKind.MATERIALIZE,
        now_ms,
        view=view,
        start_ms=start_ms,
        end_ms=end_ms,
        online=online,
        offline=offline,
        overwrite=overwrite,
        spec_version=spec.version,
        max_attempts=MANAGED_RETRY_ATTEMPTS if managed_retries else 1,
    )
    store.put(job)
    return job


def enqueue_compaction(
    store: JobStore, spec: WorkspaceSpec, now_ms: int, job_id: str | None = None, origin: str = "user"
) -> Job:
    """Queue a compaction of the workspace's offline store (``job_id``: an idempotency key)."""
    _require_live(spec, "compact its offline store")
    if job_id is not None:
        existing = store.get(job_id)
        if existing is not None:
            return existing
    job = new_job(
        job_id or uuid.uuid4().hex[:12],
        spec.name,
        JobKind.COMPACT,
        now_ms,
        offline=True,
        spec_version=spec.version,
        origin=origin,
    )
    store.put(job)
    return job


def _enqueue_ranges(
    store: JobStore, spec: WorkspaceSpec, ranges: list[tuple[str, str, int, int]], now_ms: int, origin: str
) -> list[Job]:
    created = []
    for job_id, view, start_ms, end_ms in ranges:
        # A stream view's history goes online only (training sets read its files themselves).
        online, offline = (
            (spec.batch_view(view).online, spec.batch_view(view).offline) if spec.is_batch(view) else (True, False)
        )
        if store.get(job_id) is not None:
            continue  # the idempotency key: never twice
        job = new_job(
            job_id,
            spec.name,
            JobKind.MATERIALIZE,
            now_ms,
            view=view,
            start_ms=start_ms,
            end_ms=end_ms,
            online=online,
            offline=offline,
            spec_version=spec.version,
            origin=origin,
            max_attempts=MANAGED_RETRY_ATTEMPTS,
        )
        store.put(job)
        created.append(job)
    return created


def enqueue_scheduled(store: JobStore, spec: WorkspaceSpec, now_ms: int) -> list[Job]:
    """The jobs every batch view's schedule calls for now (see ``schedule``); live workspaces only."""
    if not spec.live:
        return []
    jobs = store.list()
    ranges = [
        (r.job_id, r.view, r.start_ms, r.end_ms)
        for v in spec.batch_feature_views
        if v.online or v.offline
        for r in due_ranges(v, now_ms, jobs)
    ]
    return _enqueue_ranges(store, spec, ranges, now_ms, "schedule")


def enqueue_apply_backfills(
    store: JobStore, applied: WorkspaceSpec, views: list[tuple[str, bool]], now_ms: int
) -> tuple[list[Job], list[str]]:
    """Backfills for batch views an apply created (``(name, False)``) or invalidated (``(name, True)``).

    A created view gets its schedule's initial jobs (the ids the runner would use, so it never
    schedules them again); a re-materialized one a backfill under ``apply-<view>-v<version>``.
    Returns the jobs and, per view left alone, why (development workspace, no schedule).
    """
    if not applied.live:
        return [], [f"{name}: not materialized (development workspace)" for name, _ in views]
    notes: list[str] = []
    ranges: list[tuple[str, str, int, int]] = []
    for name, rematerialize in views:
        view = applied.batch_view(name)
        if not (view.online or view.offline):
            continue
        if not scheduled(view):
            notes.append(
                f"{name}: no backfill queued (it needs feature_start_time and batch_trigger=SCHEDULED); "
                f"run `featurebus materialize {name} --start ... --end ...`"
            )
            continue
        prefix = f"apply-v{applied.version}" if rematerialize else "sched"
        ranges += [(r.job_id, r.view, r.start_ms, r.end_ms) for r in backfill_ranges(view, now_ms, prefix)]
    return _enqueue_ranges(store, applied, ranges, now_ms, "apply"), notes


def enqueue_stream_backfills(
    store: JobStore, applied: WorkspaceSpec, views: list[tuple[str, bool]], now_ms: int
) -> tuple[list[Job], list[str]]:
    """Backfills of the batch history of stream views an apply created (``(name, False)``) or
    invalidated (``(name, True)``): ``schedule.stream_backfill_ranges`` of each. Returns the jobs
    and, per view left alone, why."""
    if not applied.live:
        return [], [f"{name}: history not backfilled (development workspace)" for name, _ in views]
    notes: list[str] = []
    ranges: list[tuple[str, str, int, int]] = []
    for name, rematerialize in views:
        view = applied.view(name)
        if history_range(view) is None:
            continue
        if not view.online:
            notes.append(f"{name}: online=False, so its history is read from the files by training sets only")
            continue
        planned = stream_backfill_ranges(view, f"apply-v{applied.version}" if rematerialize else "history")
        if not planned:
            notes.append(
                f"{name}: no backfill queued (batch_trigger={view.batch_trigger.value}); "
                f"run `featurebus materialize {name} --start ... --end ...`"
            )
        ranges += [(r.job_id, r.view, r.start_ms, r.end_ms) for r in planned]
    return _enqueue_ranges(store, applied, ranges, now_ms, "apply"), notes


def find_job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        recent = ", ".join(j.id for j in store.list()[-5:]) or "none"
        raise NotFoundError(
            f"no job {job_id!r} in this workspace (latest: {recent}); `featurebus jobs list` shows them"
        )
    return job


def request_cancel(store: JobStore, job_id: str) -> Job:
    """Ask the runner to cancel the job (between chunks if it is running); returns the job as it is."""
    job = find_job(store, job_id)
    if job.state.terminal:
        raise InvalidRequestError(f"job {job_id} is already {job.state.value}; nothing to cancel")
    store.request_cancel(job_id, job.attempt)
    return job


def retry_job(store: JobStore, job_id: str, now_ms: int) -> Job:
    """A new attempt of a FAILED or CANCELLED job (same range and stores)."""
    again = retry(find_job(store, job_id), now_ms)  # InvalidJobTransitionError for other states
    store.put(again)
    return again


def wait_for_job(
    store: JobStore,
    job_id: str,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_update: Callable[[Job], None] = lambda job: None,
) -> Job:
    """Block until the job is SUCCESS, FAILED or CANCELLED; ``JobTimeoutError`` after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = find_job(store, job_id)
        on_update(job)
        if job.state.terminal:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeoutError(
                f"job {job_id} is still {job.state.value} ({job.progress:.0%}) after {timeout_s:g} s; "
                "it goes on: `featurebus jobs show` follows it (is `featurebus jobs run` running?)"
            )
        time.sleep(poll_s)
