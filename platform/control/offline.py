"""The control plane's word before a caller reads a workspace's offline store.

Training sets and ad hoc reads read the offline store's Parquet files directly (file or
object-store permissions guard those): the control plane never streams them. What it does is
confirm, first, that the caller holds a role that may read the workspace's data (``viewer`` or
above), so a key that lost its binding, was revoked or expired stops training reads as it stops
everything else; a refusal is audited like any other.
"""

from __future__ import annotations

from typing import Any

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import NotFoundError

__all__ = ["OfflineAccess"]


class OfflineAccess:
    def __init__(self, registry: Registry, guard: Guard) -> None:
        self._registry = registry
        self._guard = guard

    def confirm(self, call: Call, workspace: str) -> dict[str, Any]:
        """The caller and its role in ``workspace`` if it may read the offline data, else raise."""
        caller = self._guard.check(call, workspace, Action.READ_OFFLINE, "offline.read")
        spec = self._registry.get(workspace)
        if spec is None:
            raise NotFoundError(f"no workspace named {workspace!r}")
        role = self._guard.access.view.role_of(caller, workspace)
        return {
            "workspace": workspace,
            "principal": caller.principal,
            "role": "admin" if caller.admin else (role.label if role is not None else None),
            "version": spec.version,
        }
