"""``POST /ingest`` in Tecton's shape: ``{"workspace_name", "dry_run", "records": {...}}``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from featurebus.platform.access.roles import Action
from featurebus.platform.access.view import Caller
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.schemas.errors import InvalidRequestError
from featurebus.serving.http import read_body
from featurebus.serving.ingest import IngestService
from featurebus.serving.limits import ServingLimits
from featurebus.serving.openapi_docs import ingest_doc
from featurebus.serving.readiness import Admission
from featurebus.serving.request_metrics import note_target

__all__ = ["IngestEndpoint", "ingest_router"]


def _field(body: dict[str, Any], snake: str, camel: str, kind: type, default: Any = None) -> Any:
    value = body.get(snake, body.get(camel, default))
    if not isinstance(value, kind):
        raise InvalidRequestError(f"{snake} must be a {'string' if kind is str else kind.__name__}")
    return value


class IngestEndpoint:
    """``POST /ingest`` without a web framework (served straight from ASGI, see ``app.py``; the
    FastAPI route below documents it and answers the same)."""

    def __init__(self, service: IngestService, keys: ApiKeyStore, limits: ServingLimits) -> None:
        self._service = service
        self._keys = keys
        self._max_records = limits.max_ingest_records

    async def ingest(self, api_key: Caller, raw_body: bytes) -> bytes:
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequestError('request body must be a JSON object {"workspace_name", "records", ...}')
        workspace = _field(body, "workspace_name", "workspaceName", str)
        note_target(workspace)
        self._keys.permit(api_key, workspace, Action.INGEST)
        dry_run = _field(body, "dry_run", "dryRun", bool, default=False)
        read_after_write = _field(body, "read_after_write", "readAfterWrite", bool, default=False)
        result = await self._service.ingest_async(
            workspace, body.get("records"), dry_run, read_after_write, max_records=self._max_records
        )
        return orjson.dumps(result)


def ingest_router(endpoint: IngestEndpoint, admission: Admission, limits: ServingLimits) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post("/ingest", openapi_extra=ingest_doc())
    async def ingest(request: Request) -> Response:
        """Validate every record against its push source's schema; write all of them or none.
        Needs the `editor` role in the workspace (an earlier release's `writer` or `admin` key).
        With `read_after_write`, answers only
        once this replica serves the records' effect."""
        api_key = admission.admit(request.headers.get("authorization"))
        payload = await endpoint.ingest(api_key, await read_body(request, limits.max_body_bytes))
        return Response(payload, media_type="application/json")

    return router
