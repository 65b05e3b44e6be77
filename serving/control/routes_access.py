"""Principals, API keys, role bindings and the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from featurebus.platform.control.plane import ControlPlane
from featurebus.serving.control.common import CallerCall, OptionalName, api_key_header, errors

__all__ = ["access_router"]

Name = Annotated[str, Field(min_length=1, max_length=100)]


class PrincipalCreate(BaseModel):
    name: Name
    kind: Literal["user", "service_account"] = "service_account"
    admin: bool = False
    description: str = Field(default="", max_length=1000)


class KeyCreate(BaseModel):
    principal: Name | None = Field(default=None, description="A key of this existing principal (admin only).")
    workspace: Name | None = Field(default=None, description="Or: a new service account with `role` here (owner).")
    role: str | None = Field(
        default=None,
        max_length=20,
        description="viewer|consumer|operator|editor|owner (or reader|writer|admin, as earlier releases named them)",
    )
    description: str = Field(default="", max_length=1000)
    expires_at_ms: int | None = Field(default=None, ge=0, description="Epoch ms after which the key is refused.")


class RoleAssignment(BaseModel):
    principal: Name
    workspace: Name
    role: str = Field(max_length=20)


def access_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)])
    access = plane.access

    @router.get("/whoami", tags=["principals"], responses=errors(401))
    def whoami(call: CallerCall) -> dict[str, Any]:
        """The caller's principal, whether it is the admin, and its role bindings."""
        return access.whoami(call)

    @router.get("/principals", tags=["principals"], responses=errors(401, 403))
    def list_principals(call: CallerCall) -> list[dict[str, Any]]:
        """Every user and service account (admin)."""
        return access.list_principals(call)

    @router.post("/principals", tags=["principals"], status_code=201, responses=errors(400, 401, 403))
    def create_principal(body: PrincipalCreate, call: CallerCall) -> dict[str, Any]:
        """Create a user or service account (admin); give it keys with POST /v1/keys."""
        return access.create_principal(call, body.name, body.kind, body.admin, body.description)

    @router.delete("/principals/{name}", tags=["principals"], responses=errors(400, 401, 403, 404))
    def delete_principal(name: str, call: CallerCall) -> dict[str, Any]:
        """Delete a principal with its keys and role bindings (admin)."""
        return access.delete_principal(call, name)

    @router.get("/keys", tags=["keys"], responses=errors(401))
    def list_keys(call: CallerCall) -> list[dict[str, Any]]:
        """The caller's keys (every key for the admin); never a secret."""
        return access.list_keys(call)

    @router.post("/keys", tags=["keys"], status_code=201, responses=errors(400, 401, 403, 404))
    def create_key(body: KeyCreate, call: CallerCall) -> dict[str, Any]:
        """A new key; its ``secret`` is in this answer only (stored hashed)."""
        return access.create_key(
            call,
            principal=body.principal,
            workspace=body.workspace,
            role=body.role,
            description=body.description,
            expires_at_ms=body.expires_at_ms,
        )

    @router.delete("/keys/{key_id}", tags=["keys"], responses=errors(401, 403, 404))
    def revoke_key(key_id: str, call: CallerCall) -> dict[str, Any]:
        """Revoke a key: one's own, a workspace key as its owner, any as the admin."""
        return access.revoke_key(call, key_id)

    @router.get("/roles", tags=["roles"], responses=errors(401, 403))
    def get_roles(
        call: CallerCall, principal: OptionalName = None, workspace: OptionalName = None
    ) -> list[dict[str, Any]]:
        """Role bindings: one's own, a workspace's (owner), or all (admin)."""
        return access.get_roles(call, principal=principal, workspace=workspace)

    @router.put("/roles", tags=["roles"], responses=errors(400, 401, 403, 404))
    def assign_role(body: RoleAssignment, call: CallerCall) -> dict[str, Any]:
        """Bind a role to a principal in a workspace, replacing its earlier role there (owner)."""
        return access.assign_role(call, body.principal, body.workspace, body.role)

    @router.delete("/roles", tags=["roles"], responses=errors(400, 401, 403, 404))
    def unassign_role(
        call: CallerCall,
        principal: Annotated[str, Query(min_length=1, max_length=100)],
        workspace: Annotated[str, Query(min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        """Remove a principal's role in a workspace (owner)."""
        return access.unassign_role(call, principal, workspace)

    @router.get("/audit", tags=["audit"], responses=errors(401, 403))
    def audit_log(
        call: CallerCall,
        workspace: OptionalName = None,
        principal: OptionalName = None,
        since_ms: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> list[dict[str, Any]]:
        """Audit records, oldest first: a workspace's (owner) or all (admin)."""
        return access.audit(call, workspace=workspace, principal=principal, since_ms=since_ms, limit=limit)

    return router
