"""Who is using the UI: the key held in an HttpOnly, SameSite=Strict cookie, turned into the same
``Call`` the JSON API builds from an ``Authorization`` header, so every UI action runs through the
control plane's ``Guard`` (nothing here decides a permission).

``UiContext.can`` only decides what to *offer*; the guarded service refuses anyway.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request

from featurebus.platform.access.roles import Action
from featurebus.platform.access.view import Caller
from featurebus.platform.control.guard import Call
from featurebus.platform.control.plane import ControlPlane
from featurebus.schemas.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError

__all__ = ["COOKIE", "Form", "UiContext", "form_fields", "session_call"]

COOKIE = "featurebus_session"
_MAX_FORM_BYTES = 64 * 1024


def session_call(request: Request) -> Call:
    """The signed-in key as an ``Authorization`` header; no cookie: the guard refuses it (401)."""
    key = request.cookies.get(COOKIE)
    request.state.request_id = uuid.uuid4().hex
    return Call(f"Bearer {key}" if key else None, request.state.request_id)


@dataclasses.dataclass(frozen=True)
class UiContext:
    plane: ControlPlane
    call: Call
    caller: Caller
    workspaces: tuple[str, ...]  # the workspaces this caller may read, for the switcher

    def can(self, action: str, workspace: str | None = None) -> bool:
        """Whether to offer ``action`` (an ``Action`` value) in ``workspace``."""
        try:
            self.plane.guard.access.view.permit(self.caller, workspace, Action(action))
        except PermissionDeniedError:
            return False
        return True


def ui_context(request: Request) -> UiContext:
    plane: ControlPlane = request.app.state.plane
    call = session_call(request)
    caller = plane.guard.authenticate(call, "ui")
    view = plane.guard.access.view
    names = tuple(
        name for name in sorted(plane.catalog.specs.specs()) if caller.admin or view.role_of(caller, name) is not None
    )
    return UiContext(plane, call, caller, names)


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the UI's forms and htmx posts)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise InvalidRequestError(f"the form is larger than {_MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise InvalidRequestError("the form is not UTF-8") from None


Form = Annotated[dict[str, str], Depends(form_fields)]
Ctx = Annotated[UiContext, Depends(ui_context)]


def require_key(value: str) -> str:
    key = value.strip()
    if not key:
        raise AuthenticationError(
            "enter an API key (`featurebus api-key create`, or the admin key `featurebus up` printed)"
        )
    return key
