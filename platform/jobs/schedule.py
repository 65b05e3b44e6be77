"""Which materialization jobs a batch feature view's schedule calls for; pure (time passed in).

Periods are ``batch_schedule`` long and aligned to it from the epoch (a daily schedule runs
midnight to midnight UTC), starting with the period that holds ``feature_start_time``; a period is
due once it has fully elapsed. With ``incremental_backfills=True`` every period gets its own job;
otherwise the periods already elapsed when the view is first scheduled go into one backfill job,
and every later period gets its own job.

Job ids are the idempotency keys: ``sched-<view>-<period start ms>`` and
``sched-<view>-backfill``; a re-materialization on ``apply`` uses ``apply-v<version>-<view>-...``.
A view's *cursor* is the end of the latest range any of those jobs covers: periods before it are
never scheduled again, so a period is materialized once per definition, whoever enqueued it.
Views without ``feature_start_time``, or whose ``batch_trigger`` is not ``scheduled``, are not
scheduled (``featurebus materialize`` still runs them).

A stream view with batch history (``streams.cutover``) has no schedule: the stream computes
everything from its cut-over ``T_cut`` on. Its apply queues the backfill of
``[feature_start_time, T_cut)`` (``stream_backfill_ranges``), cut as Tecton cuts backfills: one
job per ``batch_schedule`` period with ``incremental_backfills``, else one job per
``max_backfill_interval``, else one job; with ``batch_trigger=MANUAL`` only up to
``manual_trigger_backfill_end_time`` (nothing without it: ``featurebus materialize`` runs it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from featurebus.schemas.jobs import Job, JobKind
from featurebus.schemas.kinds import BatchTriggerType
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec
from featurebus.streams.cutover import history_range

__all__ = ["PlannedRange", "backfill_ranges", "stream_backfill_ranges", "due_ranges", "schedule_cursor", "scheduled"]

_SCHEDULED_ORIGINS = frozenset({"schedule", "apply"})


@dataclass(frozen=True)
class PlannedRange:
    job_id: str
    view: str
    start_ms: int
    end_ms: int


def scheduled(view: BatchFeatureViewSpec) -> bool:
    return (
        view.batch_trigger == BatchTriggerType.SCHEDULED
        and view.feature_start_ms is not None
        and view.batch_schedule_ms > 0
    )


def _anchor(view: BatchFeatureViewSpec) -> int:
    assert view.feature_start_ms is not None  # callers check scheduled(view)
    return view.feature_start_ms // view.batch_schedule_ms * view.batch_schedule_ms


def _elapsed_end(view: BatchFeatureViewSpec, now_ms: int) -> int:
    return now_ms // view.batch_schedule_ms * view.batch_schedule_ms


def schedule_cursor(view: str, jobs: Iterable[Job]) -> int | None:
    """Where the view's schedule goes on: the end of the latest range a schedule or apply job covers."""
    ends = [
        j.end_ms
        for j in jobs
        if j.view == view and j.kind is JobKind.MATERIALIZE and j.origin in _SCHEDULED_ORIGINS and j.end_ms is not None
    ]
    return max(ends, default=None)


def backfill_ranges(view: BatchFeatureViewSpec, now_ms: int, prefix: str) -> list[PlannedRange]:
    """Every elapsed period from the start: one range, or one per period with incremental backfills."""
    if not scheduled(view):
        return []
    start, end, step = _anchor(view), _elapsed_end(view, now_ms), view.batch_schedule_ms
    if end <= start:
        return []
    if view.incremental_backfills:
        return [PlannedRange(f"{prefix}-{view.name}-{lo}", view.name, lo, lo + step) for lo in range(start, end, step)]
    return [PlannedRange(f"{prefix}-{view.name}-backfill", view.name, start, end)]


def due_ranges(view: BatchFeatureViewSpec, now_ms: int, jobs: Iterable[Job], limit: int = 1_000) -> list[PlannedRange]:
    """The jobs the schedule wants now and that do not exist yet (at most ``limit``, oldest first)."""
    if not scheduled(view):
        return []
    jobs = list(jobs)
    existing = {j.id for j in jobs}
    cursor = schedule_cursor(view.name, jobs)
    if cursor is None:  # never scheduled: the initial backfill (its periods, if incremental)
        return [r for r in backfill_ranges(view, now_ms, "sched") if r.job_id not in existing][:limit]
    step = view.batch_schedule_ms
    # A cursor off the period grid (the schedule changed) rounds down: an overlap re-materialized
    # (idempotent) rather than a gap never materialized.
    first = max(cursor, _anchor(view)) // step * step
    due = []
    for lo in range(first, _elapsed_end(view, now_ms), step):
        job_id = f"sched-{view.name}-{lo}"
        if job_id not in existing:
            due.append(PlannedRange(job_id, view.name, lo, lo + step))
        if len(due) >= limit:
            break
    return due


def stream_backfill_ranges(view: StreamFeatureViewSpec, prefix: str) -> list[PlannedRange]:
    """The jobs backfilling a stream view's batch history (none: no history, or manual)."""
    bounds = history_range(view)
    if bounds is None or view.batch_schedule_ms is None:
        return []
    step = view.batch_schedule_ms
    start, end = bounds[0] // step * step, bounds[1]
    if view.batch_trigger == BatchTriggerType.MANUAL:
        if view.manual_trigger_backfill_end_ms is None:
            return []
        end = min(end, view.manual_trigger_backfill_end_ms // step * step)  # a whole period: never half a tile
    elif view.batch_trigger != BatchTriggerType.SCHEDULED:
        return []
    if end <= start:
        return []
    width = step if view.incremental_backfills else view.max_backfill_interval_ms
    if width is None:
        return [PlannedRange(f"{prefix}-{view.name}-backfill", view.name, start, end)]
    return [
        PlannedRange(f"{prefix}-{view.name}-{lo}", view.name, lo, min(lo + width, end))
        for lo in range(start, end, width)
    ]
