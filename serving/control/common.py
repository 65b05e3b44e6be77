"""What every control-plane route shares: who is calling (``Call``), and the OpenAPI fragments."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader

from featurebus.platform.control.guard import Call
from featurebus.serving.openapi_docs import ERROR

__all__ = ["REQUEST_ID_HEADER", "CallerCall", "OptionalName", "api_key_header", "call_of", "errors"]

REQUEST_ID_HEADER = "X-Request-Id"

# Declares the security scheme in the OpenAPI document; the guard does the checking.
api_key_header = APIKeyHeader(
    name="Authorization",
    scheme_name="TectonKey",
    auto_error=False,
    description="`Tecton-key <key>` or `Bearer <key>`; `featurebus login` stores one.",
)

_MEANING = {
    400: "Invalid request: the message names the field.",
    401: "No key, or an unknown, revoked or expired one.",
    403: "The key's principal lacks the role; the message names the role needed.",
    404: "No such workspace, job, principal or key.",
    409: "The workspace moved on since the plan was made (currentVersion says where it is now).",
    503: "Kafka is unreachable.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"description": _MEANING[status], "content": {"application/json": {"schema": ERROR}}}
        for status in statuses
    }


def call_of(request: Request) -> Call:
    """The request's key and id (the client's ``X-Request-Id`` if it sent a sane one)."""
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = sent if 0 < len(sent) <= 64 and sent.replace("-", "").isalnum() else uuid.uuid4().hex
    request.state.request_id = request_id
    return Call(request.headers.get("authorization"), request_id)


# Module level: FastAPI resolves these (string) annotations in the routes' module globals.
CallerCall = Annotated[Call, Depends(call_of)]
OptionalName = Annotated[str | None, Query(max_length=100)]
