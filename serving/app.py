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
from featurebus.serving.http import Receive, Scope, Send, install_access_log, serve_bytes
from featurebus.serving.ingest import IngestService
from featurebus.serving.online_materializer import OnlineMaterializer
from featurebus.serving.openapi_docs import SECURITY_SCHEME
from featurebus.serving.routes_features import Endpoint, FeatureEndpoints, features_router
from featurebus.serving.routes_ingest import IngestEndpoint, ingest_router
from featurebus.serving.routes_ops import ops_router
from featurebus.serving.service import FeatureServer

__all__ = ["create_app"]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _ServingApp(FastAPI):
    """FastAPI, except that the feature lookups and ingestion (``fast_routes``, POST only) are answered
    straight from ASGI: FastAPI's middleware stack, routing and request objects cost several
    times what a lookup does. Their OpenAPI entries, errors and access lines stay the same."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[str, Endpoint] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast_routes.get(scope["path"])
            if endpoint is not None:
                await serve_bytes(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


def create_app(
    server: FeatureServer,
    keys: ApiKeyStore,
    materializer: OnlineMaterializer | None = None,
    *,
    ingest: IngestService | None = None,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """The app. It never starts or stops ``materializer`` itself: whoever owns the process's
    resources passes a ``lifespan`` that does (see ``main.py``)."""
    # FastAPI's own /openapi.json and /docs would be open to anyone: every endpoint but the
    # health checks needs a key, so the document is served below behind one, and the Swagger
    # page (which fetches the document without credentials) is not served at all.
    app = _ServingApp(
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
    endpoints = FeatureEndpoints(server, keys)
    app.fast_routes = endpoints.routes()
    app.include_router(features_router(endpoints))
    app.include_router(ops_router(keys, materializer))
    if ingest is not None:
        ingest_endpoint = IngestEndpoint(ingest, keys)
        app.fast_routes["/ingest"] = ingest_endpoint.ingest
        app.include_router(ingest_router(ingest_endpoint))

    document: list[bytes] = []  # built on first use, once every router is in

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(request: Request) -> Response:
        keys.authenticate(request.headers.get("authorization"))
        if not document:
            spec = app.openapi()
            spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEME
            document.append(orjson.dumps(spec))
        return Response(document[0], media_type="application/json")

    return app
