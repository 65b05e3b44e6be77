"""The stream engine's local state, one shard per source partition.

A source partition's tiles live in its own *shard* (``shard_of``): local state keys are
``view | u16 shard | tile key`` (``state_prefix``), so a shard is one key range that can be
dropped, restored from its feature-topic partition, or handed to another worker whole. Next to the
tiles, each partition's ``Progress`` (applied offset, event-time watermark) is one record under
``progress_key``. ``ShardState`` owns those key layouts; the engine's batch step and the expiry
pass (``expiry.py``) read and write through it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import split_tile_key, store_prefix
from featurebus.schemas.specs import StreamSourceSpec
from featurebus.streams.arrival import NO_WATERMARK
from featurebus.streams.lifetime import high_watermark_shard
from featurebus.streams.tiles import CompiledView
from featurebus.streams.transform import Transformation

__all__ = [
    "MAX_PARTITIONS_PER_TOPIC",
    "NO_WATERMARK",
    "Progress",
    "ShardState",
    "ViewRuntime",
    "key_range_end",
    "shard_of",
    "state_prefix",
]

_I64 = struct.Struct(">q")
_U16 = struct.Struct(">H")
_PROGRESS = b"\x00progress."  # + topic + b"\x00" + partition -> applied offset, watermark
_TILE_KEY_TAIL = 10  # a tile key's u64 start + u16 shard after the entity key (schemas/encoding.py)
MAX_PARTITIONS_PER_TOPIC = 1024  # shard = topic index * 1024 + partition fits the u16 of a tile key

Puts = list[tuple[bytes, bytes | None]]


@dataclass(frozen=True)
class Progress:
    """How far a source partition has been applied: the last offset, the event-time watermark,
    and how many events it dropped so far (late, ahead: streams/arrival.py)."""

    offset: int = -1
    watermark: int = NO_WATERMARK
    dropped_late: int = 0
    dropped_ahead: int = 0

    def pack(self) -> bytes:
        return (
            _I64.pack(self.offset)
            + _I64.pack(self.watermark)
            + _I64.pack(self.dropped_late)
            + _I64.pack(self.dropped_ahead)
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Progress:
        """Also reads the 16-byte records written before drop counts were kept (counts 0)."""
        counts = (_I64.unpack_from(raw, 16)[0], _I64.unpack_from(raw, 24)[0]) if len(raw) >= 32 else (0, 0)
        return cls(_I64.unpack_from(raw, 0)[0], _I64.unpack_from(raw, 8)[0], *counts)


def shard_of(source: StreamSourceSpec, topic: str, partition: int) -> int:
    """The tile shard of a source partition: stable, unique within the source."""
    if partition >= MAX_PARTITIONS_PER_TOPIC:
        raise ValueError(f"{topic} has more than {MAX_PARTITIONS_PER_TOPIC} partitions")
    return source.kafka.topics.index(topic) * MAX_PARTITIONS_PER_TOPIC + partition


@dataclass(frozen=True)
class ViewRuntime:
    """An online view as the engine runs it: compiled, with its transformation and feature topic."""

    view: CompiledView
    transformation: Transformation
    feature_topic: str
    feature_partitions: int
    retention_ms: int
    watermark_delay_ms: int

    def partition_of(self, shard: int) -> int:
        # A shard's tiles all go to one feature-topic partition: a tile's updates and its
        # tombstone stay ordered (compaction keeps the right one), and a new owner of the
        # source partition restores the shard by reading that one partition.
        return shard % self.feature_partitions


def key_range_end(prefix: bytes) -> bytes:
    """A key above every key starting with ``prefix`` (tile keys are far shorter than 16 bytes
    past any prefix this is used with)."""
    return prefix + b"\xff" * 16


def progress_key(topic: str, partition: int) -> bytes:
    return _PROGRESS + topic.encode() + b"\x00" + str(partition).encode()


def state_prefix(view: str, shard: int) -> bytes:
    """Local state keys are ``view | shard | tile key``: a shard is one key range (moves, restores)."""
    return store_prefix(view) + _U16.pack(shard)


def last_write_wins(puts: Puts) -> Puts:
    return list(dict(puts).items())


class ShardState:
    """The shards and progress records of the engine's local store, for the views of its sources."""

    def __init__(
        self, store: KeyValueStore, sources: dict[str, StreamSourceSpec], views_by_topic: dict[str, list[ViewRuntime]]
    ) -> None:
        self._store = store
        self._sources = sources  # source topic -> its source
        self._views_by_topic = views_by_topic

    def progress(self, topic: str, partition: int) -> Progress:
        raw = self._store.get(progress_key(topic, partition))
        return Progress() if raw is None else Progress.unpack(raw)

    def shard_locations(self, topic: str, partition: int) -> list[tuple[str, str, int, int]]:
        """``(view, feature topic, feature partition, shard)`` holding this partition's tiles."""
        source = self._sources.get(topic)
        if source is None:
            return []
        shard = shard_of(source, topic, partition)
        return [(r.view.spec.name, r.feature_topic, r.partition_of(shard), shard) for r in self._views_by_topic[topic]]

    def replace_shard(
        self, topic: str, partition: int, tiles: dict[str, dict[bytes, bytes]], progress: Progress
    ) -> int:
        """Replace the local state of a source partition by what the bus holds.

        ``tiles`` maps a view name to the latest records of its feature-topic partition (any
        shards: only this partition's shard is kept); ``progress`` is the committed position.
        Returns how many tiles were restored.
        """
        puts = self._drop_shard_puts(topic, partition)
        shard = shard_of(self._sources[topic], topic, partition)
        restored = 0
        for view, shard_partition_records in tiles.items():
            prefix = state_prefix(view, shard)
            for key, value in shard_partition_records.items():
                # Tiles, lifetime prefixes (tile keys too) and high watermarks carry their shard.
                mark = high_watermark_shard(key)
                if (split_tile_key(key)[2] if mark is None else mark) == shard:
                    puts.append((prefix + key, value))
                    restored += 1
        puts.append((progress_key(topic, partition), progress.pack()))
        self._store.write(last_write_wins(puts))
        return restored

    def view_shard(self, view: str, shard: int) -> dict[bytes, bytes]:
        """One view's records of one shard (tiles, lifetime prefixes, high watermarks), by record key."""
        prefix = state_prefix(view, shard)
        return {key[len(prefix) :]: value for key, value in self._store.scan(prefix, key_range_end(prefix))}

    def replace_view_shards(
        self, topic: str, partition: int, records: dict[str, dict[bytes, bytes]], progress: Progress
    ) -> None:
        """Replace some views' state of a source partition's shard (``records``: view -> record
        key -> value, as ``view_shard`` returns them) and set its progress, atomically."""
        shard = shard_of(self._sources[topic], topic, partition)
        puts: Puts = []
        for view, view_records in records.items():
            prefix = state_prefix(view, shard)
            puts.extend((key, None) for key, _ in self._store.scan(prefix, key_range_end(prefix)))
            puts.extend((prefix + key, value) for key, value in view_records.items())
        puts.append((progress_key(topic, partition), progress.pack()))
        self._store.write(last_write_wins(puts))

    def set_progress(self, topic: str, partition: int, progress: Progress) -> None:
        self._store.write([(progress_key(topic, partition), progress.pack())])

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's local state (it belongs to no committed history any more)."""
        if topic in self._sources:
            self._store.write([*self._drop_shard_puts(topic, partition), (progress_key(topic, partition), None)])

    def _drop_shard_puts(self, topic: str, partition: int) -> Puts:
        puts: Puts = []
        for view, _, _, shard in self.shard_locations(topic, partition):
            prefix = state_prefix(view, shard)
            puts.extend((key, None) for key, _ in self._store.scan(prefix, key_range_end(prefix)))
        return puts

    def watermarks(self, owned: set[tuple[str, int]] | None) -> dict[tuple[str, int], int]:
        """``(source name, shard) -> watermark`` of every (owned) partition with progress."""
        result: dict[tuple[str, int], int] = {}
        for key, value in self._store.scan(_PROGRESS, key_range_end(_PROGRESS)):
            topic_raw, _, partition_raw = key[len(_PROGRESS) :].partition(b"\x00")
            topic, partition = topic_raw.decode(), int(partition_raw)
            source = self._sources.get(topic)
            if source is not None and (owned is None or (topic, partition) in owned):
                shard = shard_of(source, topic, partition)
                result[(source.name, shard)] = Progress.unpack(value).watermark
        return result

    def entity_records(self, view: str, source: str, entity_keys: set[bytes]) -> list[tuple[int, bytes, bytes]]:
        """``(shard, state key, record key)`` of every local record (tiles, lifetime prefixes) of
        these entities in ``view``, over every shard of ``source`` held here, owned or only cached."""
        shards = sorted({shard for (name, shard) in self.watermarks(None) if name == source})
        found: list[tuple[int, bytes, bytes]] = []
        for shard in shards:
            prefix = state_prefix(view, shard)
            for entity in sorted(entity_keys):
                start = prefix + entity
                for key, _ in self._store.scan(start, key_range_end(start)):
                    if len(key) - len(start) == _TILE_KEY_TAIL:  # exactly this entity, not a longer key
                        found.append((shard, key, key[len(prefix) :]))
        return found
