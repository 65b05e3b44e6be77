"""The engine's store and sink over Flink: a ``KeyValueStore`` on one keyed ``MapState`` and a
``FeatureSink`` that turns the engine's output into rows for the job's Kafka sink.

Flink scopes keyed state to the key of the element (or timer) being processed: the job keys its
records by source partition, so the map the engine sees is exactly that partition's shard (its
tiles, lifetime prefixes, high watermark and progress) — the same key space the native worker
keeps in RocksDB, now in Flink's RocksDB state backend, checkpointed with the source offsets.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from featurebus.streams.runtime.engine import Progress, RawRecord

__all__ = ["FlinkMapStore", "RowSink", "MapStateLike", "OutputRow", "dead_letter_headers"]

# (record key, record value, topic, headers): the columns of the job's Kafka sink table.
OutputRow = tuple[bytes | None, bytes | None, str, dict[str, bytes] | None]


class MapStateLike(Protocol):
    """What the store uses of PyFlink's ``MapState`` (so the store is testable without Flink)."""

    def get(self, key: Any) -> Any: ...

    def put(self, key: Any, value: Any) -> None: ...

    def remove(self, key: Any) -> None: ...

    def items(self) -> Iterable[tuple[Any, Any]]: ...


class FlinkMapStore:
    """``KeyValueStore`` over the current key's map state, read through a mirror in this process.

    Every read of a PyFlink map state that its small cache misses is a blocking round trip to the
    JVM (the profile of the first version: a third of the Python time went into them, one
    round trip per tile looked up). The engine is the only writer of the state, so the store
    loads a shard's whole map once (one chunked iteration), answers every read from that copy
    and writes through to the map state (PyFlink batches those writes into one request per bundle
    or per ``python.map-state.write-cache-size`` changes). The copy dies with the operator: a
    restore from a checkpoint or a rescale opens a new operator, which reloads it from the
    restored state. The cost is memory: the shards of this subtask held in Python objects.
    """

    def __init__(self, state: MapStateLike) -> None:
        self._state = state
        self._mirrors: dict[str, dict[bytes, bytes]] = {}
        self._mirror: dict[bytes, bytes] | None = None
        # The current shard's keys in order, for scans (expiry reads a view in slices); rebuilt
        # after a write added or removed a key.
        self._sorted_keys: dict[str, list[bytes]] = {}
        self._shard = ""

    def use(self, shard: str) -> None:
        """Point the store at ``shard``: the key Flink scopes the map state to right now."""
        mirror = self._mirrors.get(shard)
        if mirror is None:
            mirror = {bytes(k): bytes(v) for k, v in self._state.items()}
            self._mirrors[shard] = mirror
        self._mirror = mirror
        self._shard = shard

    def _current(self) -> dict[bytes, bytes]:
        if self._mirror is None:
            raise RuntimeError("FlinkMapStore.use(shard) must name the current key before the engine runs")
        return self._mirror

    def get(self, key: bytes) -> bytes | None:
        return self._current().get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        mirror = self._current()
        return [mirror.get(key) for key in keys]

    def write(self, puts: Iterable[tuple[bytes, bytes | None]]) -> None:
        mirror = self._current()
        key_set_changed = False
        for key, value in puts:
            if value is None:
                if mirror.pop(key, None) is not None:
                    self._state.remove(key)
                    key_set_changed = True
            else:
                key_set_changed = key_set_changed or key not in mirror
                mirror[key] = value
                self._state.put(key, value)
        if key_set_changed:
            self._sorted_keys.pop(self._shard, None)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        # The map has no ordered range read: the shard's copy is filtered and sorted (only
        # expiry scans, one shard at a time).
        mirror = self._current()
        keys = self._sorted_keys.get(self._shard)
        if keys is None:
            keys = self._sorted_keys[self._shard] = sorted(mirror)
        selected = keys[bisect_left(keys, start) : bisect_left(keys, end)]
        return iter([(key, mirror[key]) for key in selected])

    def close(self) -> None:
        """Flink owns the state's lifecycle."""


def dead_letter_headers(record: RawRecord, reason: str) -> dict[str, bytes]:
    """The native worker's dead-letter headers (``streams.runtime.worker.TransactionalSink``)."""
    return {
        "featurebus.reason": reason.encode(),
        "featurebus.topic": record.topic.encode(),
        "featurebus.partition": str(record.partition).encode(),
        "featurebus.offset": str(record.offset).encode(),
    }


@dataclass
class RowSink:
    """``FeatureSink`` collecting what one batch publishes; the operator emits the rows after the
    batch. ``commit`` has nothing to do: Flink's checkpoint commits the sink's Kafka transaction
    together with the source offsets and this state (exactly-once)."""

    dead_letter_topic: str
    rows: list[OutputRow] = field(default_factory=list)
    dead_lettered: int = 0

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        # The feature-topic partition is left to the sink's partitioner (by key): a tile's
        # updates and tombstone still share one partition, so compaction keeps the right one.
        self.rows.append((key, value, topic, None))

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        self.rows.append((None, record.value, self.dead_letter_topic, dead_letter_headers(record, reason)))
        self.dead_lettered += 1

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        """Nothing: see the class docstring."""

    def drain(self) -> list[OutputRow]:
        rows, self.rows = self.rows, []
        return rows
