"""Mounts the UI's routers (one per page group) and its static files on the control plane's app."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.ui.routes_access import access_pages
from featurebus.serving.control.ui.routes_browse import browse_pages
from featurebus.serving.control.ui.routes_explain import explain_pages
from featurebus.serving.control.ui.routes_jobs import job_pages
from featurebus.serving.control.ui.routes_monitor import monitor_pages
from featurebus.serving.control.ui.routes_objects import object_pages
from featurebus.serving.control.ui.routes_tryit import tryit_pages

__all__ = ["UiSettings", "mount_ui"]

# resolve(): a strict editable install links each file; its real directory holds every asset.
STATIC = Path(__file__).resolve().parent / "static"


@dataclasses.dataclass(frozen=True)
class UiSettings:
    """What the UI (and the explain endpoint) need beyond the control plane: the bus
    (materialization state), where the serving API answers ("try it"; looked up per request,
    since `up` records it after starting) and the offline store ("explain a value")."""

    bootstrap: str | None = None
    serving_url: Callable[[], str | None] = lambda: None
    offline_root: Path | None = None  # "explain a value" reads the offline store


def mount_ui(app: FastAPI, plane: ControlPlane, settings: UiSettings) -> None:
    app.state.plane = plane
    app.state.ui = settings
    for router in (
        browse_pages(),
        object_pages(),
        job_pages(),
        access_pages(),
        monitor_pages(),
        tryit_pages(),
        explain_pages(),
    ):
        app.include_router(router, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    def ui_home() -> RedirectResponse:
        return RedirectResponse("/ui/workspaces", status_code=303)
