"""Workspaces, plan/apply/rollback, the registry log and jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["definitions_router"]

WorkspaceName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class WorkspaceCreate(BaseModel):
    name: WorkspaceName
    live: bool = False


class PlanRequest(BaseModel):
    spec: dict[str, Any] = Field(description="The compiled repository: a WorkspaceSpec as JSON (featurebus plan).")


class ApplyRequest(PlanRequest):
    base_version: int = Field(ge=0, description="The workspace version the plan was made against; 409 if it moved.")


class RollbackRequest(BaseModel):
    version: int = Field(ge=1, description="The earlier version to restore (a new version is applied).")
    base_version: int = Field(ge=0)


class MaterializeRequest(BaseModel):
    view: str = Field(min_length=1, max_length=200)
    start_ms: int
    end_ms: int
    online: bool | None = None
    offline: bool | None = None
    overwrite: bool = False
    managed_retries: bool = True  # Tecton's use_tecton_managed_retries: False runs one attempt


def definitions_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])
    defs, jobs = plane.definitions, plane.jobs

    @router.get("/workspaces", tags=["workspaces"], responses=errors(401))
    def list_workspaces(call: CallerCall) -> list[dict[str, Any]]:
        """The workspaces the caller holds a role in (all of them for the admin)."""
        return defs.workspaces(call)

    @router.post("/workspaces", tags=["workspaces"], status_code=201, responses=errors(400, 401, 403))
    def create_workspace(body: WorkspaceCreate, call: CallerCall) -> dict[str, Any]:
        """Create a live (materialized and served) or development workspace. Admin only."""
        return defs.create(call, body.name, body.live)

    @router.get("/workspaces/{workspace}", tags=["workspaces"], responses=errors(401, 403, 404))
    def get_workspace(workspace: str, call: CallerCall) -> dict[str, Any]:
        """The workspace's current spec and version (viewer)."""
        return defs.get(call, workspace)

    @router.delete("/workspaces/{workspace}", tags=["workspaces"], responses=errors(400, 401, 403, 404))
    def delete_workspace(workspace: str, call: CallerCall, force: bool = False) -> dict[str, Any]:
        """Delete the workspace's definitions and history (owner); refused while it holds objects unless force."""
        return defs.delete(call, workspace, force)

    @router.post("/workspaces/{workspace}/plan", tags=["plan and apply"], responses=errors(400, 401, 403, 404))
    def plan(workspace: str, body: PlanRequest, call: CallerCall) -> dict[str, Any]:
        """What applying ``spec`` would change (editor); ``baseVersion`` is what to apply against."""
        return defs.plan(call, workspace, body.spec)

    @router.post("/workspaces/{workspace}/apply", tags=["plan and apply"], responses=errors(400, 401, 403, 404, 409))
    def apply(workspace: str, body: ApplyRequest, call: CallerCall) -> dict[str, Any]:
        """Plan ``spec`` against the current version and apply it (editor). 409 when the workspace is
        no longer at ``base_version``; 400 when prevent_destroy blocks a change."""
        return defs.apply(call, workspace, body.spec, body.base_version)

    @router.post("/workspaces/{workspace}/rollback", tags=["plan and apply"], responses=errors(400, 401, 403, 404, 409))
    def rollback(workspace: str, body: RollbackRequest, call: CallerCall) -> dict[str, Any]:
        """Re-apply an earlier version as the next one (editor)."""
        return defs.rollback(call, workspace, body.version, body.base_version)

    @router.get("/workspaces/{workspace}/log", tags=["plan and apply"], responses=errors(401, 403))
    def registry_log(workspace: str, call: CallerCall) -> list[dict[str, Any]]:
        """Every applied version, oldest first, with its change summary and who applied it (viewer)."""
        return defs.log(call, workspace)

    @router.get("/workspaces/{workspace}/jobs", tags=["jobs"], responses=errors(401, 403, 404))
    def list_jobs(
        workspace: str, call: CallerCall, view: Annotated[str | None, Query(max_length=200)] = None
    ) -> list[dict[str, Any]]:
        """The workspace's jobs, oldest first (viewer)."""
        return jobs.list_jobs(call, workspace, view)

    @router.post("/workspaces/{workspace}/jobs", tags=["jobs"], status_code=201, responses=errors(400, 401, 403, 404))
    def materialize(workspace: str, body: MaterializeRequest, call: CallerCall) -> dict[str, Any]:
        """Queue a materialization of a batch feature view over [start_ms, end_ms) (operator)."""
        return jobs.materialize(
            call,
            workspace,
            body.view,
            body.start_ms,
            body.end_ms,
            online=body.online,
            offline=body.offline,
            overwrite=body.overwrite,
            managed_retries=body.managed_retries,
        )

    @router.post(
        "/workspaces/{workspace}/jobs/compact", tags=["jobs"], status_code=201, responses=errors(400, 401, 403, 404)
    )
    def compact(workspace: str, call: CallerCall) -> dict[str, Any]:
        """Queue a compaction of the workspace's offline store (operator)."""
        return jobs.compact(call, workspace)

    @router.get("/workspaces/{workspace}/jobs/{job_id}", tags=["jobs"], responses=errors(401, 403, 404))
    def get_job(workspace: str, job_id: str, call: CallerCall) -> dict[str, Any]:
        return jobs.get(call, workspace, job_id)

    @router.post("/workspaces/{workspace}/jobs/{job_id}/cancel", tags=["jobs"], responses=errors(400, 401, 403, 404))
    def cancel_job(workspace: str, job_id: str, call: CallerCall) -> dict[str, Any]:
        """Ask the job runner to cancel a queued or running job (operator)."""
        return jobs.cancel(call, workspace, job_id)

    @router.post("/workspaces/{workspace}/jobs/{job_id}/retry", tags=["jobs"], responses=errors(400, 401, 403, 404))
    def retry_job(workspace: str, job_id: str, call: CallerCall) -> dict[str, Any]:
        """Queue a FAILED or CANCELLED job again as a new attempt (operator)."""
        return jobs.retry(call, workspace, job_id)

    return router
