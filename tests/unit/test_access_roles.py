"""The permission table, over every (role, action) pair, and the access view's checks."""

from __future__ import annotations

import pytest

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.access.roles import Action, Role, allows, parse_role, required_role
from featurebus.platform.access.view import AccessView
from featurebus.platform.api_keys import ApiKey, hash_secret
from featurebus.platform.registry import MemoryRegistry
from featurebus.schemas.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError

# Written out by hand, not derived from the table: the weakest role each action needs.
EXPECTED: dict[Action, Role | None] = {
    Action.READ_DEFINITIONS: Role.VIEWER,
    Action.READ_JOBS: Role.VIEWER,
    Action.READ_OFFLINE: Role.VIEWER,
    Action.READ_ONLINE: Role.CONSUMER,
    Action.MANAGE_JOBS: Role.OPERATOR,
    Action.APPLY: Role.EDITOR,
    Action.INGEST: Role.EDITOR,
    Action.DELETE_KEYS: Role.EDITOR,
    Action.MANAGE_ACCESS: Role.OWNER,
    Action.READ_AUDIT: Role.OWNER,
    Action.DELETE_WORKSPACE: Role.OWNER,
    Action.CREATE_WORKSPACE: None,
    Action.MANAGE_PRINCIPALS: None,
    Action.READ_ALL_AUDIT: None,
}


def test_every_action_is_in_the_table() -> None:
    assert set(EXPECTED) == set(Action)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", [None, *Role])
def test_a_role_allows_exactly_the_actions_at_or_below_it(role: Role | None, action: Action) -> None:
    needed = EXPECTED[action]
    assert required_role(action) == needed
    assert allows(role, action) == (needed is not None and role is not None and role >= needed)
    assert allows(role, action, admin=True)


def test_roles_are_ordered_as_tectons() -> None:
    assert [r.label for r in sorted(Role)] == ["viewer", "consumer", "operator", "editor", "owner"]


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("reader", Role.CONSUMER),
        ("writer", Role.EDITOR),
        ("admin", Role.OWNER),
        ("Viewer", Role.VIEWER),
        ("operator", Role.OPERATOR),
    ],
)
def test_role_names_and_the_earlier_ones_parse(text: str, role: Role) -> None:
    assert parse_role(text) == role


def test_an_unknown_role_names_the_valid_ones() -> None:
    with pytest.raises(InvalidRequestError, match="viewer, consumer, operator, editor, owner"):
        parse_role("root")


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


def test_keys_of_principals_are_checked_against_bindings_expiry_and_revocation() -> None:
    clock = _Clock()
    admin = AccessAdmin(MemoryRegistry(), AccessView(clock))
    admin.create_principal("ci", PrincipalKind.SERVICE_ACCOUNT)
    admin.assign_role("ci", "a", Role.EDITOR)
    key, secret = admin.create_key("ci", expires_at_ms=2_000_000)
    header = f"Bearer {secret}"
    view = admin.view
    caller = view.authenticate(header)
    assert (caller.principal, caller.key_id, caller.admin) == ("ci", key.key_id, False)
    view.permit(caller, "a", Action.APPLY)
    with pytest.raises(PermissionDeniedError, match=r"needs .owner..*assign-role --principal ci --role owner -w a"):
        view.permit(caller, "a", Action.DELETE_WORKSPACE)
    with pytest.raises(PermissionDeniedError, match="no role in workspace 'b'"):
        view.permit(caller, "b", Action.READ_DEFINITIONS)
    with pytest.raises(PermissionDeniedError, match="instance admin"):
        view.permit(caller, None, Action.CREATE_WORKSPACE)
    clock.now_s = 2_000.0
    with pytest.raises(AuthenticationError, match="expired"):
        view.authenticate(header)
    clock.now_s = 1_000.0
    admin.revoke_key(key.key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        view.authenticate(header)


def test_deleting_a_principal_removes_its_keys_and_bindings() -> None:
    registry = MemoryRegistry()
    admin = AccessAdmin(registry)
    admin.create_principal("alice", PrincipalKind.USER)
    admin.assign_role("alice", "a", Role.VIEWER)
    _, secret = admin.create_key("alice")
    admin.delete_principal("alice")
    fresh = AccessView()
    fresh.load(registry.api_keys())  # what a replica following the topic ends with
    assert registry.api_keys() == {} and fresh.bindings() == []
    with pytest.raises(AuthenticationError):
        fresh.authenticate(f"Bearer {secret}")


def test_the_instance_admin_may_do_everything() -> None:
    admin = AccessAdmin(MemoryRegistry())
    admin.create_principal("root", PrincipalKind.SERVICE_ACCOUNT, admin=True)
    _, secret = admin.create_key("root")
    caller = admin.view.authenticate(f"Tecton-key {secret}")
    for action in Action:
        admin.view.permit(caller, "anything", action)
        admin.view.permit(caller, None, action)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reader", {Action.READ_ONLINE, Action.READ_DEFINITIONS}),
        ("writer", {Action.INGEST, Action.APPLY}),
        ("admin", {Action.DELETE_WORKSPACE, Action.MANAGE_ACCESS}),
    ],
)
def test_an_earlier_releases_key_record_keeps_its_workspace_and_role(role: str, allowed: set[Action]) -> None:
    view = AccessView()
    view.apply_record(hash_secret("fbk_old").encode(), ApiKey("k1", "w", role, "old").to_record())
    caller = view.authenticate("Bearer fbk_old")
    assert caller.principal == "legacy-key-k1"
    for action in allowed:
        view.permit(caller, "w", action)
    with pytest.raises(PermissionDeniedError):
        view.permit(caller, "other", Action.READ_DEFINITIONS)
    if role == "reader":
        with pytest.raises(PermissionDeniedError, match="needs 'editor'"):
            view.permit(caller, "w", Action.APPLY)
    assert [b.role for b in view.bindings(workspace="w")] == [parse_role(role)]


def test_api_key_create_is_a_service_account_bound_to_the_matching_role() -> None:
    admin = AccessAdmin(MemoryRegistry())
    key, secret = admin.create_service_account_key("w", parse_role("writer"))
    caller = admin.view.authenticate(f"Bearer {secret}")
    assert caller.principal == key.principal and caller.principal.startswith("sa-")
    assert [(b.workspace, b.role) for b in admin.view.bindings(principal=caller.principal)] == [("w", Role.EDITOR)]
    assert admin.view.principal(caller.principal) is not None
