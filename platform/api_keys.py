"""API keys as earlier releases offered them: one key per workspace with reader|writer|admin.

Kept so that scripts and ``featurebus api-key create --role ...`` keep working: such a key is now
a service account of its own bound to the matching role (reader -> consumer, writer -> editor,
admin -> owner, see ``featurebus.platform.access``), and keys written by earlier releases (record
format 1) are still read, as keys of their own service account. ``ApiKeyStore`` is the access view
serving checks requests against.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from featurebus.platform.access.manage import KEY_PREFIX, AccessAdmin
from featurebus.platform.access.roles import parse_role
from featurebus.platform.access.view import AccessView, hash_secret
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError

__all__ = ["KEY_PREFIX", "ApiKey", "ApiKeyStore", "create_api_key", "hash_secret", "list_api_keys", "revoke_api_key"]

ApiKeyStore = AccessView


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """The format-1 key record earlier releases wrote (``featurebus.platform.access.records``
    reads it); nothing writes it any more but tests proving such records stay readable."""

    key_id: str
    workspace: str
    role: str  # reader | writer | admin
    description: str = ""
    created_at: str = ""

    def to_record(self) -> bytes:
        return orjson.dumps({"version": 1, **dataclasses.asdict(self)})


def create_api_key(registry: Registry, workspace: str, role: str = "reader", description: str = "") -> tuple[str, str]:
    """Create a key; returns ``(key_id, secret)``. The secret is shown once and never stored."""
    if not workspace:
        raise InvalidRequestError("an API key needs a workspace")
    key, secret = AccessAdmin(registry).create_service_account_key(workspace, parse_role(role), description)
    return key.key_id, secret


def list_api_keys(registry: Registry) -> list[dict[str, Any]]:
    """Every live key (never its secret or hash) with its principal's bindings, oldest first."""
    view = AccessAdmin(registry).view
    listed = []
    for key in view.api_keys():
        bindings = view.bindings(principal=key.principal)
        listed.append(
            {
                "key_id": key.key_id,
                "principal": key.principal,
                "description": key.description,
                "created_at": key.created_at,
                "expires_at_ms": key.expires_at_ms,
                "workspace": bindings[0].workspace if len(bindings) == 1 else "",
                "role": bindings[0].role.label if len(bindings) == 1 else "",
                "roles": {b.workspace: b.role.label for b in bindings},
            }
        )
    return listed


def revoke_api_key(registry: Registry, key_id: str) -> None:
    AccessAdmin(registry).revoke_key(key_id)
