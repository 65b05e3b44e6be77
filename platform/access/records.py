"""The records of the access topic (``API_KEYS_TOPIC``, compacted, one partition) and their keys.

One topic holds every record a request check needs, so a serving replica follows one topic and
sees a principal before its binding before its key (the control plane writes them in that order):

- ``<sha256 hex of the secret>`` -> an ``ApiKey`` (format 2), or an earlier release's format-1 key
  (workspace + reader/writer/admin) read as a key of its own service account bound to that
  workspace (``legacy_principal``), so keys minted before principals existed keep working;
- ``principal/<name>`` -> a ``Principal`` (a user or a service account, maybe the instance admin);
- ``binding/<principal>/<workspace>`` -> a ``RoleBinding``.

A tombstone (no value) deletes: a revoked key, a removed binding, a deleted principal.
"""

from __future__ import annotations

import dataclasses
import enum

import orjson

from featurebus.platform.access.roles import LEGACY_ROLES, Role
from featurebus.schemas.time import format_iso_ms, now_ms

__all__ = [
    "KEY_FORMAT",
    "ApiKey",
    "Principal",
    "PrincipalKind",
    "RoleBinding",
    "binding_key",
    "decode_key",
    "iso_now",
    "legacy_principal",
    "principal_key",
]

KEY_FORMAT = 2
_LEGACY_KEY_FORMAT = 1
_PRINCIPAL_FORMAT = 1
_BINDING_FORMAT = 1
PRINCIPAL_PREFIX = b"principal/"
BINDING_PREFIX = b"binding/"


class PrincipalKind(enum.Enum):
    USER = "user"
    SERVICE_ACCOUNT = "service_account"


def iso_now() -> str:
    return format_iso_ms(now_ms())


def _check_format(raw: dict[str, object], expected: int, what: str) -> None:
    if raw.get("version") != expected:
        raise ValueError(f"{what} record version {raw.get('version')!r} is not {expected}")


@dataclasses.dataclass(frozen=True)
class Principal:
    name: str
    kind: PrincipalKind
    admin: bool = False
    description: str = ""
    created_at: str = ""
    created_by: str = ""

    def to_record(self) -> bytes:
        return orjson.dumps({"version": _PRINCIPAL_FORMAT, **dataclasses.asdict(self), "kind": self.kind.value})

    @classmethod
    def from_record(cls, value: bytes) -> Principal:
        raw = orjson.loads(value)
        _check_format(raw, _PRINCIPAL_FORMAT, "principal")
        return cls(
            raw["name"],
            PrincipalKind(raw["kind"]),
            bool(raw.get("admin", False)),
            raw.get("description", ""),
            raw.get("created_at", ""),
            raw.get("created_by", ""),
        )


@dataclasses.dataclass(frozen=True)
class RoleBinding:
    principal: str
    workspace: str
    role: Role

    def to_record(self) -> bytes:
        return orjson.dumps(
            {
                "version": _BINDING_FORMAT,
                "principal": self.principal,
                "workspace": self.workspace,
                "role": self.role.label,
            }
        )

    @classmethod
    def from_record(cls, value: bytes) -> RoleBinding:
        raw = orjson.loads(value)
        _check_format(raw, _BINDING_FORMAT, "role binding")
        return cls(raw["principal"], raw["workspace"], Role[str(raw["role"]).upper()])


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """A key of one principal. ``expires_at_ms`` None: never expires. ``workspace`` and ``role``
    are set only on format-1 keys (read through ``legacy_principal``)."""

    key_id: str
    principal: str
    description: str = ""
    created_at: str = ""
    expires_at_ms: int | None = None
    workspace: str = ""
    role: str = ""

    def to_record(self) -> bytes:
        return orjson.dumps(
            {
                "version": KEY_FORMAT,
                "key_id": self.key_id,
                "principal": self.principal,
                "description": self.description,
                "created_at": self.created_at,
                "expires_at_ms": self.expires_at_ms,
            }
        )

    @property
    def legacy(self) -> bool:
        return bool(self.workspace)


def legacy_principal(key_id: str) -> str:
    """The service account a format-1 key acts as."""
    return f"legacy-key-{key_id}"


def decode_key(value: bytes) -> ApiKey:
    """A key record of either format; raises ValueError/KeyError/TypeError when malformed."""
    raw = orjson.loads(value)
    if raw.get("version") == _LEGACY_KEY_FORMAT:
        if raw["role"] not in LEGACY_ROLES:
            raise ValueError(f"unknown legacy role {raw['role']!r}")
        return ApiKey(
            raw["key_id"],
            legacy_principal(raw["key_id"]),
            raw.get("description", ""),
            raw.get("created_at", ""),
            None,
            raw["workspace"],
            raw["role"],
        )
    _check_format(raw, KEY_FORMAT, "api key")
    expires = raw.get("expires_at_ms")
    return ApiKey(
        raw["key_id"],
        raw["principal"],
        raw.get("description", ""),
        raw.get("created_at", ""),
        int(expires) if expires is not None else None,
    )


def principal_key(name: str) -> bytes:
    return PRINCIPAL_PREFIX + name.encode("utf-8")


def binding_key(principal: str, workspace: str) -> bytes:
    return BINDING_PREFIX + f"{principal}/{workspace}".encode()
