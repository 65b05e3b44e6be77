"""Explain a value: the records, tiles and training-set value behind one served feature."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["ExplainRequest", "explain_router"]

Name = Annotated[str, Field(min_length=1, max_length=200)]


class ExplainRequest(BaseModel):
    view: Name
    feature: Name
    join_keys: dict[str, str] = Field(description="The entity: a value for each join key of the view.")
    at_ms: int = Field(ge=0, description="The time T the value is for (epoch ms); the window ends at T.")


def explain_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])

    @router.post("/workspaces/{workspace}/explain", tags=["features"], responses=errors(400, 401, 403, 404))
    def explain(workspace: str, body: ExplainRequest, request: Request, call: CallerCall) -> dict[str, Any]:
        """For one feature of an entity at time T: the source records (topic, partition, offset,
        event time) in its window, grouped into tiles, and the same value computed by the
        training-set path (consumer)."""
        root = request.app.state.ui.offline_root
        return plane.explainer.explain(call, root, workspace, body.view, body.feature, body.join_keys, body.at_ms)

    return router
