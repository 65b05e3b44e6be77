"""The serving FastAPI app: routers over the framework-free ``FeatureServer``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import orjson
from fastapi import FastAPI, Request, Response

from featurebus import __version__
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.online_materializer import OnlineMaterializer
from featurebus.serving.errors import install_error_handlers
from featurebus.serving.http import install_access_log
from featurebus.serving.ingest import IngestService
from featurebus.serving.openapi_docs import SECURITY_SCHEME
from featurebus.serving.routes_features import features_router
from featurebus.serving.routes_ingest import ingest_router
from featurebus.serving.routes_ops import ops_router
from featurebus.serving.service import FeatureServer

__all__ = ["create_app"]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


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
    app = FastAPI(
        lifespan=lifespan,
        title="featurebus serving",
        version=__version__,
        description="Tecton-compatible feature serving. Authenticate with `Authorization: Tecton-key <key>`.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_access_log(app)
    app.include_router(features_router(server, keys))
    app.include_router(ops_router(keys, materializer))
    if ingest is not None:
        app.include_router(ingest_router(ingest, keys))

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
