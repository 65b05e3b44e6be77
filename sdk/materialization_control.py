"""The materialization job methods of a workspace read through the control plane
(``featurebus.get_workspace`` when logged in): each is one call to its jobs routes, so the caller
needs a role (viewer reads jobs, operator triggers and cancels them) and no Kafka credentials.
``featurebus.materialization`` is the same over the bus, for ``get_workspace(..., bootstrap=...)``."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from featurebus.control_client import ControlClient
from featurebus.schemas.errors import JobTimeoutError
from featurebus.schemas.jobs import Job, JobKind, JobState
from featurebus.schemas.time import to_epoch_ms

__all__ = [
    "cancel_materialization_job",
    "get_materialization_job",
    "job_from_document",
    "list_materialization_jobs",
    "trigger_materialization_job",
    "wait_for_materialization_job",
]


def job_from_document(document: dict[str, Any]) -> Job:
    """A job record as the control plane sends it (``Job``'s fields, enums by value)."""
    fields = {f.name for f in dataclasses.fields(Job)}
    values = {k: v for k, v in document.items() if k in fields}
    return Job(**{**values, "kind": JobKind(document["kind"]), "state": JobState(document["state"])})


def _call(home: Path | None, method: str, path: str, body: Any = None, **params: Any) -> Any:
    client = ControlClient.from_config(home)
    try:
        return client.request(method, path, json=body, params=params)
    finally:
        client.close()


def trigger_materialization_job(
    home: Path | None,
    workspace: str,
    view: str,
    start_time: datetime,
    end_time: datetime,
    online: bool,
    offline: bool,
    use_tecton_managed_retries: bool,
    overwrite: bool,
) -> str:
    body = {
        "view": view,
        "start_ms": to_epoch_ms(start_time),
        "end_ms": to_epoch_ms(end_time),
        "online": online,
        "offline": offline,
        "overwrite": overwrite,
        "managed_retries": use_tecton_managed_retries,
    }
    job_id: str = _call(home, "POST", f"/v1/workspaces/{workspace}/jobs", body)["id"]
    return job_id


def list_materialization_jobs(home: Path | None, workspace: str, view: str) -> list[Job]:
    return [job_from_document(d) for d in _call(home, "GET", f"/v1/workspaces/{workspace}/jobs", view=view)]


def get_materialization_job(home: Path | None, workspace: str, job_id: str) -> Job:
    return job_from_document(_call(home, "GET", f"/v1/workspaces/{workspace}/jobs/{job_id}"))


def cancel_materialization_job(home: Path | None, workspace: str, job_id: str) -> Job:
    return job_from_document(_call(home, "POST", f"/v1/workspaces/{workspace}/jobs/{job_id}/cancel"))


def wait_for_materialization_job(
    home: Path | None, workspace: str, job_id: str, timeout: timedelta | None, poll_s: float = 1.0
) -> Job:
    """Poll the job until it ends; ``JobTimeoutError`` after ``timeout``, as the bus path."""
    deadline = None if timeout is None else time.monotonic() + timeout.total_seconds()
    client = ControlClient.from_config(home)
    try:
        while True:
            job = job_from_document(client.get(f"/v1/workspaces/{workspace}/jobs/{job_id}"))
            if job.state.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeoutError(
                    f"job {job_id} is still {job.state.value} ({job.progress:.0%}) after "
                    f"{timeout.total_seconds() if timeout else 0:g} s; it goes on: `featurebus jobs show` follows it"
                )
            time.sleep(poll_s)
    finally:
        client.close()
