"""Principals, their keys and role bindings, and reading the audit log, through the control plane.

Who may do what here: the instance admin manages principals and any key; a workspace owner binds
roles in their workspace and mints workspace-scoped keys there (``api-key create``, a service
account of its own: what an earlier release's ``admin`` key could do); every principal may list
and revoke its own keys and read its own bindings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from featurebus.platform.access.records import ApiKey, Principal, PrincipalKind, RoleBinding
from featurebus.platform.access.roles import Action, parse_role
from featurebus.platform.control.guard import Call, Guard
from featurebus.schemas.errors import InvalidRequestError, NotFoundError

__all__ = ["Access"]


def _principal_json(principal: Principal) -> dict[str, Any]:
    return {**dataclasses.asdict(principal), "kind": principal.kind.value}


def _key_json(key: ApiKey) -> dict[str, Any]:
    document = {
        "keyId": key.key_id,
        "principal": key.principal,
        "description": key.description,
        "createdAt": key.created_at,
        "expiresAtMs": key.expires_at_ms,
    }
    if key.legacy:
        document.update(workspace=key.workspace, role=key.role)
    return document


def _binding_json(binding: RoleBinding) -> dict[str, Any]:
    return {"principal": binding.principal, "workspace": binding.workspace, "role": binding.role.label}


class Access:
    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._admin = guard.access

    def whoami(self, call: Call) -> dict[str, Any]:
        caller = self._guard.authenticate(call, "whoami")
        return {
            "principal": caller.principal,
            "keyId": caller.key_id,
            "admin": caller.admin,
            "roles": [_binding_json(b) for b in self._admin.view.bindings(principal=caller.principal)],
        }

    # -- principals ---------------------------------------------------------------------------------
    def list_principals(self, call: Call) -> list[dict[str, Any]]:
        self._guard.check(call, None, Action.MANAGE_PRINCIPALS, "principals.list")
        return [_principal_json(p) for p in self._admin.view.principals()]

    def create_principal(self, call: Call, name: str, kind: str, admin: bool, description: str) -> dict[str, Any]:
        try:
            principal_kind = PrincipalKind(kind)
        except ValueError:
            raise InvalidRequestError(f"unknown principal kind {kind!r}; use user or service_account") from None

        def change(caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            created = self._admin.create_principal(
                name, principal_kind, admin=admin, description=description, created_by=caller.principal
            )
            return _principal_json(created), {"principal": name, "kind": kind, "admin": admin}

        return self._guard.mutate(call, None, Action.MANAGE_PRINCIPALS, "principals.create", change)

    def delete_principal(self, call: Call, name: str) -> dict[str, Any]:
        def change(caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            if name == caller.principal:
                raise InvalidRequestError("a principal cannot delete itself; ask another admin")
            return _principal_json(self._admin.delete_principal(name)), {"principal": name}

        return self._guard.mutate(call, None, Action.MANAGE_PRINCIPALS, "principals.delete", change)

    # -- keys -----------------------------------------------------------------------------------------
    def list_keys(self, call: Call) -> list[dict[str, Any]]:
        caller = self._guard.authenticate(call, "keys.list")
        return [_key_json(k) for k in self._admin.view.api_keys() if caller.admin or k.principal == caller.principal]

    def create_key(
        self,
        call: Call,
        *,
        principal: str | None,
        workspace: str | None,
        role: str | None,
        description: str,
        expires_at_ms: int | None,
    ) -> dict[str, Any]:
        """A key of ``principal`` (admin only), or (``workspace`` + ``role``, as ``api-key create``
        always did) a new service account bound to that role: the workspace's owner may."""
        if (principal is None) == (workspace is None):
            raise InvalidRequestError(
                "give either principal (a key of an existing principal) or workspace and role "
                "(a new service account with that role in the workspace)"
            )
        if principal is not None:

            def for_principal(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
                key, secret = self._admin.create_key(principal, description, expires_at_ms)
                return {**_key_json(key), "secret": secret}, {"principal": principal, "key": key.key_id}

            return self._guard.mutate(call, None, Action.MANAGE_PRINCIPALS, "keys.create", for_principal)
        assert workspace is not None
        bound = parse_role(role or "consumer")

        def for_workspace(caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            key, secret = self._admin.create_service_account_key(workspace, bound, description, caller.principal)
            return (
                {**_key_json(key), "secret": secret, "workspace": workspace, "role": bound.label},
                {"principal": key.principal, "key": key.key_id, "role": bound.label},
            )

        return self._guard.mutate(call, workspace, Action.MANAGE_ACCESS, "keys.create", for_workspace)

    def revoke_key(self, call: Call, key_id: str) -> dict[str, Any]:
        caller = self._guard.authenticate(call, "keys.revoke")
        key = next((k for k in self._admin.view.api_keys() if k.key_id == key_id), None)
        if key is None:
            raise NotFoundError(f"no live API key with id {key_id!r}; `featurebus api-key list` shows them")
        own = key.principal == caller.principal
        # A workspace-scoped key (its own service account) may be revoked by the workspace's owner.
        scopes = [b.workspace for b in self._admin.view.bindings(principal=key.principal)]
        workspace = scopes[0] if len(scopes) == 1 and not own else None
        action = Action.MANAGE_ACCESS if workspace is not None else Action.MANAGE_PRINCIPALS

        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return _key_json(self._admin.revoke_key(key_id)), {"key": key_id, "principal": key.principal}

        if own:  # any principal may revoke its own keys
            return self._guard.mutate(call, None, None, "keys.revoke", change)
        return self._guard.mutate(call, workspace, action, "keys.revoke", change)

    # -- role bindings --------------------------------------------------------------------------------
    def get_roles(self, call: Call, *, principal: str | None, workspace: str | None) -> list[dict[str, Any]]:
        caller = self._guard.authenticate(call, "roles.get", workspace)
        if principal is None or principal != caller.principal:  # one's own bindings: anyone
            if workspace is not None:
                self._guard.check(call, workspace, Action.MANAGE_ACCESS, "roles.get")
            else:
                self._guard.check(call, None, Action.MANAGE_PRINCIPALS, "roles.get")
        return [_binding_json(b) for b in self._admin.view.bindings(principal=principal, workspace=workspace)]

    def assign_role(self, call: Call, principal: str, workspace: str, role: str) -> dict[str, Any]:
        bound = parse_role(role)

        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            binding = self._admin.assign_role(principal, workspace, bound)
            return _binding_json(binding), {"principal": principal, "role": bound.label}

        return self._guard.mutate(call, workspace, Action.MANAGE_ACCESS, "roles.assign", change)

    def unassign_role(self, call: Call, principal: str, workspace: str) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            binding = self._admin.unassign_role(principal, workspace)
            return _binding_json(binding), {"principal": principal, "role": binding.role.label}

        return self._guard.mutate(call, workspace, Action.MANAGE_ACCESS, "roles.unassign", change)

    # -- audit ----------------------------------------------------------------------------------------
    def audit(
        self, call: Call, *, workspace: str | None, principal: str | None, since_ms: int | None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Newest last; a workspace's owner reads its records, the admin every record."""
        if workspace is None:
            self._guard.check(call, None, Action.READ_ALL_AUDIT, "audit.read")
        else:
            self._guard.check(call, workspace, Action.READ_AUDIT, "audit.read")
        records = [
            r
            for r in self._guard.audit.records()
            if (workspace is None or r.workspace == workspace)
            and (principal is None or r.principal == principal)
            and (since_ms is None or r.time_ms >= since_ms)
        ]
        return [r.to_json() for r in records[-limit:]]
