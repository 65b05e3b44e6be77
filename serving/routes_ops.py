"""Operational routes: ``/health`` (liveness), ``/ready`` (online store current), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.serving.errors import error_response
from featurebus.serving.online_materializer import OnlineMaterializer
from featurebus.serving.openapi_docs import open_route_doc, secured_route_doc

__all__ = ["ops_router"]

_OK = b'{"status":"ok"}'


def ops_router(keys: ApiKeyStore, materializer: OnlineMaterializer | None) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", openapi_extra=open_route_doc())
    def health() -> Response:
        """The process is up (says nothing about data freshness: see /ready)."""
        return Response(_OK, media_type="application/json")

    @router.get("/ready", openapi_extra=open_route_doc())
    def ready() -> Response:
        """200 once the online store has caught up with the bus; 503 with the reason otherwise."""
        if materializer is None:  # a server over a fixed store (tests, embedding)
            return Response(_OK, media_type="application/json")
        if materializer.error is not None:
            return error_response(503, "UNAVAILABLE", materializer.error)
        if not materializer.ready():
            lag = materializer.lag()
            behind = sum(lag.values())
            return error_response(
                503,
                "UNAVAILABLE",
                f"online store is catching up with the bus: {behind} records behind on {len(lag)} partitions",
            )
        return Response(_OK, media_type="application/json")

    @router.get("/metrics", openapi_extra=secured_route_doc())
    def metrics(request: Request) -> Response:
        """Prometheus text format; any valid API key may scrape (``Authorization: Bearer <key>``)."""
        keys.authenticate(request.headers.get("authorization"))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
