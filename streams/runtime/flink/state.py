"""The engine's store and sink over Flink: a ``KeyValueStore`` on one keyed ``MapState`` and a
``FeatureSink`` that turns the engine's output into rows for the job's Kafka sink.

Flink scopes keyed state to the key of the element (or timer) being processed: the job keys its
records by source partition, so the map the engine sees is exactly that partition's shard (its
tiles, lifetime prefixes, high watermark and progress) — the same key space the native worker
keeps in RocksDB, now in Flink's RocksDB state backend, checkpointed with the source offsets.
"""

from __future__ import annotations

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
    """``KeyValueStore`` over the current key's map state."""

    def __init__(self, state: MapStateLike) -> None:
        self._state = state

    def get(self, key: bytes) -> bytes | None:
        value = self._state.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def write(self, puts: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in puts:
            if value is None:
                self._state.remove(key)
            else:
                self._state.put(key, value)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        # Flink's map state has no ordered range read: one shard's map is read whole and sorted
        # (only expiry scans, one shard at a time).
        items = sorted((bytes(k), bytes(v)) for k, v in self._state.items())
        return iter([(k, v) for k, v in items if start <= k < end])

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
