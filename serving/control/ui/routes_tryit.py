"""Try it: a request builder for a feature service that shows the curl command and the serving
API's live answer (sent with the signed-in key, so serving checks the consumer role itself)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from featurebus.schemas.kinds import RealtimeInputKind
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import Ctx, Form

__all__ = ["service_inputs", "tryit_pages"]

GET_FEATURES = "/api/v1/feature-service/get-features"


def service_inputs(spec: WorkspaceSpec, service: str) -> tuple[list[str], list[str]]:
    """The join keys and request-context fields a request to ``service`` needs."""
    selected = {s.view for s in spec.service(service).selections}
    keys: list[str] = []
    context: list[str] = []
    views: list[StreamFeatureViewSpec | BatchFeatureViewSpec] = [*spec.stream_feature_views, *spec.batch_feature_views]
    for view in views:
        if view.name in selected:
            keys += [k for k in view.join_keys if k not in keys]
    for table in spec.feature_tables:
        if table.name in selected:
            keys += [k.name for k in table.join_keys if k.name not in keys]
    for realtime in spec.realtime_feature_views:
        if realtime.name not in selected:
            continue
        for item in realtime.inputs:
            if item.kind is RealtimeInputKind.REQUEST:
                context += [f.name for f in item.fields if f.name not in context]
            else:
                for view in views:
                    if view.name == item.name:
                        keys += [k for k in view.join_keys if k not in keys]
    return keys, context


def _value(text: str) -> Any:
    """A form field as JSON when it parses as a number/bool/null, else as the string typed."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def tryit_pages() -> APIRouter:
    router = APIRouter(prefix="/ui/w/{workspace}/try", route_class=UiRoute)

    @router.get("")
    def try_form(request: Request, ctx: Ctx, workspace: str, service: str = "") -> HTMLResponse:
        spec = ctx.plane.catalog.spec(ctx.call, workspace)
        services = [s.name for s in spec.feature_services]
        chosen = service or (services[0] if services else "")
        keys, context = service_inputs(spec, chosen) if chosen else ([], [])
        return page(
            request,
            ctx,
            "tryit.html",
            workspace=workspace,
            services=services,
            service=chosen,
            keys=keys,
            context=context,
        )

    @router.post("")
    async def try_run(request: Request, ctx: Ctx, workspace: str, form: Form) -> HTMLResponse:
        spec = await run_in_threadpool(ctx.plane.catalog.spec, ctx.call, workspace)
        service = form.get("service", "")
        keys, context = service_inputs(spec, service)  # NotFoundError names a wrong service
        body = {
            "params": {
                "workspaceName": workspace,
                "featureServiceName": service,
                "joinKeyMap": {k: form.get(f"key.{k}", "") for k in keys},
                "requestContextMap": {c: _value(form.get(f"ctx.{c}", "")) for c in context},
                "metadataOptions": {"includeNames": True, "includeEffectiveTimes": True},
            }
        }
        base = request.app.state.ui.serving_url()
        url = f"{base or 'http://SERVING_HOST:PORT'}{GET_FEATURES}"
        curl = (
            f"curl -X POST {shlex.quote(url)} -H 'Authorization: Tecton-key $FEATUREBUS_KEY' "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}"
        )
        if base is None:
            return partial(
                "_try_result.html",
                curl=curl,
                status=None,
                answer="serving is down: no serving API is running (featurebus up)",
            )
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.post(url, json=body, headers={"Authorization": ctx.call.authorization or ""})
        except httpx.HTTPError as exc:
            return partial(
                "_try_result.html", curl=curl, status=None, answer=f"serving is down: {type(exc).__name__}: {exc}"
            )
        try:
            shown = json.dumps(answer.json(), indent=2)
        except ValueError:
            shown = answer.text[:5000]
        return partial("_try_result.html", curl=curl, status=answer.status_code, answer=shown)

    return router
