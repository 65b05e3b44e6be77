"""Deleting entities' values: ``POST /v1/workspaces/{workspace}/deletes`` (editor), answering the receipt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.deletes.keys import MAX_KEYS
from featurebus.platform.deletes.service import DeleteOptions
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["deletes_router"]

JoinKeyValue = Annotated[str | int, Field(description="A join key's value (int64 keys may be sent as strings).")]


class DeleteKeysRequest(BaseModel):
    view: str = Field(min_length=1, max_length=200, description="The feature view or feature table.")
    keys: list[dict[str, JoinKeyValue]] = Field(
        min_length=1, max_length=MAX_KEYS, description="One object of join-key values per entity to delete."
    )
    online: bool = True
    offline: bool = True
    include_sources: bool = Field(
        default=False, description="Also tombstone the entities' records on compacted source topics."
    )


def deletes_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])

    @router.post("/workspaces/{workspace}/deletes", tags=["deletes"], responses=errors(400, 401, 403, 404, 503))
    def delete_keys(workspace: str, body: DeleteKeysRequest, call: CallerCall) -> dict[str, Any]:
        """Delete these entities' values online (tombstones on the feature topic, read by every
        serving replica; stream workers drop their cached tiles), offline (only the Parquet files
        holding their rows are rewritten, crash-safely) and, with include_sources, on compacted
        source topics (editor). Answers the receipt: every topic partition and file changed, and
        every place it could not delete from, with why. Re-running a failed delete completes it."""
        return plane.deletes.delete_keys(
            call,
            workspace,
            body.view,
            body.keys,
            DeleteOptions(online=body.online, offline=body.offline, include_sources=body.include_sources),
        )

    return router
