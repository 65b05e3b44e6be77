"""Tecton-compatible feature service routes: ``/api/v1/feature-service/{get-features,...}``.

Bodies are parsed with orjson straight from the raw bytes rather than through pydantic models:
on the serving hot path that is several times cheaper, and the shapes are tiny. Handlers run on
the event loop without a thread hop because a request is a handful of microsecond-scale RocksDB
scans; the thread pool would cost more than it saves. For the same reason the app answers these
routes from ASGI directly (``FeatureEndpoints``), skipping FastAPI's per-request machinery.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from prometheus_client import Histogram

from featurebus.platform.access.roles import Action
from featurebus.platform.access.view import Caller
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.schemas.errors import InvalidRequestError, PayloadTooLargeError
from featurebus.serving.http import Handler, read_body
from featurebus.serving.limits import ServingLimits
from featurebus.serving.openapi_docs import feature_route_doc
from featurebus.serving.readiness import Admission
from featurebus.serving.request_metrics import note_target
from featurebus.serving.request_surface import RequestSurface
from featurebus.serving.service import VIEW_SERVICE_PREFIX, FeatureServer

__all__ = ["FeatureEndpoints", "features_router", "REQUEST_SECONDS", "PREFIX"]

PREFIX = "/api/v1/feature-service"

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


class FeatureEndpoints:
    """The feature service endpoints without a web framework: the admitted caller's key (see
    ``readiness.Admission``) and the raw body in, the JSON response body out; failures raise
    ``featurebus.schemas.errors``.

    The app serves ``routes()`` straight from ASGI (see ``app.py``): on a sub-millisecond
    lookup FastAPI's routing, dependency and middleware layers cost several times the lookup
    itself. The same methods back the FastAPI routes below, which document the endpoints in
    the OpenAPI schema, so both paths give the same answers and the same errors.
    """

    def __init__(self, server: FeatureServer, keys: ApiKeyStore, limits: ServingLimits) -> None:
        self._server = server
        self._keys = keys
        self._max_batch_rows = limits.max_batch_rows

    def routes(self) -> dict[str, Handler]:
        return {
            f"{PREFIX}/get-features": self.get_features,
            f"{PREFIX}/get-features-batch": self.get_features_batch,
            f"{PREFIX}/metadata": self.metadata,
        }

    def _authorized_params(self, api_key: Caller, body: bytes) -> tuple[dict[str, Any], str, str]:
        params = _params(body)
        workspace = _get(params, "workspaceName", "workspace_name", str)
        view = _get(params, "featureViewName", "feature_view_name", str, required=False)
        # A view alone (featurebus's addition, for the SDK's view.get_online_features): served as the
        # service of all its features (``VIEW_SERVICE_PREFIX``), under the same permission.
        service = (
            _get(params, "featureServiceName", "feature_service_name", str)
            if view is None
            else VIEW_SERVICE_PREFIX + view
        )
        note_target(workspace, service)
        self._keys.permit(api_key, workspace, Action.READ_ONLINE)
        return params, workspace, service

    def _decorate(
        self,
        surface: RequestSurface,
        result: dict[str, Any],
        workspace: str,
        service: str,
        started: float,
        looked_up: float,
    ) -> None:
        if surface.include_slo_info or surface.wants_docs:
            docs = self._server.feature_docs(workspace, service) if surface.wants_docs else []
            surface.decorate(result, docs, started, time.perf_counter() - looked_up)

    def get_features(self, api_key: Caller, body: bytes) -> bytes:
        started = time.perf_counter()
        params, workspace, service = self._authorized_params(api_key, body)
        join_key_map = _get(params, "joinKeyMap", "join_key_map", dict)
        context = _get(params, "requestContextMap", "request_context_map", dict, required=False)
        surface = RequestSurface.parse(params)
        looked_up = time.perf_counter()
        result = self._server.get_features(workspace, service, join_key_map, _options(params), context)
        self._decorate(surface, result, workspace, service, started, looked_up)
        payload = orjson.dumps(result)
        REQUEST_SECONDS.labels("get-features", workspace, service).observe(time.perf_counter() - started)
        return payload

    def get_features_batch(self, api_key: Caller, body: bytes) -> bytes:
        started = time.perf_counter()
        params, workspace, service = self._authorized_params(api_key, body)
        rows = _get(params, "requestData", "request_data", list)
        if len(rows) > self._max_batch_rows:
            raise PayloadTooLargeError(
                f"params.requestData has {len(rows)} rows; this server answers at most {self._max_batch_rows} per "
                "request (FEATUREBUS_SERVING_MAX_BATCH_ROWS): split the batch"
            )
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
        result = self._server.get_features_batch(workspace, service, join_key_maps, _options(params), contexts)
        self._decorate(surface, result, workspace, service, started, looked_up)
        payload = orjson.dumps(result)
        REQUEST_SECONDS.labels("get-features-batch", workspace, service).observe(time.perf_counter() - started)
        return payload

    def metadata(self, api_key: Caller, body: bytes) -> bytes:
        _, workspace, service = self._authorized_params(api_key, body)
        return orjson.dumps(self._server.metadata(workspace, service))


def _options(params: dict[str, Any]) -> Any:
    return _get(params, "metadataOptions", "metadata_options", dict, required=False)


def features_router(endpoints: FeatureEndpoints, admission: Admission, limits: ServingLimits) -> APIRouter:
    """The same endpoints as FastAPI routes, for the OpenAPI document (and any ASGI host that
    calls the FastAPI app without the fast path): admitted from the headers, then the body."""
    router = APIRouter(prefix=PREFIX, tags=["feature-service"])

    def route(endpoint: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            api_key = admission.admit(request.headers.get("authorization"))
            body = await read_body(request, limits.max_body_bytes)
            payload = endpoint(api_key, body)
            if not isinstance(payload, bytes):
                payload = await payload
            return Response(payload, media_type="application/json")

        return handler

    router.add_api_route(
        "/get-features",
        route(endpoints.get_features),
        methods=["POST"],
        openapi_extra=feature_route_doc("get-features"),
        name="get_features",
    )
    router.add_api_route(
        "/get-features-batch",
        route(endpoints.get_features_batch),
        methods=["POST"],
        openapi_extra=feature_route_doc("get-features-batch"),
        name="get_features_batch",
    )
    router.add_api_route(
        "/metadata",
        route(endpoints.metadata),
        methods=["POST"],
        openapi_extra=feature_route_doc("metadata"),
        name="metadata",
    )
    return router
