"""The control plane's FastAPI application: two routers over ``ControlPlane``, the one error table
(``featurebus.serving.errors``), a request id on every answer, and ``/health``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import REQUEST_ID_HEADER
from featurebus.serving.control.routes_access import access_router
from featurebus.serving.control.routes_definitions import definitions_router
from featurebus.serving.control.routes_deletes import deletes_router
from featurebus.serving.control.routes_explain import explain_router
from featurebus.serving.control.routes_lineage import lineage_router
from featurebus.serving.control.routes_offline import offline_router
from featurebus.serving.control.routes_quality import quality_router
from featurebus.serving.control.ui import UiSettings, mount_ui
from featurebus.serving.errors import install_error_handlers

__all__ = ["create_control_app"]

_DESCRIPTION = """The only writer of featurebus's definitions, jobs, principals, keys, role bindings and
audit log. Every call carries `Authorization: Tecton-key <key>` (or `Bearer <key>`); roles are per
workspace (viewer < consumer < operator < editor < owner) plus the instance admin. Errors are JSON
with a `message` (and a `code`); every mutating call and every refused one is in the audit log."""


def create_control_app(plane: ControlPlane, ui: UiSettings | None = None, offline_root: Path | None = None) -> FastAPI:
    """The API and, at ``/ui``, the web UI over the same services (``ui`` says where the bus and
    the serving API are; without it the UI shows materialization and "try it" as unavailable).
    ``offline_root``: the offline store the data-quality, drift and parity routes read (None: no
    such routes)."""
    app = FastAPI(title="featurebus control plane", version="1", description=_DESCRIPTION)
    install_error_handlers(app)
    app.include_router(definitions_router(plane))
    app.include_router(access_router(plane))
    app.include_router(offline_router(plane))
    app.include_router(lineage_router(plane))
    app.include_router(explain_router(plane))
    mount_ui(app, plane, ui or UiSettings())
    app.include_router(deletes_router(plane))
    if offline_root is not None:
        app.include_router(quality_router(plane, offline_root))

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        sent = getattr(request.state, "request_id", None)
        if sent:
            response.headers[REQUEST_ID_HEADER] = sent
        return response

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    return app
