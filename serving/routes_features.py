"""Tecton-compatible feature service routes: ``/api/v1/feature-service/{get-features,...}``.

Bodies are parsed with orjson straight from the raw bytes rather than through pydantic models:
on the serving hot path that is several times cheaper, and the shapes are tiny. Handlers run on
the event loop without a thread hop because a request is a handful of microsecond-scale RocksDB
scans; the thread pool would cost more than it saves.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import Histogram

from featurebus.exceptions import InvalidRequestError
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.serving.http import read_body
from featurebus.serving.openapi_docs import feature_route_doc
from featurebus.serving.request_surface import RequestSurface
from featurebus.serving.service import FeatureServer

__all__ = ["features_router", "REQUEST_SECONDS"]

REQUEST_SECONDS = Histogram(
    "featurebus_serving_request_seconds",
    "Latency of successful feature service requests",
    ["endpoint", "workspace", "feature_service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

def _params(body: bytes) -> dict[str, Any]:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    params = raw.get("params") if isinstance(raw, dict) else None
    if not isinstance(params, dict):
        raise InvalidRequestError('request body must be a JSON object {"params": {...}}')
    return params


def _get(params: dict[str, Any], camel: str, snake: str, kind: type, required: bool = True) -> Any:
    value = params.get(camel, params.get(snake))
    if value is None:
        if required:
            raise InvalidRequestError(f"params.{camel} is required")
        return None
    if not isinstance(value, kind):
        raise InvalidRequestError(f"params.{camel} must be a {'string' if kind is str else kind.__name__}")
    return value


def _json(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def features_router(server: FeatureServer, keys: ApiKeyStore) -> APIRouter:
    router = APIRouter(prefix="/api/v1/feature-service", tags=["feature-service"])

    async def _authorized_params(request: Request) -> tuple[dict[str, Any], str, str]:
        # Authenticate before reading the body: an anonymous caller learns nothing from it.
        api_key = keys.authenticate(request.headers.get("authorization"))
        params = _params(await read_body(request))
        workspace = _get(params, "workspaceName", "workspace_name", str)
        service = _get(params, "featureServiceName", "feature_service_name", str)
        keys.permit(api_key, workspace, "reader")
        return params, workspace, service

    def _decorate(surface: RequestSurface, result: dict[str, Any], workspace: str, service: str,
                  started: float, looked_up: float) -> None:
        if surface.include_slo_info or surface.wants_docs:
            docs = server.feature_docs(workspace, service) if surface.wants_docs else []
            surface.decorate(result, docs, started, time.perf_counter() - looked_up)

    def _options(params: dict[str, Any]) -> Any:
        return _get(params, "metadataOptions", "metadata_options", dict, required=False)

    @router.post("/get-features", openapi_extra=feature_route_doc("get-features"))
    async def get_features(request: Request) -> Response:
        started = time.perf_counter()
        params, workspace, service = await _authorized_params(request)
        join_key_map = _get(params, "joinKeyMap", "join_key_map", dict)
        context = _get(params, "requestContextMap", "request_context_map", dict, required=False)
        surface = RequestSurface.parse(params)
        looked_up = time.perf_counter()
        result = server.get_features(workspace, service, join_key_map, _options(params), context)
        _decorate(surface, result, workspace, service, started, looked_up)
        REQUEST_SECONDS.labels("get-features", workspace, service).observe(time.perf_counter() - started)
        return _json(result)

    @router.post("/get-features-batch", openapi_extra=feature_route_doc("get-features-batch"))
    async def get_features_batch(request: Request) -> Response:
        started = time.perf_counter()
        params, workspace, service = await _authorized_params(request)
        rows = _get(params, "requestData", "request_data", list)
        join_key_maps = []
        contexts = []
        for i, row in enumerate(rows):
            join_key_map = row.get("joinKeyMap", row.get("join_key_map")) if isinstance(row, dict) else None
            if not isinstance(join_key_map, dict):
                raise InvalidRequestError(f"params.requestData[{i}].joinKeyMap must be an object")
            join_key_maps.append(join_key_map)
            context = row.get("requestContextMap", row.get("request_context_map"))
            if context is not None and not isinstance(context, dict):
                raise InvalidRequestError(f"params.requestData[{i}].requestContextMap must be an object")
            contexts.append(context)
        surface = RequestSurface.parse(params)
        looked_up = time.perf_counter()
        result = server.get_features_batch(workspace, service, join_key_maps, _options(params), contexts)
        _decorate(surface, result, workspace, service, started, looked_up)
        REQUEST_SECONDS.labels("get-features-batch", workspace, service).observe(time.perf_counter() - started)
        return _json(result)

    @router.post("/metadata", openapi_extra=feature_route_doc("metadata"))
    async def metadata(request: Request) -> Response:
        _, workspace, service = await _authorized_params(request)
        return _json(server.metadata(workspace, service))

    return router
