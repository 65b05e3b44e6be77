"""The control plane's API: every endpoint x every role (allowed exactly when the role permits),
workspace isolation, 401/403 audited, stale plans refused with 409, concurrent applies."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from featurebus.platform.access.roles import Role
from featurebus.platform.control.audit import MemoryAuditLog, Outcome
from featurebus.platform.control.guard import Call
from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.kv import MemoryStore
from featurebus.platform.registry import MemoryRegistry
from featurebus.schemas.errors import ConflictError
from featurebus.serving.app import create_app
from featurebus.serving.control.app import create_control_app
from featurebus.serving.service import FeatureServer
from tests.support.control import ROLE_OF, ControlFixture, control_fixture, spec_json
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load

ADMIN_ONLY = "admin only"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    needs: Role | str  # the weakest role in the workspace, or ADMIN_ONLY; written out by hand
    body: Callable[[ControlFixture], dict[str, Any] | None] = lambda _: None

    def call(self, fixture: ControlFixture, principal: str) -> Any:
        path = self.path.replace("{job}", fixture.job_id)
        return fixture.client.request(self.method, path, json=self.body(fixture), headers=fixture.auth(principal))


def _shorter(_: ControlFixture) -> dict[str, Any]:
    return {"spec": spec_json("a", feature_services=()), "base_version": 1}


ENDPOINTS = [
    Endpoint("GET", "/v1/workspaces/a", Role.VIEWER),
    Endpoint("GET", "/v1/workspaces/a/log", Role.VIEWER),
    Endpoint("GET", "/v1/workspaces/a/jobs", Role.VIEWER),
    Endpoint("GET", "/v1/workspaces/a/jobs/{job}", Role.VIEWER),
    Endpoint("GET", "/v1/workspaces/a/offline-access", Role.VIEWER),
    Endpoint("POST", "/v1/workspaces/a/plan", Role.EDITOR, lambda _: {"spec": spec_json("a", feature_services=())}),
    Endpoint("POST", "/v1/workspaces/a/apply", Role.EDITOR, _shorter),
    Endpoint("POST", "/v1/workspaces/a/rollback", Role.EDITOR, lambda _: {"version": 1, "base_version": 1}),
    Endpoint(
        "POST",
        "/v1/workspaces/a/jobs",
        Role.OPERATOR,
        lambda _: {"view": "user_spending", "start_ms": 0, "end_ms": 1000},
    ),
    Endpoint("POST", "/v1/workspaces/a/jobs/compact", Role.OPERATOR),
    Endpoint("POST", "/v1/workspaces/a/jobs/{job}/cancel", Role.OPERATOR),
    Endpoint("POST", "/v1/workspaces/a/jobs/{job}/retry", Role.OPERATOR),
    Endpoint("DELETE", "/v1/workspaces/a?force=true", Role.OWNER),
    Endpoint("GET", "/v1/roles?workspace=a", Role.OWNER),
    Endpoint("PUT", "/v1/roles", Role.OWNER, lambda _: {"principal": "p-none", "workspace": "a", "role": "viewer"}),
    Endpoint("DELETE", "/v1/roles?principal=p-viewer&workspace=a", Role.OWNER),
    Endpoint("POST", "/v1/keys", Role.OWNER, lambda _: {"workspace": "a", "role": "reader"}),
    Endpoint("GET", "/v1/audit?workspace=a", Role.OWNER),
    Endpoint("POST", "/v1/workspaces", ADMIN_ONLY, lambda _: {"name": "c", "live": True}),
    Endpoint("GET", "/v1/principals", ADMIN_ONLY),
    Endpoint("POST", "/v1/principals", ADMIN_ONLY, lambda _: {"name": "new-sa"}),
    Endpoint("DELETE", "/v1/principals/p-none", ADMIN_ONLY),
    Endpoint("POST", "/v1/keys", ADMIN_ONLY, lambda _: {"principal": "p-none"}),
    Endpoint("GET", "/v1/roles", ADMIN_ONLY),
    Endpoint("GET", "/v1/audit", ADMIN_ONLY),
]


def _permitted(principal: str, needs: Role | str) -> bool:
    if principal == "admin":
        return True
    role = ROLE_OF[principal]
    return needs != ADMIN_ONLY and role is not None and isinstance(needs, Role) and role >= needs


@pytest.mark.parametrize("principal", list(ROLE_OF))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_each_endpoint_is_allowed_exactly_when_the_role_permits(endpoint: Endpoint, principal: str) -> None:
    fixture = control_fixture()
    response = endpoint.call(fixture, principal)
    assert response.status_code < 500, response.text
    if _permitted(principal, endpoint.needs):
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        message = response.json()["message"]
        needed = "instance admin" if endpoint.needs == ADMIN_ONLY else f"'{endpoint.needs.label}'"  # type: ignore[union-attr]
        assert needed in message
        denied = [r for r in fixture.plane.guard.audit.records() if r.outcome is Outcome.DENIED]
        assert [r.principal for r in denied] == [principal]


# The same endpoints of workspace "b", where every p-* principal holds no role.
@pytest.mark.parametrize("principal", [p for p in ROLE_OF if p.startswith("p-")])
@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if e.needs != ADMIN_ONLY and "/workspaces/a" in e.path],
    ids=lambda e: f"{e.method} {e.path}",
)
def test_a_role_in_one_workspace_gives_nothing_in_another(endpoint: Endpoint, principal: str) -> None:
    fixture = control_fixture()
    moved = dataclasses.replace(endpoint, path=endpoint.path.replace("/workspaces/a", "/workspaces/b"))
    response = moved.call(fixture, principal)
    assert response.status_code == 403, response.text
    assert "workspace 'b'" in response.json()["message"]


def test_unknown_revoked_and_missing_keys_are_401_and_audited() -> None:
    fixture = control_fixture()
    for headers in ({}, {"Authorization": "Bearer fbk_nope"}, {"Authorization": "Basic abc"}):
        response = fixture.client.post("/v1/workspaces/a/apply", json=_shorter(fixture), headers=headers)
        assert response.status_code == 401 and response.json()["message"]
    key_id = fixture.client.get("/v1/whoami", headers=fixture.auth("p-editor")).json()["keyId"]
    assert fixture.client.delete(f"/v1/keys/{key_id}", headers=fixture.auth("p-editor")).status_code == 200
    assert fixture.client.get("/v1/whoami", headers=fixture.auth("p-editor")).status_code == 401
    outcomes = [r.outcome for r in fixture.plane.guard.audit.records()]
    assert outcomes.count(Outcome.UNAUTHENTICATED) == 4 and Outcome.OK in outcomes


def test_a_consumer_key_serves_but_cannot_apply() -> None:
    fixture = control_fixture()
    assert (
        fixture.client.post(
            "/v1/workspaces/a/apply", json=_shorter(fixture), headers=fixture.auth("p-consumer")
        ).status_code
        == 403
    )
    store = MemoryStore()
    spec = fixture.registry.get("a")
    assert spec is not None
    load(store, spec, EVENTS)
    view = fixture.plane.guard.access.view  # serving holds the same records, fed from the topic
    serving = TestClient(create_app(FeatureServer(lambda: {"a": spec}, store, Clock(BASE + 3_600_000)), view))
    body = {"params": {"workspaceName": "a", "featureServiceName": "spending", "joinKeyMap": {"user_id": "alice"}}}
    assert (
        serving.post("/api/v1/feature-service/get-features", json=body, headers=fixture.auth("p-consumer")).status_code
        == 200
    )
    assert (
        serving.post("/api/v1/feature-service/get-features", json=body, headers=fixture.auth("p-viewer")).status_code
        == 403
    )


def test_apply_then_log_shows_who_applied_and_a_stale_plan_gets_409() -> None:
    fixture = control_fixture()
    applied = fixture.client.post("/v1/workspaces/a/apply", json=_shorter(fixture), headers=fixture.auth("p-editor"))
    assert applied.status_code == 200, applied.text
    assert applied.json()["version"] == 2 and applied.json()["plan"]["summary"]["delete"] == 1
    stale = fixture.client.post(
        "/v1/workspaces/a/apply", json={"spec": spec_json("a"), "base_version": 1}, headers=fixture.auth("p-owner")
    )
    assert stale.status_code == 409
    assert stale.json()["currentVersion"] == 2 and "v2" in stale.json()["message"]
    log = fixture.client.get("/v1/workspaces/a/log", headers=fixture.auth("p-viewer")).json()
    assert [(row["version"], row["appliedBy"]) for row in log] == [(1, ""), (2, "p-editor")]
    rolled = fixture.client.post(
        "/v1/workspaces/a/rollback", json={"version": 1, "base_version": 2}, headers=fixture.auth("p-owner")
    )
    assert rolled.status_code == 200 and rolled.json()["version"] == 3
    assert fixture.registry.get("a") is not None and fixture.registry.get("a").feature_services  # type: ignore[union-attr]


def test_two_concurrent_applies_exactly_one_wins_and_the_audit_log_has_both() -> None:
    fixture = control_fixture()
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def apply(principal: str, spec: dict[str, Any]) -> None:
        barrier.wait()
        try:
            fixture.plane.definitions.apply(Call(f"Bearer {fixture.secrets[principal]}", principal), "a", spec, 1)
            outcomes[principal] = "applied"
        except ConflictError as exc:
            outcomes[principal] = f"409 at v{exc.current_version}"

    threads = [
        threading.Thread(target=apply, args=("p-editor", spec_json("a", feature_services=()))),
        threading.Thread(target=apply, args=("p-owner", spec_json("a", stream_feature_views=(), feature_services=()))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes.values()) == ["409 at v2", "applied"]
    records = [r for r in fixture.plane.guard.audit.records() if r.action == "apply"]
    assert sorted((r.principal, r.outcome.value) for r in records) == sorted(
        (p, "ok" if o == "applied" else "failed") for p, o in outcomes.items()
    )
    assert fixture.registry.get("a").version == 2  # type: ignore[union-attr]


def test_prevent_destroy_is_kept_by_the_server() -> None:
    fixture = control_fixture()
    spec = spec_json("a")
    spec["stream_feature_views"][0]["prevent_destroy"] = True
    first = fixture.client.post(
        "/v1/workspaces/a/apply", json={"spec": spec, "base_version": 1}, headers=fixture.auth("p-editor")
    )
    assert first.status_code == 200, first.text
    refused = fixture.client.post(
        "/v1/workspaces/a/apply",
        json={"spec": spec_json("a", stream_feature_views=(), feature_services=()), "base_version": 2},
        headers=fixture.auth("p-editor"),
    )
    assert refused.status_code == 400 and "prevent_destroy" in refused.json()["message"]


def test_principals_keys_and_roles_round_trip_through_the_api() -> None:
    fixture = control_fixture()
    admin = fixture.auth("admin")
    assert (
        fixture.client.post("/v1/principals", json={"name": "alice", "kind": "user"}, headers=admin).status_code == 201
    )
    created = fixture.client.post(
        "/v1/keys", json={"principal": "alice", "expires_at_ms": 4_102_444_800_000}, headers=admin
    ).json()
    alice = {"Authorization": f"Tecton-key {created['secret']}"}
    assert fixture.client.get("/v1/workspaces/a", headers=alice).status_code == 403
    assert (
        fixture.client.put(
            "/v1/roles",
            json={"principal": "alice", "workspace": "a", "role": "viewer"},
            headers=fixture.auth("p-owner"),
        ).status_code
        == 200
    )
    assert fixture.client.get("/v1/workspaces/a", headers=alice).status_code == 200
    assert fixture.client.get("/v1/roles?principal=alice", headers=alice).json() == [
        {"principal": "alice", "workspace": "a", "role": "viewer"}
    ]
    listed = fixture.client.get("/v1/keys", headers=admin).json()
    assert created["secret"] not in str(listed) and created["keyId"] in str(listed)
    assert fixture.client.get("/v1/workspaces", headers=alice).json()[0]["name"] == "a"
    assert fixture.client.delete("/v1/principals/alice", headers=admin).status_code == 200
    assert fixture.client.get("/v1/workspaces/a", headers=alice).status_code == 401


def test_the_first_start_creates_one_admin_and_later_starts_none() -> None:
    fixture = control_fixture()  # already has an admin
    assert fixture.plane.bootstrap_admin() is None
    plane = ControlPlane(MemoryRegistry(), MemoryAuditLog())
    secret = plane.bootstrap_admin()
    assert secret is not None and plane.bootstrap_admin() is None
    client = TestClient(create_control_app(plane))
    assert client.get("/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).json()["admin"] is True


def test_admin_key_gives_a_home_without_one_a_new_key_of_the_one_admin() -> None:
    plane = ControlPlane(MemoryRegistry(), MemoryAuditLog())
    first, second = plane.admin_key("up in /a"), plane.admin_key("up in /b")
    assert first != second
    view = plane.guard.access.view
    assert {view.authenticate(f"Bearer {s}").principal for s in (first, second)} == {"admin"}
    assert [r.action for r in plane.guard.audit.records()].count("keys.create") == 2
