"""The offline store's gate: the SDK asks here before a training set or an ad hoc read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["offline_router"]


def offline_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])

    @router.get("/workspaces/{workspace}/offline-access", tags=["training"], responses=errors(401, 403, 404))
    def confirm_offline_access(workspace: str, call: CallerCall) -> dict[str, Any]:
        """Whether the caller may read the workspace's offline store (training sets, ad hoc reads):
        200 with its principal and role (viewer or above), else 403 naming the role needed."""
        return plane.offline.confirm(call, workspace)

    return router
