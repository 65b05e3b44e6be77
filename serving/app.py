"""The serving FastAPI app: routers over the framework-free ``FeatureServer``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from featurebus import __version__
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.online_materializer import OnlineMaterializer
from featurebus.serving.errors import install_error_handlers
from featurebus.serving.routes_features import features_router
from featurebus.serving.routes_ops import ops_router
from featurebus.serving.service import FeatureServer

__all__ = ["create_app"]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    server: FeatureServer,
    keys: ApiKeyStore,
    materializer: OnlineMaterializer | None = None,
    *,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """The app. It never starts or stops ``materializer`` itself: whoever owns the process's
    resources passes a ``lifespan`` that does (see ``main.py``)."""
    app = FastAPI(
        lifespan=lifespan,
        title="featurebus serving",
        version=__version__,
        description="Tecton-compatible feature serving. Authenticate with `Authorization: Tecton-key <key>`.",
    )
    install_error_handlers(app)
    app.include_router(features_router(server, keys))
    app.include_router(ops_router(keys, materializer))
    return app
