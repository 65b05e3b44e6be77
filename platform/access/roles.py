"""Who may do what: Tecton's workspace roles, an instance admin, and the one permission table.

Roles per workspace are ordered, each holding every right of the ones before it (as Tecton's):

    viewer    read definitions, lineage, jobs, the registry log, training data (offline store)
    consumer  + online reads (get-features)
    operator  + trigger, cancel and retry jobs
    editor    + plan/apply, ingest, delete entities' values
    owner     + manage the workspace's role bindings and keys, delete it

The instance ``admin`` (a flag on a principal, not a workspace role) may do everything, including
what belongs to no workspace: creating workspaces, principals and keys of other principals.
Pure: ``required_role`` and ``allows`` are table lookups, unit-tested over every pair.
"""

from __future__ import annotations

import enum

from featurebus.schemas.errors import InvalidRequestError

__all__ = ["ADMIN", "LEGACY_ROLES", "Action", "Role", "allows", "parse_role", "required_role"]


class Role(enum.IntEnum):
    """Workspace roles; the integer order is the rights order."""

    VIEWER = 1
    CONSUMER = 2
    OPERATOR = 3
    EDITOR = 4
    OWNER = 5

    @property
    def label(self) -> str:
        return self.name.lower()


# The instance admin outranks every workspace role; it is never bound to a workspace.
ADMIN = "admin"

# ``api-key create --role reader|writer|admin`` of earlier releases, and the keys it wrote.
LEGACY_ROLES: dict[str, Role] = {"reader": Role.CONSUMER, "writer": Role.EDITOR, "admin": Role.OWNER}


class Action(enum.Enum):
    """Everything a caller can ask for; each needs one role (``required_role``)."""

    READ_DEFINITIONS = "read_definitions"  # describe, registry log, workspace get, plan
    READ_JOBS = "read_jobs"
    READ_OFFLINE = "read_offline"  # training sets and ad hoc reads of the offline store
    READ_AUDIT = "read_audit"  # the workspace's audit records
    READ_ONLINE = "read_online"  # serving: get-features, metadata
    MANAGE_JOBS = "manage_jobs"  # trigger, cancel, retry
    APPLY = "apply"
    INGEST = "ingest"  # serving: /ingest
    DELETE_KEYS = "delete_keys"  # delete entities' values (online, offline, sources)
    MANAGE_ACCESS = "manage_access"  # bind roles in the workspace, list its bindings
    DELETE_WORKSPACE = "delete_workspace"
    # Instance-wide: no workspace role is enough.
    CREATE_WORKSPACE = "create_workspace"
    MANAGE_PRINCIPALS = "manage_principals"  # create/delete principals, keys of others
    READ_ALL_AUDIT = "read_all_audit"


# None: only the instance admin.
_REQUIRED: dict[Action, Role | None] = {
    Action.READ_DEFINITIONS: Role.VIEWER,
    Action.READ_JOBS: Role.VIEWER,
    Action.READ_OFFLINE: Role.VIEWER,
    Action.READ_AUDIT: Role.OWNER,
    Action.READ_ONLINE: Role.CONSUMER,
    Action.MANAGE_JOBS: Role.OPERATOR,
    Action.APPLY: Role.EDITOR,
    Action.INGEST: Role.EDITOR,
    Action.DELETE_KEYS: Role.EDITOR,
    Action.MANAGE_ACCESS: Role.OWNER,
    Action.DELETE_WORKSPACE: Role.OWNER,
    Action.CREATE_WORKSPACE: None,
    Action.MANAGE_PRINCIPALS: None,
    Action.READ_ALL_AUDIT: None,
}


def required_role(action: Action) -> Role | None:
    """The weakest workspace role that may do ``action``; None when only the admin may."""
    return _REQUIRED[action]


def allows(role: Role | None, action: Action, *, admin: bool = False) -> bool:
    """Whether a principal holding ``role`` in the workspace (None: no binding) may do ``action``."""
    if admin:
        return True
    needed = _REQUIRED[action]
    return needed is not None and role is not None and role >= needed


def parse_role(text: str) -> Role:
    """A role name from the CLI or an API body; the legacy names map as earlier keys did."""
    lowered = text.strip().lower()
    if lowered in LEGACY_ROLES:
        return LEGACY_ROLES[lowered]
    try:
        return Role[lowered.upper()]
    except KeyError:
        names = ", ".join(r.label for r in Role)
        raise InvalidRequestError(
            f"unknown role {text!r}; use one of: {names} (or the earlier reader, writer, "
            "admin: consumer, editor, owner)"
        ) from None
