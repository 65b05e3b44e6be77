"""Operational routes: ``/health`` (liveness), ``/ready`` (readiness), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from featurebus.serving.errors import error_response
from featurebus.serving.metrics_view import metrics_for
from featurebus.serving.openapi_docs import open_route_doc, secured_route_doc
from featurebus.serving.readiness import RETRY_AFTER_S, Admission

__all__ = ["ops_router"]

_OK = b'{"status":"ok"}'


def ops_router(admission: Admission) -> APIRouter:
    router = APIRouter(tags=["operations"])
    readiness = admission.readiness

    @router.get("/health", openapi_extra=open_route_doc())
    def health() -> Response:
        """The process is up (says nothing about data freshness: see /ready)."""
        return Response(_OK, media_type="application/json")

    @router.get("/ready", openapi_extra=open_route_doc())
    def ready() -> Response:
        """200 once this process answers feature requests (its API keys and online copy caught up
        with the bus since start) and its copy is kept current; 503 with the reason otherwise."""
        reason = readiness.not_ready_reason() or readiness.stale_reason()
        if reason is None:
            return Response(_OK, media_type="application/json")
        response = error_response(503, "UNAVAILABLE", reason)
        response.headers["retry-after"] = str(RETRY_AFTER_S)
        return response

    @router.get("/metrics", openapi_extra=secured_route_doc())
    def metrics(request: Request) -> Response:
        """Prometheus text format (``Authorization: Bearer <key>``): the series of the workspaces the
        key's principal holds a role in, and those of no workspace; an instance admin sees all."""
        api_key = admission.admit(request.headers.get("authorization"))
        return Response(metrics_for(api_key, admission.keys), media_type=CONTENT_TYPE_LATEST)

    return router
