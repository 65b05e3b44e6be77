"""Jobs: list with filters; cancel, retry and trigger a materialization (operators). The actions
call the same guarded ``Jobs`` service as the JSON API: a viewer posting here is refused (403)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.time import parse_iso_ms
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import Ctx, Form

__all__ = ["job_pages"]

Text = Annotated[str, Query(max_length=200)]


def job_pages() -> APIRouter:
    router = APIRouter(prefix="/ui/w/{workspace}/jobs", route_class=UiRoute)

    @router.get("")
    def jobs(
        request: Request, ctx: Ctx, workspace: str, view: Text = "", state: Text = "", kind: Text = ""
    ) -> HTMLResponse:
        spec = ctx.plane.catalog.spec(ctx.call, workspace)
        rows = [
            j
            for j in ctx.plane.jobs.list_jobs(ctx.call, workspace, view or None)
            if (not state or j["state"] == state) and (not kind or j["kind"] == kind)
        ][::-1]
        batch_views = [v.name for v in spec.batch_feature_views]
        return page(
            request,
            ctx,
            "jobs.html",
            workspace=workspace,
            rows=rows,
            filters={"view": view, "state": state, "kind": kind},
            batch_views=batch_views,
            operator=ctx.can("manage_jobs", workspace),
        )

    @router.post("/{job_id}/cancel")
    def cancel(ctx: Ctx, workspace: str, job_id: str) -> HTMLResponse:
        job = ctx.plane.jobs.cancel(ctx.call, workspace, job_id)
        # The runner moves the job to CANCELLED (between chunks); until then the row says it was asked.
        return partial("_job_row.html", job=job, workspace=workspace, operator=True, note="cancel requested")

    @router.post("/{job_id}/retry")
    def retry(ctx: Ctx, workspace: str, job_id: str) -> HTMLResponse:
        job = ctx.plane.jobs.retry(ctx.call, workspace, job_id)
        return partial("_job_row.html", job=job, workspace=workspace, operator=True)

    @router.post("/compact")
    def compact(ctx: Ctx, workspace: str) -> HTMLResponse:
        job = ctx.plane.jobs.compact(ctx.call, workspace)
        return partial("_job_row.html", job=job, workspace=workspace, operator=True)

    @router.post("")
    def trigger(ctx: Ctx, workspace: str, form: Form) -> HTMLResponse:
        view = form.get("view", "").strip()
        if not view:
            raise InvalidRequestError("choose the batch feature view to materialize")
        start_ms, end_ms = _time(form, "start"), _time(form, "end")
        job = ctx.plane.jobs.materialize(
            ctx.call,
            workspace,
            view,
            start_ms,
            end_ms,
            online=_flag(form, "online"),
            offline=_flag(form, "offline"),
            overwrite=form.get("overwrite") == "on",
        )
        return partial("_job_row.html", job=job, workspace=workspace, operator=True)

    return router


def _time(form: dict[str, str], field: str) -> int:
    text = form.get(field, "").strip()
    if not text:
        raise InvalidRequestError(f"{field} is required: a time like 2024-05-01T00:00:00Z")
    try:
        return parse_iso_ms(text)  # a datetime-local input sends no zone: UTC, as the page says
    except ValueError as exc:
        raise InvalidRequestError(f"{field}: {exc}") from None


def _flag(form: dict[str, str], field: str) -> Any:
    value = form.get(field, "")
    return None if value == "" else value == "on"
