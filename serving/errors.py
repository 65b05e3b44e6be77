"""The one place where exceptions become HTTP responses.

Every error body is JSON ``{"message": "...", "code": "<ERROR_NAME>"}``; services and routes only
raise ``featurebus.schemas.errors`` and never pick status codes themselves.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter
from starlette.exceptions import HTTPException

from featurebus.schemas.errors import (
    AuthenticationError,
    ConflictError,
    DefinitionError,
    FeaturebusError,
    InvalidRequestError,
    KafkaUnavailableError,
    MonitorUnavailableError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RecordValidationError,
    RequestTimeoutError,
)

__all__ = ["install_error_handlers", "error_response", "render_error", "status_of", "AUTH_FAILURES"]

AUTH_FAILURES = Counter("featurebus_serving_auth_failures_total", "Rejected requests by reason", ["code"])

# Most specific first: the first isinstance match wins.
_STATUS: tuple[tuple[type[FeaturebusError], int, str], ...] = (
    (PayloadTooLargeError, 413, "PAYLOAD_TOO_LARGE"),
    (RequestTimeoutError, 408, "REQUEST_TIMEOUT"),
    (InvalidRequestError, 400, "INVALID_ARGUMENT"),
    (AuthenticationError, 401, "UNAUTHENTICATED"),
    (PermissionDeniedError, 403, "PERMISSION_DENIED"),
    (NotFoundError, 404, "NOT_FOUND"),
    (ConflictError, 409, "CONFLICT"),
    (DefinitionError, 400, "INVALID_DEFINITION"),
    (KafkaUnavailableError, 503, "UNAVAILABLE"),
    (NotReadyError, 503, "UNAVAILABLE"),
    (MonitorUnavailableError, 503, "UNAVAILABLE"),
)
_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}

_log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str) -> Response:
    return Response(orjson.dumps({"message": message, "code": code}), status_code=status, media_type="application/json")


def status_of(exc: FeaturebusError) -> tuple[int, str]:
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "INTERNAL"


async def _handle(_request: Request, exc: Exception) -> Response:
    """The single exception handler, registered for every type below."""
    return render_error(exc)


def render_error(exc: Exception) -> Response:
    """The JSON error response for ``exc``: the exception handler's, and the ASGI fast path's."""
    if isinstance(exc, FeaturebusError):
        status, code = status_of(exc)
        if status in (401, 403):
            AUTH_FAILURES.labels(code).inc()
        elif status == 500:
            _log.error("request failed: %s", exc)
        if isinstance(exc, RecordValidationError):
            body = {"message": str(exc), "code": code, "recordErrors": exc.record_errors}
            return Response(orjson.dumps(body), status_code=status, media_type="application/json")
        if isinstance(exc, ConflictError):
            conflict: dict[str, object] = {"message": str(exc), "code": code, "currentVersion": exc.current_version}
            return Response(orjson.dumps(conflict), status_code=status, media_type="application/json")
        response = error_response(status, code, str(exc))
        if isinstance(exc, NotReadyError):  # a client (or load balancer) knows when to ask again
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response
    if isinstance(exc, RequestValidationError):
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(400, "INVALID_ARGUMENT", f"invalid request: {details}")
    if isinstance(exc, HTTPException):  # unknown route, wrong method, ...
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response
    _log.error("unexpected error while serving a request", exc_info=exc)
    return error_response(500, "INTERNAL", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    for exc_type in (FeaturebusError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(exc_type, _handle)
