"""Materialization and compaction jobs through the control plane: list, show, trigger, cancel,
retry (``featurebus.platform.jobs.client`` holds the rules; this checks roles and audits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.jobs.client import (
    enqueue_compaction,
    find_job,
    request_cancel,
    retry_job,
    submit_materialization,
)
from featurebus.platform.registry.base import Registry
from featurebus.platform.registry.jobs import JobStore
from featurebus.schemas.errors import NotFoundError
from featurebus.schemas.jobs import Job
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["Jobs", "job_document"]

T = TypeVar("T")


def job_document(job: Job) -> dict[str, Any]:
    return {**dataclasses.asdict(job), "kind": job.kind.value, "state": job.state.value}


class Jobs:
    def __init__(
        self,
        registry: Registry,
        guard: Guard,
        now_ms: Callable[[], int] = now_ms,
        read_spec: Callable[[str], WorkspaceSpec | None] | None = None,
    ) -> None:
        self._registry = registry
        self._guard = guard
        self._now_ms = now_ms
        # Listing only checks that the workspace exists: a cached spec will do (the UI lists often).
        self._read_spec = read_spec or registry.get

    def _with_store(self, workspace: str, work: Callable[[JobStore, WorkspaceSpec], T], *, cached: bool = False) -> T:
        spec = self._read_spec(workspace) if cached else self._registry.get(workspace)
        if spec is None:
            raise NotFoundError(f"workspace {workspace!r} does not exist")
        store = self._registry.jobs(workspace)
        try:
            return work(store, spec)
        finally:
            store.close()

    def list_jobs(self, call: Call, workspace: str, view: str | None = None) -> list[dict[str, Any]]:
        self._guard.check(call, workspace, Action.READ_JOBS, "jobs.list")
        jobs = self._with_store(workspace, lambda store, _: store.list(), cached=True)
        return [job_document(j) for j in jobs if view is None or j.view == view]

    def get(self, call: Call, workspace: str, job_id: str) -> dict[str, Any]:
        self._guard.check(call, workspace, Action.READ_JOBS, "jobs.get")
        return job_document(self._with_store(workspace, lambda store, _: find_job(store, job_id)))

    def _mutate(
        self, call: Call, workspace: str, name: str, work: Callable[[JobStore, WorkspaceSpec], Job]
    ) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            job = self._with_store(workspace, work)
            return job_document(job), {"job": job.id, "view": job.view, "attempt": job.attempt}

        return self._guard.mutate(call, workspace, Action.MANAGE_JOBS, name, change)

    def materialize(
        self,
        call: Call,
        workspace: str,
        view: str,
        start_ms: int,
        end_ms: int,
        *,
        online: bool | None = None,
        offline: bool | None = None,
        overwrite: bool = False,
        managed_retries: bool = True,
    ) -> dict[str, Any]:
        return self._mutate(
            call,
            workspace,
            "jobs.materialize",
            lambda store, spec: submit_materialization(
                store,
                spec,
                view,
                start_ms,
                end_ms,
                self._now_ms(),
                online=online,
                offline=offline,
                overwrite=overwrite,
                managed_retries=managed_retries,
            ),
        )

    def compact(self, call: Call, workspace: str) -> dict[str, Any]:
        return self._mutate(
            call, workspace, "jobs.compact", lambda store, spec: enqueue_compaction(store, spec, self._now_ms())
        )

    def cancel(self, call: Call, workspace: str, job_id: str) -> dict[str, Any]:
        return self._mutate(call, workspace, "jobs.cancel", lambda store, _: request_cancel(store, job_id))

    def retry(self, call: Call, workspace: str, job_id: str) -> dict[str, Any]:
        return self._mutate(call, workspace, "jobs.retry", lambda store, _: retry_job(store, job_id, self._now_ms()))
