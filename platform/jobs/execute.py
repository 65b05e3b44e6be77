"""What each kind of job does: the bridge from a ``Job`` record to the code that does the work."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from featurebus.platform.jobs.runner import Execute
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.jobs import Job, JobKind
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import from_epoch_ms

__all__ = ["job_executor"]


def _datetime(ms: int) -> datetime:
    return from_epoch_ms(ms)


def job_executor(
    bootstrap: str, offline_root: Path, spec: Callable[[], WorkspaceSpec | None], compaction_grace_s: float = 0.0
) -> Execute:
    """Runs materialize jobs with ``featurebus.platform.batch`` against the current applied spec,
    and compact jobs over the offline store at ``offline_root``."""

    def execute(job: Job, progress: Callable[[float], None], cancelled: Callable[[], bool]) -> bool:
        if job.kind is JobKind.COMPACT:
            from featurebus.platform.offline.compaction import compact_workspace

            return compact_workspace(
                offline_root, job.workspace, grace_s=compaction_grace_s, progress=progress, cancelled=cancelled
            ).cancelled
        if job.kind is JobKind.MATERIALIZE:
            from featurebus.platform.batch.materialize import materialize_view

            current = spec()
            if current is None:
                raise NotFoundError(f"workspace {job.workspace!r} no longer exists")
            if job.view is None or job.start_ms is None or job.end_ms is None:
                raise InvalidRequestError(f"job {job.id} names no view or range")
            if not current.is_batch(job.view):  # a stream view's batch history
                from featurebus.platform.batch.stream_backfill import backfill_stream_view

                return backfill_stream_view(
                    bootstrap,
                    current,
                    job.view,
                    job.start_ms,
                    job.end_ms,
                    progress=progress,
                    cancelled=cancelled,
                ).cancelled
            # The view as applied now: a job queued before an apply computes the new definition.
            result = materialize_view(
                bootstrap,
                offline_root,
                current,
                job.view,
                _datetime(job.start_ms),
                _datetime(job.end_ms),
                online=job.online,
                offline=job.offline,
                progress=progress,
                cancelled=cancelled,
            )
            return result.cancelled
        raise InvalidRequestError(f"job {job.id} has kind {job.kind!r}, which this featurebus does not run")

    return execute
