"""The in-memory view of the access topic that every process checks requests against.

Serving replicas feed it from the topic they already follow (``apply_record``); the control
plane from its own writes and a periodic re-read. A check is a sha256 of the presented secret, a
dict lookup for the key, one for its principal and one for the binding: no I/O, no round trip,
so serving pays what it paid for the earlier workspace-scoped keys (see bench/README.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable

from featurebus.platform.access.records import (
    BINDING_PREFIX,
    PRINCIPAL_PREFIX,
    ApiKey,
    Principal,
    RoleBinding,
    decode_key,
)
from featurebus.platform.access.roles import LEGACY_ROLES, Action, Role, required_role
from featurebus.schemas.errors import AuthenticationError, PermissionDeniedError

__all__ = ["AccessView", "Caller", "hash_secret"]

_SCHEMES = ("tecton-key", "bearer")
_HOW_TO = "send it as `Authorization: Tecton-key <key>` or `Authorization: Bearer <key>`"

_log = logging.getLogger(__name__)
_REQUIRED_RANK: dict[Action, Role | None] = {action: required_role(action) for action in Action}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who sent a request: the key's principal, resolved once per request."""

    principal: str
    key_id: str
    admin: bool = False
    # A format-1 key's own scope (workspace, role); None for keys of real principals.
    legacy_scope: tuple[str, Role] | None = None


class AccessView:
    """Keys, principals and bindings, kept in dicts; safe across threads (writes take a lock,
    reads are single dict lookups, atomic under the GIL)."""

    def __init__(self, clock_s: Callable[[], float] = time.time) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._principals: dict[str, Principal] = {}
        self._bindings: dict[tuple[str, str], Role] = {}
        # key hash -> (caller, expiry ms): what ``authenticate`` resolved, so a request pays one
        # dict lookup; cleared by every record applied (a principal's admin flag may change).
        self._callers: dict[str, tuple[Caller, int | None]] = {}
        self._lock = threading.Lock()
        self._clock_s = clock_s

    def __len__(self) -> int:
        return len(self._keys)

    # -- feeding it --------------------------------------------------------------------------------
    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one access-topic record; malformed records are logged and skipped, never fatal."""
        if key is None:
            _log.warning("skipping access record without a key")
            return
        try:
            with self._lock:
                self._callers = {}
                if key.startswith(PRINCIPAL_PREFIX):
                    self._apply_principal(key[len(PRINCIPAL_PREFIX) :].decode(), value)
                elif key.startswith(BINDING_PREFIX):
                    self._apply_binding(key[len(BINDING_PREFIX) :].decode(), value)
                else:
                    self._apply_key(key.decode("utf-8", errors="replace"), value)
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("skipping malformed access record %r: %s", bytes(key[:24]), exc)

    def load(self, records: dict[bytes, bytes]) -> None:
        """Replace everything with ``records`` (a compacted read of the whole topic)."""
        fresh = AccessView(self._clock_s)
        for key, value in records.items():
            fresh.apply_record(key, value)
        with self._lock:
            self._keys, self._principals, self._bindings = fresh._keys, fresh._principals, fresh._bindings
            self._callers = {}

    def _apply_principal(self, name: str, value: bytes | None) -> None:
        if value is None:
            self._principals.pop(name, None)
        else:
            self._principals[name] = Principal.from_record(value)

    def _apply_binding(self, rest: str, value: bytes | None) -> None:
        if value is None:
            principal, _, workspace = rest.rpartition("/")
            self._bindings.pop((principal, workspace), None)
        else:
            binding = RoleBinding.from_record(value)
            self._bindings[(binding.principal, binding.workspace)] = binding.role

    def _apply_key(self, digest: str, value: bytes | None) -> None:
        if value is None:
            self._keys.pop(digest, None)
        else:
            self._keys[digest] = decode_key(value)

    # -- reading it ------------------------------------------------------------------------------
    def principal(self, name: str) -> Principal | None:
        return self._principals.get(name)

    def principals(self) -> list[Principal]:
        return sorted(self._principals.values(), key=lambda p: p.name)

    def api_keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def key_hash(self, key_id: str) -> str | None:
        return next((digest for digest, key in list(self._keys.items()) if key.key_id == key_id), None)

    def bindings(self, *, principal: str | None = None, workspace: str | None = None) -> list[RoleBinding]:
        """Role bindings (format-1 keys' scopes included), filtered by principal and/or workspace."""
        found = [RoleBinding(p, w, r) for (p, w), r in list(self._bindings.items())]
        found += [
            RoleBinding(k.principal, k.workspace, LEGACY_ROLES[k.role]) for k in list(self._keys.values()) if k.legacy
        ]
        return sorted(
            (
                b
                for b in found
                if (principal is None or b.principal == principal) and (workspace is None or b.workspace == workspace)
            ),
            key=lambda b: (b.workspace, b.principal),
        )

    # -- checking requests ---------------------------------------------------------------------------
    def authenticate(self, authorization_header: str | None) -> Caller:
        """The caller an ``Authorization`` header names; ``AuthenticationError`` when there is no
        key, or it is unknown, revoked, expired, or its principal was deleted."""
        if not authorization_header:
            raise AuthenticationError(f"missing API key: {_HOW_TO}")
        scheme, _, secret = authorization_header.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() not in _SCHEMES or not secret:
            raise AuthenticationError(f"malformed Authorization header: {_HOW_TO}")
        # A dict lookup of a key-sized hash: no timing leak worth a constant-time compare.
        digest = hash_secret(secret)
        cached = self._callers.get(digest)
        caller, expires_at_ms = cached if cached is not None else self._resolve(digest)
        if expires_at_ms is not None and self._clock_s() * 1000 >= expires_at_ms:
            raise AuthenticationError(
                f"API key {caller.key_id} has expired; ask an admin for a new one (`featurebus api-key create`)"
            )
        return caller

    def _resolve(self, digest: str) -> tuple[Caller, int | None]:
        key = self._keys.get(digest)
        if key is None:
            raise AuthenticationError(
                f"unknown or revoked API key: ask an admin for one (`featurebus api-key create`) and {_HOW_TO}"
            )
        if key.legacy:
            caller = Caller(key.principal, key.key_id, False, (key.workspace, LEGACY_ROLES[key.role]))
        else:
            principal = self._principals.get(key.principal)
            if principal is None:
                raise AuthenticationError(
                    f"API key {key.key_id} belongs to principal {key.principal!r}, which was deleted"
                )
            caller = Caller(principal.name, key.key_id, principal.admin)
        callers = self._callers  # a record applied meanwhile swapped in a new (empty) dict
        callers[digest] = (caller, key.expires_at_ms)
        return caller, key.expires_at_ms

    def role_of(self, caller: Caller, workspace: str) -> Role | None:
        scope = caller.legacy_scope
        if scope is None:
            return self._bindings.get((caller.principal, workspace))
        return scope[1] if scope[0] == workspace else None

    def permit(self, caller: Caller, workspace: str | None, action: Action) -> Caller:
        """Raise ``PermissionDeniedError`` (naming the role needed and how to get it) unless
        ``caller`` may do ``action`` in ``workspace`` (None: an instance-wide action)."""
        if caller.admin:
            return caller
        needed = _REQUIRED_RANK[action]  # the serving hot path: two dict lookups, no calls
        role = self.role_of(caller, workspace) if workspace is not None else None
        if role is not None and needed is not None and role >= needed:
            return caller
        if caller.legacy_scope is not None:  # an earlier release's key: it has one workspace, one role
            scope, legacy_role = caller.legacy_scope
            if workspace is not None and scope != workspace:
                raise PermissionDeniedError(
                    f"API key {caller.key_id} is scoped to workspace {scope!r}, not "
                    f"{workspace!r}; use a key created for {workspace!r}"
                )
            earlier = {role: name for name, role in LEGACY_ROLES.items()}
            if needed is None:
                wanted = "the instance admin role"
            else:
                wanted = f"'{needed.label}'" + (
                    f" (an earlier release's '{earlier[needed]}')" if needed in earlier else ""
                )
            raise PermissionDeniedError(
                f"API key {caller.key_id} has role '{earlier.get(legacy_role, legacy_role.label)}' "
                f"({legacy_role.label}) but {action.value} needs {wanted}; create a key with that role "
                "(`featurebus api-key create --role ...`)"
            )
        held = f"role {role.label!r}" if role is not None else "no role"
        where = f"in workspace {workspace!r}" if workspace is not None else "on this instance"
        if needed is None:
            raise PermissionDeniedError(
                f"principal {caller.principal!r} may not {action.value} {where}: this needs "
                "the instance admin role; ask an admin to do it"
            )
        raise PermissionDeniedError(
            f"principal {caller.principal!r} has {held} {where}, but {action.value} needs {needed.label!r} or higher; "
            f"ask an owner: `featurebus access-control assign-role --principal {caller.principal} "
            f"--role {needed.label} -w {workspace}`"
        )

    def authorize(self, authorization_header: str | None, workspace: str | None, action: Action) -> Caller:
        """``authenticate`` then ``permit``."""
        return self.permit(self.authenticate(authorization_header), workspace, action)
