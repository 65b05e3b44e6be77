"""A control plane over the in-memory registry and audit log, with one principal per role."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from fastapi.testclient import TestClient

from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.access.roles import Role
from featurebus.platform.control.audit import MemoryAuditLog
from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.serving.control.app import create_control_app
from tests.support.specs import spending_workspace

# Principal -> its role in workspace "a" (None: no binding); "admin" is the instance admin.
ROLE_OF: dict[str, Role | None] = {f"p-{role.label}": role for role in Role} | {"p-none": None, "admin": None}


@dataclasses.dataclass
class ControlFixture:
    plane: ControlPlane
    registry: MemoryRegistry
    client: TestClient
    secrets: dict[str, str]  # principal -> its key's secret
    job_id: str

    def auth(self, principal: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[principal]}"}


def spec_json(name: str = "a", **changes: Any) -> dict[str, Any]:
    spec = dataclasses.replace(spending_workspace(name=name), **changes)
    loaded: dict[str, Any] = orjson.loads(spec.to_json())
    return loaded


def control_fixture() -> ControlFixture:
    """Workspaces "a" and "b" (live, v1 applied), one principal per role in "a" (each an editor in
    nothing else), "p-none" bound nowhere, the admin, and one queued compaction job in "a"."""
    registry = MemoryRegistry()
    plane = ControlPlane(registry, MemoryAuditLog(), refresh_s=0.0)
    admin = plane.guard.access
    secrets: dict[str, str] = {}
    for workspace in ("a", "b"):
        create_workspace(registry, workspace, live=True)
        apply_workspace(registry, spending_workspace(name=workspace))
    for principal, role in ROLE_OF.items():
        admin.create_principal(principal, PrincipalKind.SERVICE_ACCOUNT, admin=principal == "admin")
        if role is not None:
            admin.assign_role(principal, "a", role)
        secrets[principal] = admin.create_key(principal)[1]
    store = registry.jobs("a")
    try:
        from featurebus.platform.jobs.client import enqueue_compaction

        job_id = enqueue_compaction(store, registry.get("a"), 1_000).id  # type: ignore[arg-type]
    finally:
        store.close()
    return ControlFixture(plane, registry, TestClient(create_control_app(plane)), secrets, job_id)
