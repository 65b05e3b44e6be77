"""Object pages (definition, features, materialization, jobs, history, monitoring panels) and the
lineage graph."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from featurebus.platform.control.catalog import ObjectKind, spec_object
from featurebus.platform.control.lineage import lineage_graph
from featurebus.platform.control.materialization import materialization_state
from featurebus.schemas.specs import StreamFeatureViewSpec
from featurebus.serving.control.ui.monitoring_client import Fetched, MonitoringClient
from featurebus.serving.control.ui.quality_panels import PanelShapeError, drift_panel, parity_panel, stats_panel
from featurebus.serving.control.ui.render import UiRoute, page
from featurebus.serving.control.ui.session import Ctx, UiContext

__all__ = ["object_pages"]

_log = logging.getLogger(__name__)
_VIEW_KINDS = (ObjectKind.STREAM_FEATURE_VIEW, ObjectKind.BATCH_FEATURE_VIEW)


def object_pages() -> APIRouter:
    router = APIRouter(prefix="/ui/w/{workspace}", route_class=UiRoute)

    @router.get("/objects/{name}")
    async def object_page(request: Request, ctx: Ctx, workspace: str, name: str) -> HTMLResponse:
        values = await run_in_threadpool(_object_values, ctx, workspace, name, request.app.state.ui.bootstrap)
        client = MonitoringClient(request.app, ctx.call)
        kind = values["kind"]
        panels: dict[str, Panel] = {}
        if kind in _VIEW_KINDS:
            stats, drift = await asyncio.gather(
                client.get("stats", workspace=workspace, view=name), client.get("drift", workspace=workspace, view=name)
            )
            panels = {"quality": _panel(stats, stats_panel), "drift": _panel(drift, drift_panel)}
        elif kind is ObjectKind.FEATURE_SERVICE:
            parity = await client.get("parity", workspace=workspace, service=name)
            panels = {"parity": _panel(parity, parity_panel)}
        return page(request, ctx, "object.html", panels=panels, **values)

    @router.get("/lineage")
    def lineage(request: Request, ctx: Ctx, workspace: str) -> HTMLResponse:
        graph = lineage_graph(ctx.plane.catalog.spec(ctx.call, workspace))
        return page(
            request, ctx, "lineage.html", workspace=workspace, nodes=len(graph["nodes"]), edges=len(graph["edges"])
        )

    @router.get("/lineage.json")
    def lineage_json(ctx: Ctx, workspace: str) -> dict[str, Any]:
        return lineage_graph(ctx.plane.catalog.spec(ctx.call, workspace))

    return router


@dataclasses.dataclass(frozen=True)
class Panel:
    """A monitoring panel: what the route answered and, when it answered, what the page draws."""

    fetched: Fetched
    parsed: Any = None

    @property
    def empty(self) -> bool:
        return not self.parsed  # no column with data, no feature, or a report without requests


def _panel(fetched: Fetched, parse: Callable[[Any], Any]) -> Panel:
    if not fetched.ok:
        return Panel(fetched)
    try:
        return Panel(fetched, parse(fetched.data))
    except PanelShapeError as exc:
        _log.warning("monitoring answer not understood: %s", exc)
        return Panel(Fetched("down", note=f"component answered in an unexpected shape: {exc}", status=502))


def _object_values(ctx: UiContext, workspace: str, name: str, bootstrap: str | None) -> dict[str, Any]:
    spec = ctx.plane.catalog.spec(ctx.call, workspace)
    kind, document = spec_object(spec, name)
    features = [row for row in ctx.plane.catalog.rows_of(spec) if row.parent == name]
    transformation = document.get("transformation") or {}
    materialization = None
    jobs: list[dict[str, Any]] = []
    if kind in _VIEW_KINDS:
        jobs = ctx.plane.jobs.list_jobs(ctx.call, workspace, name)[::-1][:20]
    if kind is ObjectKind.STREAM_FEATURE_VIEW and bootstrap:
        view = next(v for v in spec.stream_feature_views if v.name == name)
        materialization = (
            materialization_state(bootstrap, spec, view) if isinstance(view, StreamFeatureViewSpec) else None
        )
    services = [s.name for s in spec.feature_services if any(sel.view == name for sel in s.selections)]
    return {
        "workspace": workspace,
        "name": name,
        "kind": kind,
        "document": document,
        "code": transformation.get("code", ""),
        "features": features,
        "materialization": materialization,
        "jobs": jobs,
        "services": services,
        "history": ctx.plane.history.of(ctx.call, workspace, name, spec.version),
        "live": spec.live,
        "version": spec.version,
    }
