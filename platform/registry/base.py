"""The registry boundary: workspaces' specs, API keys and job records behind one small Protocol.

Two backends implement it: ``KafkaRegistry`` (the bus, in production and in every process of
``featurebus up``) and ``MemoryRegistry`` (its twin for unit tests); one contract suite runs over
both (``tests/contract/test_registry_contract.py``). The domain rules (versions, the ``live``
flag, who may delete what, API key scopes) live once, in functions over a ``Registry``
(``featurebus.platform.registry.specs``, ``...workspaces``, ``...api_keys``), so both backends
hold the same records byte for byte.

The records (see ``docs``/``featurebus.platform.kafka.topics``): ``REGISTRY_TOPIC`` holds each
workspace's current ``WorkspaceSpec`` (key = workspace), ``REGISTRY_HISTORY_TOPIC`` every applied
version (key = ``<workspace>@<version>``), written together in one transaction; ``API_KEYS_TOPIC``
one record per key hash; a workspace's jobs topic its job records (``JobStore``).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol

from featurebus.platform.kafka.admin import TopicConfig
from featurebus.platform.kafka.topics import REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.platform.registry.jobs import JobStore
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["Registry", "SpecFollower", "SpecRecord", "history_key", "SPEC_COLLECTIONS"]

# (collection, key, value or None for a deletion); the collection is REGISTRY_TOPIC or
# REGISTRY_HISTORY_TOPIC, the topic that holds the record on the bus.
SpecRecord = tuple[str, bytes, bytes | None]
SPEC_COLLECTIONS = frozenset({REGISTRY_TOPIC, REGISTRY_HISTORY_TOPIC})


def history_key(workspace: str, version: int) -> bytes:
    return f"{workspace}@{version:010d}".encode()


class SpecFollower(Protocol):
    """The registry followed by one long-lived reader (one thread polls it)."""

    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        """Wait up to ``timeout_s`` for news; return every workspace's latest spec.

        Raises ``KafkaUnavailableError`` once the backend has been unreachable for too long."""
        ...

    def close(self) -> None: ...


class Registry(Protocol):
    def list(self) -> dict[str, WorkspaceSpec]:
        """Every workspace's current spec (version 0: created, nothing applied yet)."""
        ...

    def get(self, workspace: str) -> WorkspaceSpec | None: ...

    def history(self, workspace: str) -> builtins.list[WorkspaceSpec]:
        """Every applied version of ``workspace``, oldest first."""
        ...

    def apply(
        self, workspace: str, records: Sequence[SpecRecord], action: str, topics: Sequence[TopicConfig] = ()
    ) -> None:
        """Write ``records`` atomically: readers see all of them or none. ``topics`` (e.g. push
        topics) exist once it returns; ``action`` names the change in errors ("applying")."""
        ...

    def follow(self) -> SpecFollower: ...

    def api_keys(self) -> dict[bytes, bytes]:
        """Every live access record: API keys (key = the secret's hash), principals and role
        bindings (``featurebus.platform.access.records`` says which key holds which)."""
        ...

    def put_api_key(self, key_hash: bytes, record: bytes | None) -> None:
        """Write (or, with None, delete) one access record, acknowledged when it returns."""
        ...

    def jobs(self, workspace: str, *, runner: bool = False) -> JobStore:
        """The workspace's job records (``runner=True``: the one writer that runs them; opening it
        fences the previous runner). The caller closes it."""
        ...
