"""API keys: created and revoked on a compacted topic, checked in memory by every serving replica.

A key is ``fbk_`` + ``secrets.token_urlsafe(32)``; only its sha256 (hex) is ever stored — it is the
record key on ``API_KEYS_TOPIC`` — with the key's scope as the value::

    {"version": 1, "key_id": "...", "workspace": "...", "role": "reader", "description": "...",
     "created_at": "2024-05-01T12:00:00.000Z"}

Revoking writes a tombstone. Roles are ordered: reader (serve) < writer (serve + ingest) < admin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import threading
from typing import Any

import orjson

from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from featurebus.schemas.time import format_iso_ms, now_ms

__all__ = [
    "ROLES",
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeyStore",
    "hash_secret",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
]

ROLES = ("reader", "writer", "admin")  # each role can do everything the ones before it can
_RANK = {role: rank for rank, role in enumerate(ROLES)}
KEY_PREFIX = "fbk_"
_RECORD_VERSION = 1
_SCHEMES = ("tecton-key", "bearer")
_HOW_TO = "send it as `Authorization: Tecton-key <key>` or `Authorization: Bearer <key>`"

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ApiKey:
    key_id: str
    workspace: str
    role: str
    description: str = ""
    created_at: str = ""

    def to_record(self) -> bytes:
        return orjson.dumps({"version": _RECORD_VERSION, **dataclasses.asdict(self)})

    @classmethod
    def from_record(cls, value: bytes) -> ApiKey:
        raw = orjson.loads(value)
        if raw.get("version") != _RECORD_VERSION:
            raise ValueError(f"api key record version {raw.get('version')!r} is not {_RECORD_VERSION}")
        return cls(raw["key_id"], raw["workspace"], raw["role"], raw.get("description", ""), raw.get("created_at", ""))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_role(role: str) -> None:
    if role not in _RANK:
        raise InvalidRequestError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")


class ApiKeyStore:
    """The live set of keys (hash -> scope), fed from ``API_KEYS_TOPIC``; safe across threads."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one topic record; malformed records are logged and skipped, never fatal."""
        if key is None:
            _log.warning("skipping api key record without a key")
            return
        digest = key.decode("utf-8", errors="replace")
        if value is None:
            with self._lock:
                self._keys.pop(digest, None)
            return
        try:
            api_key = ApiKey.from_record(value)
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("skipping malformed api key record %s: %s", digest[:12], exc)
            return
        with self._lock:
            self._keys[digest] = api_key

    def authenticate(self, authorization_header: str | None) -> ApiKey:
        """The key an ``Authorization`` header carries; ``AuthenticationError`` if none or unknown."""
        if not authorization_header:
            raise AuthenticationError(f"missing API key: {_HOW_TO}")
        scheme, _, secret = authorization_header.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() not in _SCHEMES or not secret:
            raise AuthenticationError(f"malformed Authorization header: {_HOW_TO}")
        # A dict lookup of a key-sized hash: no timing leak worth a constant-time compare.
        api_key = self._keys.get(hash_secret(secret))
        if api_key is None:
            raise AuthenticationError(
                f"unknown or revoked API key: create one with `featurebus api-key create` and {_HOW_TO}"
            )
        return api_key

    def authorize(self, authorization_header: str | None, workspace: str, needed_role: str) -> ApiKey:
        """Raise unless the header's key may act as ``needed_role`` in ``workspace``."""
        return self.permit(self.authenticate(authorization_header), workspace, needed_role)

    @staticmethod
    def permit(api_key: ApiKey, workspace: str, needed_role: str) -> ApiKey:
        """``authorize`` for a key already authenticated (hash once, check several times)."""
        if api_key.workspace != workspace:
            raise PermissionDeniedError(
                f"API key {api_key.key_id} is scoped to workspace {api_key.workspace!r}, not {workspace!r}; "
                f"use a key created for {workspace!r}"
            )
        if _RANK.get(api_key.role, -1) < _RANK[needed_role]:
            raise PermissionDeniedError(
                f"API key {api_key.key_id} has role {api_key.role!r} but this needs {needed_role!r} or higher"
            )
        return api_key


def create_api_key(registry: Registry, workspace: str, role: str = "reader", description: str = "") -> tuple[str, str]:
    """Create a key; returns ``(key_id, secret)``. The secret is shown once and never stored."""
    _check_role(role)
    if not workspace:
        raise InvalidRequestError("an API key needs a workspace")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        key_id=secrets.token_hex(8),
        workspace=workspace,
        role=role,
        description=description,
        created_at=format_iso_ms(now_ms()),
    )
    registry.put_api_key(hash_secret(secret).encode(), api_key.to_record())
    return api_key.key_id, secret


def list_api_keys(registry: Registry) -> list[dict[str, Any]]:
    """Every live key's scope (never its secret or hash), sorted by creation time."""
    keys = []
    for value in registry.api_keys().values():
        try:
            keys.append(dataclasses.asdict(ApiKey.from_record(value)))
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("skipping malformed api key record: %s", exc)
    return sorted(keys, key=lambda k: (k["created_at"], k["key_id"]))


def revoke_api_key(registry: Registry, key_id: str) -> None:
    for digest, value in registry.api_keys().items():
        try:
            if ApiKey.from_record(value).key_id == key_id:
                registry.put_api_key(digest, None)
                return
        except (ValueError, KeyError, TypeError):
            continue
    raise NotFoundError(f"no live API key with id {key_id!r}; `featurebus api-key list` shows them")
