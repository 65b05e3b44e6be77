"""Creating and removing principals, keys and role bindings: writes through a ``Registry``.

``AccessAdmin`` writes each record to the access topic and applies it to its ``AccessView`` at
once, so the control plane reads its own writes. Records go out in the order a follower needs
them: principal, then its binding, then its key (and the reverse when deleting), so a serving
replica never holds a key whose principal it has not seen yet.
"""

from __future__ import annotations

import secrets

from featurebus.platform.access.records import (
    ApiKey,
    Principal,
    PrincipalKind,
    RoleBinding,
    binding_key,
    iso_now,
    principal_key,
)
from featurebus.platform.access.roles import Role
from featurebus.platform.access.view import AccessView, hash_secret
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError, NotFoundError

__all__ = ["KEY_PREFIX", "AccessAdmin", "validate_principal_name"]

KEY_PREFIX = "fbk_"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@")


def validate_principal_name(name: str) -> None:
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise InvalidRequestError(
            f"invalid principal name {name!r}: use 1 to 100 letters, digits, '_', '-', '.' or '@'"
        )


class AccessAdmin:
    def __init__(self, registry: Registry, view: AccessView | None = None) -> None:
        self.registry = registry
        self.view = view if view is not None else AccessView()
        if view is None:
            self.refresh()

    def refresh(self) -> None:
        """Re-read every access record (picks up writes of other processes)."""
        self.view.load(self.registry.api_keys())

    def _put(self, key: bytes, value: bytes | None) -> None:
        self.registry.put_api_key(key, value)
        self.view.apply_record(key, value)

    def require_principal(self, name: str) -> Principal:
        principal = self.view.principal(name)
        if principal is None:
            known = ", ".join(p.name for p in self.view.principals()) or "none"
            raise NotFoundError(f"no principal named {name!r} (known: {known}); `featurebus service-account list`")
        return principal

    def create_principal(
        self, name: str, kind: PrincipalKind, *, admin: bool = False, description: str = "", created_by: str = ""
    ) -> Principal:
        validate_principal_name(name)
        if self.view.principal(name) is not None:
            raise InvalidRequestError(f"principal {name!r} already exists; pick another name")
        principal = Principal(name, kind, admin, description, iso_now(), created_by)
        self._put(principal_key(name), principal.to_record())
        return principal

    def delete_principal(self, name: str) -> Principal:
        """Its keys, then its bindings, then the principal itself."""
        principal = self.require_principal(name)
        for key in self.view.api_keys():
            if key.principal == name:
                digest = self.view.key_hash(key.key_id)
                if digest is not None:
                    self._put(digest.encode(), None)
        for binding in self.view.bindings(principal=name):
            self._put(binding_key(name, binding.workspace), None)
        self._put(principal_key(name), None)
        return principal

    def create_key(self, principal: str, description: str = "", expires_at_ms: int | None = None) -> tuple[ApiKey, str]:
        """A new key of ``principal``; returns it and its secret, shown once and never stored."""
        self.require_principal(principal)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(secrets.token_hex(8), principal, description, iso_now(), expires_at_ms)
        self._put(hash_secret(secret).encode(), key.to_record())
        return key, secret

    def revoke_key(self, key_id: str) -> ApiKey:
        digest = self.view.key_hash(key_id)
        key = next((k for k in self.view.api_keys() if k.key_id == key_id), None)
        if digest is None or key is None:
            raise NotFoundError(f"no live API key with id {key_id!r}; `featurebus api-key list` shows them")
        self._put(digest.encode(), None)
        return key

    def assign_role(self, principal: str, workspace: str, role: Role) -> RoleBinding:
        """Bind ``role`` (replacing the principal's earlier role in the workspace)."""
        self.require_principal(principal)
        binding = RoleBinding(principal, workspace, role)
        self._put(binding_key(principal, workspace), binding.to_record())
        return binding

    def unassign_role(self, principal: str, workspace: str) -> RoleBinding:
        found = self.view.bindings(principal=principal, workspace=workspace)
        if not found:
            raise NotFoundError(f"principal {principal!r} has no role in workspace {workspace!r}")
        if self.view.principal(principal) is None:  # a format-1 key's scope: revoke the key instead
            raise InvalidRequestError(
                f"{principal!r} is an earlier release's key; revoke it with "
                f"`featurebus api-key revoke {principal.removeprefix('legacy-key-')}`"
            )
        self._put(binding_key(principal, workspace), None)
        return found[0]

    def create_service_account_key(
        self, workspace: str, role: Role, description: str = "", created_by: str = ""
    ) -> tuple[ApiKey, str]:
        """``api-key create --workspace W --role R``: a service account of its own, bound to ``role``
        in ``workspace``, with one key (what earlier releases' workspace-scoped keys were)."""
        name = f"sa-{secrets.token_hex(6)}"
        self.create_principal(
            name,
            PrincipalKind.SERVICE_ACCOUNT,
            description=description or f"key for {workspace}",
            created_by=created_by,
        )
        self.assign_role(name, workspace, role)
        return self.create_key(name, description)
