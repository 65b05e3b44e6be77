"""Alerts, freshness, metric history and the control plane's own ``/metrics``.

Paths (the web UI calls these): ``GET /workspaces/{workspace}/alerts``,
``POST /workspaces/{workspace}/alerts/{rule}/ack``, ``GET /workspaces/{workspace}/freshness``,
``GET /metrics/history?component=&metric=&since=``; each also under ``/v1`` like the other
control-plane routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from featurebus.platform.control.monitoring import Monitoring
from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, api_key_header, call_of, errors
from featurebus.serving.metrics_view import metrics_for

__all__ = ["monitoring_router"]

Since = Annotated[int | None, Query(ge=0, description="Epoch milliseconds: only points from then on.")]
Filter = Annotated[str | None, Query(max_length=200)]


def monitoring_router(plane: ControlPlane, monitoring: Monitoring) -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_key_header)], tags=["monitoring"])

    for prefix in ("", "/v1"):

        @router.get(f"{prefix}/workspaces/{{workspace}}/alerts", responses=errors(401, 403, 404, 503))
        def list_alerts(workspace: str, call: CallerCall) -> dict[str, Any]:
            """Every alert rule of the workspace with its state (ok, pending, firing, resolved), since
            when it fires, the last observed value, the threshold, and whether it was acknowledged."""
            return {"workspace": workspace, "alerts": monitoring.alerts(call, workspace)}

        @router.post(f"{prefix}/workspaces/{{workspace}}/alerts/{{rule}}/ack", responses=errors(400, 401, 403, 404))
        def ack_alert(workspace: str, rule: str, call: CallerCall) -> dict[str, Any]:
            """Acknowledge the rule's current firing episode (operator)."""
            return monitoring.ack(call, workspace, rule)

        @router.get(f"{prefix}/workspaces/{{workspace}}/freshness", responses=errors(401, 403, 404, 503))
        def freshness(workspace: str, call: CallerCall) -> dict[str, Any]:
            """Per online view: seconds since its newest served update, overall and per partition
            (None: nothing materialized yet), against its freshness threshold."""
            return {"workspace": workspace, "views": monitoring.freshness(call, workspace)}

        @router.get(f"{prefix}/metrics/history", responses=errors(401, 503))
        def history(
            call: CallerCall, component: Filter = None, metric: Filter = None, since: Since = None
        ) -> dict[str, Any]:
            """The evaluator's recent scrapes: ``{"series": [{component, metric, labels, points: [[ms, value]]}],
            "points": [[ms, value]]}``; ``points`` sums the matching series at each scrape (one chart line)."""
            series = monitoring.history(call, component, metric, since)
            totals: dict[int, float] = {}
            for one in series:
                for at_ms, value in one["points"]:
                    totals[at_ms] = totals.get(at_ms, 0.0) + value
            return {"series": series, "points": [[at_ms, totals[at_ms]] for at_ms in sorted(totals)]}

    @router.get("/metrics", responses=errors(401))
    def metrics(request: Request) -> Response:
        """The control plane's own Prometheus metrics (the series of the caller's workspaces)."""
        caller = plane.guard.authenticate(call_of(request), "metrics")
        return Response(metrics_for(caller, plane.guard.access.view), media_type=CONTENT_TYPE_LATEST)

    return router
