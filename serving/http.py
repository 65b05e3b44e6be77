"""HTTP plumbing shared by the routers: bounded request bodies, structured access logs, and the
ASGI fast path that answers the feature lookups without FastAPI's per-request layers.

Every keyed route admits a request from its headers (``Admission``: ready, known key) before
reading its body; the time a client may take to send the body is bounded by the connection
guard (``connection_guard.py``), not here, so the hot path arms no timer of its own.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request

from featurebus.platform.access.view import Caller
from featurebus.schemas.errors import InvalidRequestError, PayloadTooLargeError
from featurebus.serving.errors import render_error
from featurebus.serving.limits import ServingLimits
from featurebus.serving.readiness import Admission
from featurebus.serving.request_metrics import begin_request, current_target, end_request

__all__ = ["MAX_BODY_BYTES", "Handler", "read_body", "receive_body", "install_access_log", "serve_bytes", "log_access"]

MAX_BODY_BYTES = ServingLimits().max_body_bytes

# (the admitted caller's key, the raw body) -> the JSON response body
Handler = Callable[[Caller, bytes], bytes | Awaitable[bytes]]

access_log = logging.getLogger("featurebus.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _declared_too_large(declared: str | None, max_bytes: int) -> None:
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"request body of {declared} bytes is larger than the {max_bytes}-byte limit")


async def read_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (413) as soon as it is larger than ``max_bytes``: the declared
    length is checked first, and a body without one is counted while it streams in."""
    _declared_too_large(request.headers.get("content-length"), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"request body is larger than the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header from an ASGI scope (names arrive lower-cased)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def receive_body(scope: Scope, receive: Receive, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """``read_body`` for a raw ASGI request, with the same limits and errors."""
    _declared_too_large(header(scope, b"content-length"), max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # nobody to answer; never act on half a body
            raise InvalidRequestError("the client disconnected before sending the whole request body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(f"request body is larger than the {max_bytes}-byte limit")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def log_access(scope: Scope, status: int, started: float) -> None:
    """Count the request (``request_metrics``) and write one JSON line on the ``featurebus.access``
    logger (never the API key)."""
    end_request(scope.get("path", ""), current_target(), status, time.perf_counter() - started)
    if access_log.isEnabledFor(logging.INFO):
        client = scope.get("client")
        access_log.info(
            orjson.dumps(
                {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": client[0] if client else None,
                }
            ).decode()
        )


async def serve_bytes(
    handler: Handler, admission: Admission, max_body_bytes: int, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one request with ``handler(admitted key, body)`` (bytes, or awaitable bytes) as
    ``application/json``; a raised error becomes the same JSON error response the FastAPI
    handlers give. The body is read only once the headers admitted the request."""
    started = time.perf_counter()
    begin_request()
    try:
        api_key = admission.admit(header(scope, b"authorization"))
        result = handler(api_key, await receive_body(scope, receive, max_body_bytes))
        payload = await result if inspect.isawaitable(result) else result
    except Exception as exc:
        response = render_error(exc)
        await response(scope, receive, send)
        log_access(scope, response.status_code, started)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
    log_access(scope, 200, started)


class _AccessLog:
    """Pure ASGI middleware (Starlette's ``@app.middleware("http")`` runs every request in an
    extra task with memory streams, which costs more than a feature lookup)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        begin_request()
        status = 500  # what the client sees if the app fails before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            log_access(scope, status, started)


def install_access_log(app: FastAPI) -> None:
    """One JSON line per request on the ``featurebus.access`` logger (never the API key)."""
    app.add_middleware(_AccessLog)  # type: ignore[arg-type]
