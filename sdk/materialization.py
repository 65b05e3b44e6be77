"""Tecton's materialization job methods of feature view objects (``get_workspace(...).get_feature_view(...)``).

    fv = featurebus.get_workspace("prod").get_feature_view("user_daily_stats")
    job_id = fv.trigger_materialization_job(datetime(2024, 1, 1), datetime(2024, 2, 1), online=True, offline=True)
    fv.wait_for_materialization_job(job_id, timeout=timedelta(minutes=10))

Jobs are queued on the workspace's jobs topic and run by its job runner (``featurebus jobs run``,
started by ``featurebus up``). Jobs come back as ``featurebus.schemas.jobs.Job`` records.
This module talks to the bus directly (a workspace read with ``get_workspace(..., bootstrap=...)``);
with a control-plane login the same methods go through ``featurebus.materialization_control``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from featurebus.schemas.time import now_ms, to_epoch_ms

if TYPE_CHECKING:
    from featurebus.platform.registry.jobs import JobStore
    from featurebus.schemas.jobs import Job
    from featurebus.schemas.specs import WorkspaceSpec

__all__ = [
    "cancel_materialization_job",
    "get_materialization_job",
    "list_materialization_jobs",
    "trigger_materialization_job",
    "wait_for_materialization_job",
]


@contextmanager
def _store(spec: WorkspaceSpec, bootstrap: str | None) -> Iterator[JobStore]:
    from featurebus.platform.config import resolve_bootstrap
    from featurebus.platform.registry import KafkaRegistry

    store = KafkaRegistry(resolve_bootstrap(bootstrap)).jobs(spec.name)
    try:
        yield store
    finally:
        store.close()


def trigger_materialization_job(
    spec: WorkspaceSpec,
    bootstrap: str | None,
    view: str,
    start_time: datetime,
    end_time: datetime,
    online: bool,
    offline: bool,
    use_tecton_managed_retries: bool,
    overwrite: bool,
) -> str:
    from featurebus.platform.jobs.client import submit_materialization

    with _store(spec, bootstrap) as store:
        job = submit_materialization(
            store,
            spec,
            view,
            to_epoch_ms(start_time),
            to_epoch_ms(end_time),
            now_ms(),
            online=online,
            offline=offline,
            overwrite=overwrite,
            managed_retries=use_tecton_managed_retries,
        )
    return job.id


def list_materialization_jobs(spec: WorkspaceSpec, bootstrap: str | None, view: str) -> list[Job]:
    with _store(spec, bootstrap) as store:
        return [j for j in store.list() if j.view == view]


def get_materialization_job(spec: WorkspaceSpec, bootstrap: str | None, job_id: str) -> Job:
    from featurebus.platform.jobs.client import find_job

    with _store(spec, bootstrap) as store:
        return find_job(store, job_id)


def cancel_materialization_job(spec: WorkspaceSpec, bootstrap: str | None, job_id: str) -> Job:
    from featurebus.platform.jobs.client import request_cancel

    with _store(spec, bootstrap) as store:
        return request_cancel(store, job_id)


def wait_for_materialization_job(
    spec: WorkspaceSpec, bootstrap: str | None, job_id: str, timeout: timedelta | None
) -> Job:
    from featurebus.platform.jobs.client import wait_for_job

    with _store(spec, bootstrap) as store:
        return wait_for_job(store, job_id, None if timeout is None else timeout.total_seconds())
