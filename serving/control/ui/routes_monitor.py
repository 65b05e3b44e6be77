"""Alerts (firing and resolved; acknowledge) and serving health (requests/s, p50/p99 latency,
error rate and ingestion over the last hours), from the monitoring routes through
``MonitoringClient``: absent routes read "no data yet", failing ones "component down"."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from featurebus.serving.control.ui.charts import line_chart, points_of
from featurebus.serving.control.ui.monitoring_client import Fetched, MonitoringClient
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import Ctx

__all__ = ["monitor_pages"]

# (component, metric, title): the series the serving page charts.
SERVING_SERIES = (
    ("serving", "featurebus_serving_requests_per_second", "requests/s"),
    ("serving", "featurebus_serving_latency_p50_ms", "p50 latency (ms)"),
    ("serving", "featurebus_serving_latency_p99_ms", "p99 latency (ms)"),
    ("serving", "featurebus_serving_error_ratio", "error rate"),
    ("serving", "featurebus_ingest_records_per_second", "ingested records/s"),
)


def monitor_pages() -> APIRouter:
    router = APIRouter(prefix="/ui", route_class=UiRoute)

    @router.get("/w/{workspace}/alerts")
    async def alerts(request: Request, ctx: Ctx, workspace: str) -> HTMLResponse:
        fetched = await MonitoringClient(request.app, ctx.call).get("alerts", workspace=workspace)
        return page(
            request,
            ctx,
            "alerts.html",
            workspace=workspace,
            fetched=fetched,
            alerts=_alert_rows(fetched),
            operator=ctx.can("manage_jobs", workspace),
        )

    @router.post("/w/{workspace}/alerts/{rule}/ack")
    async def ack(request: Request, ctx: Ctx, workspace: str, rule: str) -> HTMLResponse:
        fetched = await MonitoringClient(request.app, ctx.call).post("ack", workspace=workspace, rule=rule)
        if fetched.ok or (fetched.state == "empty" and fetched.status == 200):
            return partial("_note.html", message=f"Alert {rule} acknowledged.")
        return partial("_error.html", status=fetched.status, code=fetched.state.upper(), message=fetched.note)

    @router.get("/serving")
    async def serving(request: Request, ctx: Ctx, hours: Annotated[float, Query(gt=0, le=168)] = 3.0) -> HTMLResponse:
        client = MonitoringClient(request.app, ctx.call)
        since_ms = int((time.time() - hours * 3600) * 1000)
        answers = await asyncio.gather(
            *(client.get("history", {"component": c, "metric": m, "since": since_ms}) for c, m, _ in SERVING_SERIES)
        )
        charts = [
            (title, _chart(title, fetched)) for (_, _, title), fetched in zip(SERVING_SERIES, answers, strict=True)
        ]
        return page(request, ctx, "serving.html", charts=charts, hours=hours)

    return router


def _alert_rows(fetched: Fetched) -> list[dict[str, Any]]:
    if not fetched.ok:
        return []
    data = fetched.data
    items = data.get("alerts", []) if isinstance(data, dict) else data
    return [a for a in items if isinstance(a, dict)] if isinstance(items, list) else []


def _chart(title: str, fetched: Fetched) -> Any:
    if not fetched.ok:
        return fetched.note
    points = points_of(fetched.data)
    return line_chart(points, title) if points else "no data yet"
