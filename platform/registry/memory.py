"""The in-memory twin of ``KafkaRegistry``: the same records, held in dicts, for unit tests of
everything that follows specs (worker, job runner, serving start-up) without a broker."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence

from featurebus.platform.kafka.admin import TopicConfig
from featurebus.platform.kafka.topics import REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.platform.registry.base import SPEC_COLLECTIONS, SpecRecord
from featurebus.platform.registry.jobs import JobStore, MemoryJobBus, MemoryJobStore
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["MemoryRegistry"]


class MemoryRegistry:
    """Safe across threads: a worker's follower thread polls while a test applies."""

    def __init__(self) -> None:
        self._collections: dict[str, dict[bytes, bytes]] = {name: {} for name in SPEC_COLLECTIONS}
        self._api_keys: dict[bytes, bytes] = {}
        self._job_buses: dict[str, MemoryJobBus] = {}
        self._changed = threading.Condition()
        self._generation = 0  # bumped by every write; followers wait for it to move
        self.topics: dict[str, TopicConfig] = {}  # what ``apply`` was asked to create

    def list(self) -> dict[str, WorkspaceSpec]:
        with self._changed:
            latest = dict(self._collections[REGISTRY_TOPIC])
        return {key.decode("utf-8"): WorkspaceSpec.from_json(value) for key, value in latest.items()}

    def get(self, workspace: str) -> WorkspaceSpec | None:
        return self.list().get(workspace)

    def history(self, workspace: str) -> builtins.list[WorkspaceSpec]:
        prefix = f"{workspace}@".encode()
        with self._changed:
            records = dict(self._collections[REGISTRY_HISTORY_TOPIC])
        versions = [WorkspaceSpec.from_json(v) for k, v in records.items() if k.startswith(prefix)]
        return sorted(versions, key=lambda spec: spec.version)

    def apply(
        self, workspace: str, records: Sequence[SpecRecord], action: str, topics: Sequence[TopicConfig] = ()
    ) -> None:
        unknown = sorted({collection for collection, _, _ in records} - SPEC_COLLECTIONS)
        if unknown:
            raise InvalidRequestError(f"{action} workspace {workspace!r}: records for unknown collections {unknown}")
        with self._changed:
            for topic in topics:
                self.topics.setdefault(topic.name, topic)
            for collection, key, value in records:
                if value is None:
                    self._collections[collection].pop(key, None)
                else:
                    self._collections[collection][key] = value
            self._generation += 1
            self._changed.notify_all()

    def follow(self) -> _MemoryFollower:
        return _MemoryFollower(self)

    def api_keys(self) -> dict[bytes, bytes]:
        with self._changed:
            return dict(self._api_keys)

    def put_api_key(self, key_hash: bytes, record: bytes | None) -> None:
        with self._changed:
            if record is None:
                self._api_keys.pop(key_hash, None)
            else:
                self._api_keys[key_hash] = record
            self._generation += 1
            self._changed.notify_all()

    def jobs(self, workspace: str, *, runner: bool = False) -> JobStore:
        with self._changed:
            bus = self._job_buses.setdefault(workspace, MemoryJobBus())
        return MemoryJobStore(bus, runner=runner)

    def wait_for_change(self, seen: int, timeout_s: float) -> int:
        """The write generation once it moved past ``seen`` (or after ``timeout_s``)."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout=timeout_s)
            return self._generation


class _MemoryFollower:
    def __init__(self, registry: MemoryRegistry) -> None:
        self._registry = registry
        self._seen = -1  # the first poll answers at once

    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        self._seen = self._registry.wait_for_change(self._seen, timeout_s)
        return self._registry.list()

    def close(self) -> None:
        """Nothing to release: the in-memory twin holds no connection."""
