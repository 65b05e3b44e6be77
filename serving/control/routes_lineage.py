"""The dataflow graph of a workspace (issue 15): topics and batch sources -> views -> services and
the online and offline stores."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from featurebus.platform.control.lineage import lineage_graph
from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["lineage_router"]


def lineage_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])

    @router.get("/workspaces/{workspace}/lineage", tags=["workspaces"], responses=errors(401, 403, 404))
    def lineage(workspace: str, call: CallerCall) -> dict[str, Any]:
        """Nodes (``kind:name`` ids; ``page`` names the object a node stands for) and directed
        edges from Kafka topics and batch sources through views to services and stores (viewer)."""
        return lineage_graph(plane.catalog.spec(call, workspace))

    return router
