"""Job records and the state machine they move through; pure (no I/O, time passed in).

::

    PENDING ──start──► RUNNING ──succeed──► SUCCESS
       │                 │ ├──fail──────► FAILED ──retry──┐
       │                 │ └──cancel────► CANCELLED ─retry┤
       └──cancel─────────┼──────────────► CANCELLED       │
       ▲                 └──requeue (its runner died)─┐   │
       └──────────────────────────────────────────────┴───┘

A record is versioned JSON (``JOB_FORMAT_VERSION``) on the workspace's jobs topic. Every
transition returns a new record with ``updated_ms`` set; an illegal one raises
``InvalidJobTransitionError`` naming the job, its state and what is possible instead.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

import orjson

from featurebus.schemas.errors import InvalidJobTransitionError, StoreFormatError

__all__ = [
    "JOB_FORMAT_VERSION",
    "TRANSITIONS",
    "Job",
    "JobKind",
    "JobState",
    "Transition",
    "apply_transition",
    "cancel",
    "fail",
    "new_job",
    "report_progress",
    "requeue",
    "retry",
    "start",
    "succeed",
]

JOB_FORMAT_VERSION = 1


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED)


class JobKind(enum.StrEnum):
    MATERIALIZE = "materialize"  # a batch feature view over [start, end), online and/or offline
    COMPACT = "compact"  # merge the offline store's small files of the workspace's sources


class Transition(enum.StrEnum):
    START = "start"
    PROGRESS = "progress"
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    RETRY = "retry"
    REQUEUE = "requeue"


# (from state, transition) -> to state. Everything not listed is illegal.
TRANSITIONS: dict[tuple[JobState, Transition], JobState] = {
    (JobState.PENDING, Transition.START): JobState.RUNNING,
    (JobState.PENDING, Transition.CANCEL): JobState.CANCELLED,
    (JobState.RUNNING, Transition.PROGRESS): JobState.RUNNING,
    (JobState.RUNNING, Transition.SUCCEED): JobState.SUCCESS,
    (JobState.RUNNING, Transition.FAIL): JobState.FAILED,
    (JobState.RUNNING, Transition.CANCEL): JobState.CANCELLED,
    (JobState.RUNNING, Transition.REQUEUE): JobState.PENDING,
    (JobState.FAILED, Transition.RETRY): JobState.PENDING,
    (JobState.CANCELLED, Transition.RETRY): JobState.PENDING,
}


@dataclass(frozen=True)
class Job:
    id: str
    workspace: str
    kind: JobKind
    state: JobState
    created_ms: int
    updated_ms: int
    view: str | None = None  # None for a compaction of every source of the workspace
    start_ms: int | None = None  # the half-open range [start_ms, end_ms) a materialization covers
    end_ms: int | None = None
    online: bool = False
    offline: bool = False
    overwrite: bool = False
    progress: float = 0.0  # 0..1 within the current attempt
    attempt: int = 1
    error: str | None = None  # why the last attempt failed (FAILED)
    spec_version: int = 0  # the workspace version the job was submitted against
    # Who asked for it: "user", "schedule" (a batch_schedule period), "apply" (a backfill after
    # apply), "compaction" (the runner's periodic compaction).
    origin: str = "user"
    # Attempts the runner makes on its own after failures (Tecton's use_tecton_managed_retries).
    max_attempts: int = 1
    # Times a new runner took the job over because the runner running it stopped (SIGKILL, a lost
    # machine): the attempt started again from the beginning of its range.
    restarts: int = 0

    def to_json(self) -> bytes:
        document: dict[str, Any] = {"format": JOB_FORMAT_VERSION, **dataclasses.asdict(self)}
        return orjson.dumps(document)

    @staticmethod
    def from_json(payload: bytes) -> Job:
        document = orjson.loads(payload)
        found = document.pop("format", None)
        if found != JOB_FORMAT_VERSION:
            raise StoreFormatError(
                f"a job record has format {found!r}, this featurebus reads {JOB_FORMAT_VERSION}: run the featurebus "
                "version that wrote it, or delete the workspace's jobs topic (job history only, no feature data)"
            )
        known = {f.name for f in dataclasses.fields(Job)}
        fields = {k: v for k, v in document.items() if k in known}
        fields["kind"] = JobKind(fields["kind"])
        fields["state"] = JobState(fields["state"])
        return Job(**fields)


def new_job(
    job_id: str,
    workspace: str,
    kind: JobKind,
    now_ms: int,
    *,
    view: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    online: bool = False,
    offline: bool = False,
    overwrite: bool = False,
    spec_version: int = 0,
    origin: str = "user",
    max_attempts: int = 1,
) -> Job:
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidJobTransitionError(
            f"job {job_id}: the end time must be after the start time (got [{start_ms}, {end_ms}) in ms)"
        )
    return Job(
        job_id,
        workspace,
        kind,
        JobState.PENDING,
        now_ms,
        now_ms,
        view,
        start_ms,
        end_ms,
        online,
        offline,
        overwrite,
        spec_version=spec_version,
        origin=origin,
        max_attempts=max_attempts,
    )


def apply_transition(
    job: Job, transition: Transition, now_ms: int, *, progress: float | None = None, error: str | None = None
) -> Job:
    """The record after ``transition``; raises ``InvalidJobTransitionError`` if it is illegal."""
    target = TRANSITIONS.get((job.state, transition))
    if target is None:
        possible = sorted(t.value for (state, t) in TRANSITIONS if state is job.state) or ["none: it is final"]
        raise InvalidJobTransitionError(
            f"job {job.id} is {job.state.value}: it cannot {transition.value} (possible: {', '.join(possible)})"
        )
    changes: dict[str, Any] = {"state": target, "updated_ms": max(now_ms, job.updated_ms)}
    if transition is Transition.START:
        changes.update(progress=0.0, error=None)
    elif transition is Transition.PROGRESS:
        if progress is None or not 0.0 <= progress <= 1.0:
            raise InvalidJobTransitionError(f"job {job.id}: progress must be within 0..1, got {progress!r}")
        changes["progress"] = max(job.progress, progress)  # never goes backwards within an attempt
    elif transition is Transition.SUCCEED:
        changes["progress"] = 1.0
    elif transition is Transition.FAIL:
        changes["error"] = error or "failed without an error message"
    elif transition is Transition.RETRY:
        changes.update(attempt=job.attempt + 1, progress=0.0, error=None)
    elif transition is Transition.REQUEUE:
        changes.update(progress=0.0, restarts=job.restarts + 1)
    return dataclasses.replace(job, **changes)


def start(job: Job, now_ms: int) -> Job:
    return apply_transition(job, Transition.START, now_ms)


def report_progress(job: Job, progress: float, now_ms: int) -> Job:
    return apply_transition(job, Transition.PROGRESS, now_ms, progress=progress)


def succeed(job: Job, now_ms: int) -> Job:
    return apply_transition(job, Transition.SUCCEED, now_ms)


def fail(job: Job, error: str, now_ms: int) -> Job:
    return apply_transition(job, Transition.FAIL, now_ms, error=error)


def cancel(job: Job, now_ms: int) -> Job:
    return apply_transition(job, Transition.CANCEL, now_ms)


def retry(job: Job, now_ms: int) -> Job:
    return apply_transition(job, Transition.RETRY, now_ms)


def requeue(job: Job, now_ms: int) -> Job:
    return apply_transition(job, Transition.REQUEUE, now_ms)
