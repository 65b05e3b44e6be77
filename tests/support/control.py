"""A control plane over the in-memory registry and audit log, with one principal per role."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served_control(plane: ControlPlane) -> Iterator[str]:
    """The control app over real HTTP (uvicorn on 127.0.0.1, a thread of this process); yields its URL,
    which a subprocess can log in to as well."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_control_app(plane), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the control app did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_answering(url: str, log: Path, timeout_s: float = 60.0) -> None:
    """Until ``GET url`` answers 200 (a control or serving process started by a test); fails with
    the process's log when it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
