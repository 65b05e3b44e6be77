"""Templates, and the one place UI errors become pages: a route raises the platform's errors like
any API route; ``UiRoute`` renders them with the API's status code and message (never a
traceback), and sends an unauthenticated browser back to sign-in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from featurebus.schemas.errors import AuthenticationError, FeaturebusError
from featurebus.schemas.time import format_iso_ms
from featurebus.serving.control.ui.session import COOKIE, UiContext
from featurebus.serving.errors import status_of

__all__ = ["UiRoute", "page", "partial"]

_log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
_env.filters["iso"] = lambda ms: format_iso_ms(int(ms)) if ms else ""


def partial(template: str, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**values))


def page(request: Request, ctx: UiContext, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _env.get_template(template).render(
        request=request, ctx=ctx, principal=ctx.caller.principal, workspaces=ctx.workspaces, **values
    )
    return HTMLResponse(html, status_code=status_code)


def _signed_out(request: Request, message: str) -> Response:
    target = "/ui/login?reason=" + ("expired" if "expired" in message else "signin")
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=401, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _error_page(request: Request, exc: FeaturebusError) -> Response:
    status, code = status_of(exc)
    if request.headers.get("hx-request"):
        # htmx swaps 4xx/5xx bodies only when told to; the banner replaces the form's result area.
        return HTMLResponse(
            _env.get_template("_error.html").render(status=status, code=code, message=str(exc)),
            status_code=status,
        )
    html = _env.get_template("error.html").render(request=request, status=status, code=code, message=str(exc))
    return HTMLResponse(html, status_code=status)


class UiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def render_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthenticationError as exc:
                return _signed_out(request, str(exc))
            except FeaturebusError as exc:
                return _error_page(request, exc)

        return render_errors
