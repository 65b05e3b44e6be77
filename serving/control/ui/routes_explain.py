"""Explain a value: pick a stream view's feature, an entity and a time; see the records and tiles
behind it, the training-set path's value, and (for "now") what serving answers."""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import parse_iso_ms
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.routes_tryit import GET_FEATURES, service_inputs
from featurebus.serving.control.ui.session import Ctx, Form

__all__ = ["explain_pages"]

_NOW_SLACK_MS = 60_000  # a time this close to now is compared with what serving answers now


def explain_pages() -> APIRouter:
    router = APIRouter(prefix="/ui/w/{workspace}/explain", route_class=UiRoute)

    @router.get("")
    def explain_form(request: Request, ctx: Ctx, workspace: str, view: str = "") -> HTMLResponse:
        spec = ctx.plane.catalog.spec(ctx.call, workspace)
        views = {v.name: v for v in spec.stream_feature_views if not v.feature_table}
        chosen = views.get(view) or next(iter(views.values()), None)
        return page(
            request,
            ctx,
            "explain.html",
            workspace=workspace,
            views=list(views),
            view=chosen.name if chosen else "",
            features=[a.name for a in chosen.aggregations] if chosen else [],
            keys=list(chosen.join_keys) if chosen else [],
        )

    @router.post("")
    async def explain(request: Request, ctx: Ctx, workspace: str, form: Form) -> HTMLResponse:
        at_text = form.get("at", "").strip()
        try:
            at_ms = parse_iso_ms(at_text) if at_text else int(time.time() * 1000)
        except ValueError as exc:
            raise InvalidRequestError(f"at: {exc}") from None
        keys = {k[4:]: v for k, v in form.items() if k.startswith("key.")}
        view, feature = form.get("view", ""), form.get("feature", "")
        result = await run_in_threadpool(
            ctx.plane.explainer.explain,
            ctx.call,
            request.app.state.ui.offline_root,
            workspace,
            view,
            feature,
            keys,
            at_ms,
        )
        served = await _served(request, ctx.call.authorization, workspace, view, feature, keys, at_ms)
        return partial("_explain_result.html", result=result, served=served)

    return router


async def _served(
    request: Request,
    authorization: str | None,
    workspace: str,
    view: str,
    feature: str,
    keys: dict[str, str],
    at_ms: int,
) -> dict[str, Any]:
    """What serving answers now for the feature, through a service that serves it."""
    if abs(time.time() * 1000 - at_ms) > _NOW_SLACK_MS:
        return {"note": "serving answers for now only; pick a time within a minute of now to compare"}
    plane = request.app.state.plane
    spec = plane.catalog.specs.get(workspace)
    service = _service_for(spec, view, feature, set(keys)) if spec else None
    base = request.app.state.ui.serving_url()
    if service is None or base is None:
        return {
            "note": "no feature service serves this feature with these keys alone"
            if service is None
            else "serving is down"
        }
    body = {
        "params": {
            "workspaceName": workspace,
            "featureServiceName": service,
            "joinKeyMap": keys,
            "metadataOptions": {"includeNames": True},
        }
    }
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            answer = await client.post(
                f"{base}{GET_FEATURES}", json=body, headers={"Authorization": authorization or ""}
            )
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"note": f"serving is down: {type(exc).__name__}: {exc}"}
    if answer.status_code != 200:
        return {"note": f"serving answered {answer.status_code}: {document.get('message', '')}"}
    names = [f.get("name") for f in document.get("metadata", {}).get("features", [])]
    values = document.get("result", {}).get("features", [])
    wanted = f"{view}.{feature}"
    value = values[names.index(wanted)] if wanted in names and len(values) == len(names) else None
    return {"service": service, "value": value}


def _service_for(spec: WorkspaceSpec, view: str, feature: str, keys: set[str]) -> str | None:
    """A feature service serving ``view.feature`` that needs no join key or request context
    beyond ``keys``: the explained entity is all a lookup can send."""
    for service in spec.feature_services:
        if any(sel.view == view and feature in sel.features for sel in service.selections):
            needed_keys, context = service_inputs(spec, service.name)
            if not context and set(needed_keys) <= keys:
                return service.name
    return None
