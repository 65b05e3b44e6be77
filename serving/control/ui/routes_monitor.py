"""Alerts (firing and resolved; acknowledge) and serving health per feature service (requests/s,
p99 latency, error ratio; ingested requests/s per workspace) over the last hours, from the
monitoring routes through ``MonitoringClient``; ``monitoring_shapes`` reads the answers and derives
the rates. No p50: the metric history keeps no histogram buckets (the page says so)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from featurebus.platform.access.roles import Action
from featurebus.serving.control.ui.charts import line_chart
from featurebus.serving.control.ui.monitoring_client import Fetched, MonitoringClient
from featurebus.serving.control.ui.monitoring_shapes import (
    INGEST_ENDPOINT,
    AlertRow,
    Series,
    ShapeError,
    alert_rows,
    counter_rate,
    history_series,
)
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import Ctx

__all__ = ["monitor_pages"]

REQUESTS = "featurebus_serving_requests_total"
P99 = "featurebus_serving_latency_p99_ms"
ERROR_RATIO = "featurebus_serving_error_ratio"
SERVING_METRICS = (REQUESTS, P99, ERROR_RATIO)


def monitor_pages() -> APIRouter:
    router = APIRouter(prefix="/ui", route_class=UiRoute)

    @router.get("/w/{workspace}/alerts")
    async def alerts(request: Request, ctx: Ctx, workspace: str) -> HTMLResponse:
        fetched = await MonitoringClient(request.app, ctx.call).get("alerts", workspace=workspace)
        rows: list[AlertRow] = []
        if fetched.ok:
            try:
                rows = alert_rows(fetched.data)
            except ShapeError as exc:
                fetched = Fetched("down", note=f"component answered in an unexpected shape: {exc}", status=502)
        return page(
            request,
            ctx,
            "alerts.html",
            workspace=workspace,
            fetched=fetched,
            alerts=rows,
            operator=ctx.can(Action.MANAGE_ALERTS.value, workspace),
        )

    @router.post("/w/{workspace}/alerts/{rule}/ack")
    async def ack(request: Request, ctx: Ctx, workspace: str, rule: str) -> HTMLResponse:
        fetched = await MonitoringClient(request.app, ctx.call).post("ack", workspace=workspace, rule=rule)
        if fetched.ok:
            return partial("_note.html", message=f"Alert {rule} acknowledged.")
        return partial("_error.html", status=fetched.status, code=fetched.state.upper(), message=fetched.note)

    @router.get("/serving")
    async def serving(request: Request, ctx: Ctx, hours: Annotated[float, Query(gt=0, le=168)] = 3.0) -> HTMLResponse:
        client = MonitoringClient(request.app, ctx.call)
        since_ms = int((time.time() - hours * 3600) * 1000)
        answers = await asyncio.gather(
            *(client.get("history", {"component": "serving", "metric": m, "since": since_ms}) for m in SERVING_METRICS)
        )
        note, panels = "", []
        down = next((a for a in answers if a.state in ("down", "refused")), None)
        if down is not None:
            note = down.note
        else:
            try:
                panels = serving_panels(*(history_series(a.data) if a.ok else [] for a in answers))
            except ShapeError as exc:
                note = f"component answered in an unexpected shape: {exc}"
        return page(request, ctx, "serving.html", panels=panels, note=note, hours=hours)

    return router


def serving_panels(
    requests: list[Series], p99: list[Series], error_ratio: list[Series]
) -> list[tuple[str, list[tuple[str, Markup]]]]:
    """One panel per (workspace, feature service) with its request rate, p99 and error ratio, and
    one per workspace with its ingestion rate; each chart is the sum of its series."""
    by_key: dict[tuple[str, str], dict[str, list[Series]]] = defaultdict(lambda: defaultdict(list))
    for one in requests:
        workspace, service = one.labels.get("workspace", ""), one.labels.get("feature_service", "")
        if not workspace:
            continue  # /metrics, /health and scanners' paths: no workspace
        if one.labels.get("endpoint") == INGEST_ENDPOINT:
            by_key[(workspace, "")]["ingest"].append(one)
        elif service:
            by_key[(workspace, service)]["requests"].append(one)
    for name, found in (("p99", p99), ("errors", error_ratio)):
        for one in found:
            by_key[(one.labels.get("workspace", ""), one.labels.get("feature_service", ""))][name].append(one)
    panels = []
    for (workspace, service), groups in sorted(by_key.items()):
        if not service:
            title = f"{workspace} · ingestion"
            charts = [("ingested requests/s", line_chart(counter_rate(groups["ingest"]), "ingested requests/s"))]
        else:
            title = f"{workspace} · {service}"
            charts = [
                ("requests/s", line_chart(counter_rate(groups["requests"]), "requests/s")),
                ("p99 latency (ms)", line_chart(_summed(groups["p99"]), "p99 latency (ms)")),
                ("error ratio", line_chart(_summed(groups["errors"]), "error ratio")),
            ]
        panels.append((title, charts))
    return panels


def _summed(series: list[Series]) -> list[tuple[float, float]]:
    totals: dict[int, float] = defaultdict(float)
    for one in series:
        for at_ms, value in one.points:
            totals[at_ms] += value
    return [(float(t), totals[t]) for t in sorted(totals)]
