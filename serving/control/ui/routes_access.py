"""Access: principals (admin), keys (create shows the secret once; revoke), role bindings per
workspace (owners and the admin), and the audit log with filters. Every action goes through the
guarded ``Access`` service, exactly as ``/v1/keys``, ``/v1/roles`` and ``/v1/audit`` do."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from featurebus.schemas.errors import InvalidRequestError
from featurebus.serving.control.ui.render import UiRoute, page, partial
from featurebus.serving.control.ui.session import Ctx, Form, UiContext

__all__ = ["access_pages"]

Text = Annotated[str, Query(max_length=200)]


def access_pages() -> APIRouter:
    router = APIRouter(prefix="/ui/access", route_class=UiRoute)

    @router.get("")
    def access(request: Request, ctx: Ctx) -> HTMLResponse:
        return page(request, ctx, "access.html", **_access_values(ctx))

    @router.post("/keys")
    def create_key(request: Request, ctx: Ctx, form: Form) -> HTMLResponse:
        principal = form.get("principal", "").strip() or None
        workspace = form.get("workspace", "").strip() or None
        if principal is None and workspace is None:
            raise InvalidRequestError("name a principal (admin) or a workspace and role for a new service account")
        created = ctx.plane.access.create_key(
            ctx.call,
            principal=principal,
            workspace=workspace,
            role=form.get("role", "").strip() or None,
            description=form.get("description", "").strip()[:1000],
            expires_at_ms=None,
        )
        return partial("_key_created.html", created=created)

    @router.post("/keys/{key_id}/revoke")
    def revoke_key(ctx: Ctx, key_id: str) -> HTMLResponse:
        revoked = ctx.plane.access.revoke_key(ctx.call, key_id)
        return partial("_note.html", message=f"Key {revoked.get('keyId', key_id)} revoked.")

    @router.post("/roles")
    def assign_role(ctx: Ctx, form: Form) -> HTMLResponse:
        principal, workspace, role = (form.get(f, "").strip() for f in ("principal", "workspace", "role"))
        if not (principal and workspace and role):
            raise InvalidRequestError("principal, workspace and role are all required")
        bound = ctx.plane.access.assign_role(ctx.call, principal, workspace, role)
        return partial("_note.html", message=f"{bound['principal']} is now {bound['role']} in {bound['workspace']}.")

    @router.get("/audit")
    def audit(
        request: Request,
        ctx: Ctx,
        workspace: Text = "",
        principal: Text = "",
        action: Text = "",
        outcome: Text = "",
    ) -> HTMLResponse:
        records = ctx.plane.access.audit(
            ctx.call, workspace=workspace or None, principal=principal or None, since_ms=None, limit=5000
        )
        rows = [
            r
            for r in records
            if (not action or action in str(r.get("action", ""))) and (not outcome or r.get("outcome") == outcome)
        ][::-1][:500]
        filters = {"workspace": workspace, "principal": principal, "action": action, "outcome": outcome}
        return page(request, ctx, "audit.html", rows=rows, filters=filters)

    return router


def _access_values(ctx: UiContext) -> dict[str, Any]:
    admin = ctx.caller.admin
    owned = [w for w in ctx.workspaces if ctx.can("manage_access", w)]
    bindings: list[dict[str, Any]] = ctx.plane.access.get_roles(
        ctx.call, principal=None if admin else ctx.caller.principal, workspace=None
    )
    for workspace in [] if admin else owned:
        bindings += ctx.plane.access.get_roles(ctx.call, principal=None, workspace=workspace)
    unique = {(b["principal"], b["workspace"]): b for b in bindings}
    return {
        "admin": admin,
        "principals": ctx.plane.access.list_principals(ctx.call) if admin else [],
        "keys": ctx.plane.access.list_keys(ctx.call),
        "bindings": sorted(unique.values(), key=lambda b: (b["workspace"], b["principal"])),
        "owned": owned,
        "roles": ["viewer", "consumer", "operator", "editor", "owner"],
    }
