"""The serving FastAPI app: routers over the framework-free ``FeatureServer``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version as _installed_version
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.serving.errors import install_error_handlers
from featurebus.serving.http import Handler, Receive, Scope, Send, install_access_log, serve_bytes
from featurebus.serving.ingest import IngestService
from featurebus.serving.limits import ServingLimits
from featurebus.serving.online_materializer import OnlineMaterializer
from featurebus.serving.openapi_docs import SECURITY_SCHEME
from featurebus.serving.readiness import Admission, Readiness
from featurebus.serving.routes_features import FeatureEndpoints, features_router
from featurebus.serving.routes_ingest import IngestEndpoint, ingest_router
from featurebus.serving.routes_ops import ops_router
from featurebus.serving.service import FeatureServer

__all__ = ["create_app"]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _ServingApp(FastAPI):
    """FastAPI, except that the feature lookups and ingestion (``fast_routes``, POST only) are answered
    straight from ASGI: FastAPI's middleware stack, routing and request objects cost several
    times what a lookup does. Their OpenAPI entries, errors and access lines stay the same."""

    def __init__(self, admission: Admission, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[str, Handler] = {}
        self.admission = admission
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.fast_routes.get(scope["path"])
            if handler is not None:
                await serve_bytes(handler, self.admission, self.max_body_bytes, scope, receive, send)
                return
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


def create_app(
    server: FeatureServer,
    keys: ApiKeyStore,
    materializer: OnlineMaterializer | None = None,
    *,
    ingest: IngestService | None = None,
    lifespan: Lifespan | None = None,
    limits: ServingLimits | None = None,
) -> FastAPI:
    """The app. It never starts or stops ``materializer`` itself: whoever owns the process's
    resources passes a ``lifespan`` that does (see ``main.py``). With a ``materializer``, keyed
    requests wait (503) until it caught up since start (``readiness.py``)."""
    limits = limits or ServingLimits()
    admission = Admission(Readiness(materializer), keys)
    # FastAPI's own /openapi.json and /docs would be open to anyone: every endpoint but the
    # health checks needs a key, so the document is served below behind one, and the Swagger
    # page (which fetches the document without credentials) is not served at all.
    app = _ServingApp(
        admission,
        limits.max_body_bytes,
        lifespan=lifespan,
        title="featurebus serving",
        version=_installed_version("featurebus"),
        description="Tecton-compatible feature serving. Authenticate with `Authorization: Tecton-key <key>`.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_access_log(app)
    endpoints = FeatureEndpoints(server, admission.keys, limits)
    app.fast_routes = endpoints.routes()
    app.include_router(features_router(endpoints, admission, limits))
    app.include_router(ops_router(admission))
    if ingest is not None:
        ingest_endpoint = IngestEndpoint(ingest, admission.keys, limits)
        app.fast_routes["/ingest"] = ingest_endpoint.ingest
        app.include_router(ingest_router(ingest_endpoint, admission, limits))

    document: list[bytes] = []  # built on first use, once every router is in

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(request: Request) -> Response:
        admission.admit(request.headers.get("authorization"))
        if not document:
            spec = app.openapi()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEME
            document.append(orjson.dumps(spec))
        return Response(document[0], media_type="application/json")

    return app
