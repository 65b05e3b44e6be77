"""HTTP plumbing shared by the routers: bounded request bodies and structured access logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI, Request, Response

from featurebus.exceptions import PayloadTooLargeError

__all__ = ["MAX_BODY_BYTES", "read_body", "install_access_log"]

# 10,000 ingest records of a few hundred bytes fit; a feature lookup is a few hundred bytes.
MAX_BODY_BYTES = 8 * 1024 * 1024

access_log = logging.getLogger("featurebus.access")


async def read_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (413) as soon as it is larger than ``max_bytes``: the declared
    length is checked first, and a body without one is counted while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"request body of {declared} bytes is larger than the {max_bytes}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"request body is larger than the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def install_access_log(app: FastAPI) -> None:
    """One JSON line per request on the ``featurebus.access`` logger (never the API key)."""

    @app.middleware("http")
    async def log_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(orjson.dumps({
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "client": request.client.host if request.client else None,
            }).decode())
        return response
