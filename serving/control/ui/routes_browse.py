"""Sign-in, the workspaces overview, and browse/search over every object."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from featurebus.platform.control.catalog import SORT_KEYS, ObjectKind
from featurebus.platform.control.definitions import workspace_summary
from featurebus.platform.control.guard import Call
from featurebus.platform.control.plane import ControlPlane
from featurebus.schemas.errors import AuthenticationError
from featurebus.schemas.jobs import JobState
from featurebus.serving.control.ui.monitoring_client import Fetched, MonitoringClient
from featurebus.serving.control.ui.monitoring_shapes import ShapeError, alert_rows, freshness_rows
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import COOKIE, Ctx, Form, UiContext, require_key

__all__ = ["browse_pages"]

Text = Annotated[str, Query(max_length=200)]


def browse_pages() -> APIRouter:
    router = APIRouter(prefix="/ui", route_class=UiRoute)

    @router.get("/login")
    def login_form(reason: Text = "") -> HTMLResponse:
        notes = {"expired": "Your key expired or was revoked: sign in with another.", "signin": "Sign in to continue."}
        return partial("login.html", note=notes.get(reason, ""), error="")

    @router.post("/login")
    def login(request: Request, form: Form) -> Response:
        plane: ControlPlane = request.app.state.plane
        try:
            key = require_key(form.get("key", ""))
            plane.guard.authenticate(Call(f"Bearer {key}", "ui-login"), "ui.signin")
        except AuthenticationError as exc:
            return partial("login.html", note="", error=str(exc))
        response = RedirectResponse("/ui/workspaces", status_code=303)
        response.set_cookie(
            COOKIE, key, httponly=True, samesite="strict", path="/ui", secure=request.url.scheme == "https"
        )
        return response

    @router.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/workspaces")
    async def workspaces(request: Request, ctx: Ctx) -> HTMLResponse:
        rows = await run_in_threadpool(_workspace_rows, ctx)
        client = MonitoringClient(request.app, ctx.call)
        health = await asyncio.gather(*(_health(client, row["name"]) for row in rows))
        for row, figures in zip(rows, health, strict=True):
            row.update(figures)
        return page(request, ctx, "workspaces.html", rows=rows)

    @router.get("/browse")
    def browse(
        request: Request,
        ctx: Ctx,
        q: Text = "",
        kind: Text = "",
        tag: Text = "",
        owner: Text = "",
        workspace: Text = "",
        sort: Text = "name",
        desc: bool = False,
        page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        filters = {"q": q, "kind": kind, "tag": tag, "owner": owner, "workspace": workspace, "sort": sort, "desc": desc}
        found = ctx.plane.catalog.search(
            ctx.call, workspace, text=q, kind=kind, tag=tag, owner=owner, sort=sort, descending=desc, page=page_number
        )
        values: dict[str, Any] = {
            "found": found,
            "filters": filters,
            "kinds": [k.value for k in ObjectKind],
            "sorts": SORT_KEYS,
        }
        if request.headers.get("hx-request"):
            return partial("_browse_rows.html", **values)
        return page(request, ctx, "browse.html", **values)

    return router


def _workspace_rows(ctx: UiContext) -> list[dict[str, Any]]:
    rows = [workspace_summary(spec) for spec in ctx.plane.catalog.readable(ctx.call)]
    for row in rows:
        try:
            jobs = ctx.plane.jobs.list_jobs(ctx.call, row["name"])
            row["failedJobs"] = sum(1 for j in jobs if j["state"] == JobState.FAILED.value)
            row["jobs"] = len(jobs)
        except Exception as exc:  # a jobs topic that does not answer: say so in the row
            row["failedJobs"], row["jobs"], row["jobsError"] = None, None, str(exc)
    return rows


async def _health(client: MonitoringClient, workspace: str) -> dict[str, Any]:
    alerts, freshness = await asyncio.gather(
        client.get("alerts", workspace=workspace), client.get("freshness", workspace=workspace)
    )
    return {"alerts": _firing(alerts), "freshness": _worst_freshness(freshness)}


def _firing(fetched: Fetched) -> str:
    if not fetched.ok:
        return fetched.note
    try:
        rows = alert_rows(fetched.data)
    except ShapeError as exc:
        return f"unexpected answer: {exc}"
    return f"{sum(1 for a in rows if a.state == 'firing')} firing"


def _worst_freshness(fetched: Fetched) -> str:
    """The stalest online view (seconds since its newest served update), marked when over its threshold."""
    if not fetched.ok:
        return fetched.note
    try:
        rows = [r for r in freshness_rows(fetched.data) if r.freshness_seconds is not None]
    except ShapeError as exc:
        return f"unexpected answer: {exc}"
    if not rows:
        return "no data yet"
    worst = max(rows, key=lambda r: r.freshness_seconds or 0.0)
    return f"{worst.freshness_seconds:.0f}s ({worst.feature_view}{', stale' if worst.stale else ''})"
