"""The stream engine's batch step, free of Faust and Kafka so it can be tested with twins.

One call to ``StreamEngine.process`` takes a micro-batch of raw records from one source topic
(any partitions) and:
1. skips records at or below the partition's applied offset (replays after a crash are no-ops);
2. decodes them; malformed ones go to the dead-letter sink with the reason and original bytes;
3. drops events later than the source's watermark delay (counted);
4. runs each view's transformation on the batch and folds the rows into tiles;
5. publishes every touched tile whole (so re-publishing after a crash is idempotent), flushes;
6. then writes the merged tiles, offsets and watermarks to the state store in one atomic batch.

Publishing before the state write is what makes crashes safe: if we die between 5 and 6, the
batch is reprocessed from the old state and yields byte-identical tile records.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from featurebus.exceptions import FeaturebusError
from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import (
    decode_partials,
    encode_partials,
    split_store_key,
    split_tile_key,
    store_key,
    store_prefix,
    tile_key,
)
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec
from featurebus.streams.records import decode_json_records
from featurebus.streams.tiles import (
    EAGER_PREFIX_START_MS,
    PREFIX_START_MS,
    CompiledView,
    TileUpdate,
    batch_tiles,
    fold_into_prefix,
    high_watermark_record,
    merge_tile,
)
from featurebus.streams.transform import Transformation, TransformationError, view_input_frame
from featurebus.streams.windows import LATEST_EVENT_TIME, lifetime_fold_cutoff, retention_ms, tile_start

__all__ = ["RawRecord", "FeatureSink", "MemorySink", "StreamEngine", "EngineCounters", "StateMissingError", "compile_views"]

log = logging.getLogger(__name__)

_I64 = struct.Struct(">q")
_PROGRESS = b"\x00progress."  # + topic + b"\x00" + partition -> applied offset, watermark


class StateMissingError(FeaturebusError):
    """Records of a partition were processed before, but this worker has no state for them."""


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class FeatureSink(Protocol):
    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None: ...

    def dead_letter(self, record: RawRecord, reason: str) -> None: ...

    def flush(self) -> None:
        """Block until everything published so far is durably acknowledged, or raise."""
        ...


@dataclass
class MemorySink:
    """In-memory twin of the Kafka sink, for unit tests."""

    records: list[tuple[str, int, bytes, bytes | None]] = field(default_factory=list)
    dead: list[tuple[RawRecord, str]] = field(default_factory=list)
    flushed: int = 0

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.records.append((topic, partition, key, value))

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        self.dead.append((record, reason))

    def flush(self) -> None:
        self.flushed = len(self.records)


@dataclass
class EngineCounters:
    processed: int = 0
    skipped_replayed: int = 0
    dead_lettered: int = 0
    dropped_late: int = 0
    tiles_written: int = 0
    tiles_expired: int = 0
    transform_failed: int = 0


@dataclass(frozen=True)
class _ViewRuntime:
    view: CompiledView
    transformation: Transformation
    feature_topic: str
    feature_partitions: int
    retention_ms: int
    watermark_delay_ms: int

    def partition_of(self, entity_key: bytes) -> int:
        # All tiles of an entity go to one feature-topic partition chosen by a stable hash, so
        # a tile's updates and its tombstone are ordered and compaction keeps the right one.
        return zlib.crc32(entity_key) % self.feature_partitions


def compile_views(spec: WorkspaceSpec) -> dict[str, CompiledView]:
    dtypes = {k.name: k.dtype for e in spec.entities for k in e.join_keys}
    return {v.name: CompiledView.compile(v, [dtypes[k] for k in v.join_keys]) for v in spec.stream_feature_views}


class StreamEngine:
    def __init__(
        self,
        spec: WorkspaceSpec,
        store: KeyValueStore,
        sink: FeatureSink,
        feature_topic_of: Callable[[str], tuple[str, int]],
        log_start_of: Callable[[str, int], int] = lambda topic, partition: 0,
    ) -> None:
        """``feature_topic_of(view_name) -> (topic, partition count)``; ``log_start_of(topic,
        partition)`` is the partition's first retained offset (a low watermark)."""
        self._log_start_of = log_start_of
        self._store = store
        self._sink = sink
        self.counters = EngineCounters()
        compiled = compile_views(spec)
        self._sources: dict[str, StreamSourceSpec] = {}
        self._views_by_topic: dict[str, list[_ViewRuntime]] = {}
        for view_spec in spec.stream_feature_views:
            if not view_spec.online:
                continue
            source = spec.source(view_spec.source)
            topic, partitions = feature_topic_of(view_spec.name)
            runtime = _ViewRuntime(
                compiled[view_spec.name],
                Transformation(view_spec.transformation),
                topic,
                partitions,
                retention_ms(view_spec.max_reach_ms, source.kafka.watermark_delay_ms, view_spec.aggregation_interval_ms),
                source.kafka.watermark_delay_ms,
            )
            for topic in source.kafka.topics:
                self._sources[topic] = source
                self._views_by_topic.setdefault(topic, []).append(runtime)

    @property
    def source_topics(self) -> list[str]:
        return sorted(self._views_by_topic)

    # -- progress bookkeeping ------------------------------------------------------------------
    def _progress(self, topic: str, partition: int) -> tuple[int, int]:
        raw = self._store.get(_progress_key(topic, partition))
        if raw is None:
            return -1, -(2**62)
        return _I64.unpack_from(raw, 0)[0], _I64.unpack_from(raw, 8)[0]

    # -- the batch step ------------------------------------------------------------------------
    def process(self, records: Sequence[RawRecord]) -> None:
        by_topic: dict[str, list[RawRecord]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        for topic, topic_records in by_topic.items():
            self._process_topic(topic, topic_records)

    def _process_topic(self, topic: str, records: list[RawRecord]) -> None:
        source = self._sources.get(topic)
        if source is None:
            return
        progress = {p: self._progress(topic, p) for p in {r.partition for r in records}}
        self._refuse_foreign_partitions(topic, records, progress)
        fresh = [r for r in records if r.offset > progress[r.partition][0]]
        self.counters.skipped_replayed += len(records) - len(fresh)
        if not fresh:
            return
        decoded = decode_json_records([r.value for r in fresh], source.schema, source.kafka.timestamp_field)
        for position, reason in decoded.rejected:
            self._sink.dead_letter(fresh[position], reason)
        self.counters.dead_lettered += len(decoded.rejected)

        # Event-time watermark per partition: the newest event time seen so far. An event older
        # than watermark - delay (judged against the watermark *before* it) is dropped as late.
        frame = decoded.frame
        accepted = [fresh[i] for i in decoded.accepted_indexes]
        ts_ms = frame[source.kafka.timestamp_field].dt.as_unit("ms").astype("int64").to_numpy() if len(frame) else np.zeros(0, np.int64)
        partitions = np.array([r.partition for r in accepted], dtype=np.int64)
        keep = np.ones(len(accepted), dtype=bool)
        new_progress: dict[int, tuple[int, int]] = {}
        for partition, (_, watermark) in progress.items():
            mask = partitions == partition
            part_ts = ts_ms[mask]
            seen_before = np.maximum.accumulate(np.concatenate(([watermark], part_ts)))[:-1]
            keep[mask] = part_ts >= seen_before - source.kafka.watermark_delay_ms
            last_offset = max(r.offset for r in fresh if r.partition == partition)
            new_watermark = int(max(watermark, part_ts.max())) if len(part_ts) else watermark
            new_progress[partition] = (last_offset, new_watermark)
        self.counters.dropped_late += int((~keep).sum())
        frame = frame.loc[keep].reset_index(drop=True)

        puts: list[tuple[bytes, bytes | None]] = []
        for runtime in self._views_by_topic[topic]:
            puts.extend(self._fold_view(runtime, frame))
            if runtime.view.spec.aggregation_leading_edge == LATEST_EVENT_TIME:
                self._publish_high_watermarks(runtime, topic, {p: w for p, (_, w) in new_progress.items()})
        self._sink.flush()
        for partition, (offset, watermark) in new_progress.items():
            puts.append((_progress_key(topic, partition), _I64.pack(offset) + _I64.pack(watermark)))
        self._store.write(puts)
        self.counters.processed += len(fresh)

    def _refuse_foreign_partitions(self, topic: str, records: Sequence[RawRecord],
                                   progress: dict[int, tuple[int, int]]) -> None:
        """Folding events into empty tiles for a partition whose earlier records were processed
        elsewhere (another worker, or a lost state directory) would publish wrong values over
        right ones. Until state can be recovered from the bus, refuse loudly instead."""
        for partition, (applied, _) in progress.items():
            if applied >= 0:
                continue
            first = min(r.offset for r in records if r.partition == partition)
            log_start = self._log_start_of(topic, partition)
            if first > log_start:
                raise StateMissingError(
                    f"{topic}[{partition}] was processed up to offset {first} before, but this worker has no "
                    "state for it (a second worker for the workspace, or a lost state directory). Run one "
                    "worker per workspace and keep its state directory; recovering state from the feature "
                    "topics is not supported yet."
                )

    def _fold_view(self, runtime: _ViewRuntime, frame: Any) -> list[tuple[bytes, bytes | None]]:
        view = runtime.view
        name = view.spec.name
        if len(frame) == 0:
            return []
        try:
            rows, ts_ms = view_input_frame(view.spec, runtime.transformation.apply(frame))
        except TransformationError as exc:
            # A transformation bug must not wedge the pipeline: log it, count the rows, go on.
            log.error("%s", exc)
            self.counters.transform_failed += len(frame)
            return []
        updates = batch_tiles(view, rows, ts_ms)
        keys = [store_key(name, tile_key(u.entity_key, u.tile_start_ms)) for u in updates]
        puts: list[tuple[bytes, bytes | None]] = []
        for update, key, old in zip(updates, keys, self._store.get_many(keys), strict=False):
            merged = merge_tile(view, None if old is None else decode_partials(old), update.partials)
            value = encode_partials(merged)
            record_key = tile_key(update.entity_key, update.tile_start_ms)
            self._sink.publish(runtime.feature_topic, runtime.partition_of(update.entity_key), record_key, value)
            puts.append((key, value))
        self.counters.tiles_written += len(updates)
        return puts + self._grow_eager_prefixes(runtime, updates)

    def _publish_high_watermarks(self, runtime: _ViewRuntime, topic: str, watermarks: dict[int, int]) -> None:
        """Tell serving the view's stream high watermark (AggregationLeadingEdge.LATEST_EVENT_TIME)."""
        for partition, watermark in watermarks.items():
            key, value = high_watermark_record(topic, partition, watermark)
            self._sink.publish(runtime.feature_topic, runtime.partition_of(key), key, value)

    def expire(self) -> int:
        """Delete (and tombstone) tiles no window can reach any more; returns how many.

        Views with a lifetime window first fold every final tile (see ``lifetime_fold_cutoff``)
        into the entity's lifetime prefix, so lifetime values survive the tiles' deletion.
        """
        expired = 0
        watermarks = self._watermarks()
        for topic, runtimes in self._views_by_topic.items():
            watermark = watermarks.get(topic)
            if watermark is None:
                continue
            for runtime in runtimes:
                puts = self._expire_view(runtime, watermark)
                if puts:
                    self._sink.flush()
                    self._store.write(puts)
                    expired += sum(1 for _, value in puts if value is None)
        self.counters.tiles_expired += expired
        return expired

    def _expire_view(self, runtime: _ViewRuntime, watermark: int) -> list[tuple[bytes, bytes | None]]:
        spec = runtime.view.spec
        cutoff = watermark - runtime.retention_ms
        lifetime = spec.has_lifetime and spec.lifetime_start_ms is not None
        prefix = store_prefix(spec.name)
        puts: list[tuple[bytes, bytes | None]] = []
        entity: bytes | None = None
        tiles: list[tuple[int, bytes, bytes, bytes]] = []  # (start, store key, tile key, value)
        for key, value in self._store.scan(prefix, prefix + b"\xff"):
            _, tkey = split_store_key(key)
            entity_key, start = split_tile_key(tkey)
            if entity_key != entity:
                if entity is not None:
                    self._expire_entity(runtime, entity, tiles, watermark, cutoff, lifetime, puts)
                entity, tiles = entity_key, []
            tiles.append((start, key, tkey, value))
        if entity is not None:
            self._expire_entity(runtime, entity, tiles, watermark, cutoff, lifetime, puts)
        return puts

    def _expire_entity(self, runtime: _ViewRuntime, entity: bytes, tiles: list[tuple[int, bytes, bytes, bytes]],
                       watermark: int, cutoff: int, lifetime: bool, puts: list[tuple[bytes, bytes | None]]) -> None:
        """One entity's expiry: grow its lifetime prefixes first (see ``tiles.PREFIX_START_MS``),
        then tombstone the tiles no window can reach. Publishing the prefixes before the
        tombstones (same partition, so in this order) means a reader never misses the events of a
        deleted tile; one that still sees such tiles ignores them, as they start before the
        prefix's ``covered_until``."""
        spec = runtime.view.spec
        if lifetime:
            assert spec.lifetime_start_ms is not None
            stored = {start: value for start, _, _, value in tiles if start in (PREFIX_START_MS, EAGER_PREFIX_START_MS)}
            final = None if PREFIX_START_MS not in stored else decode_partials(stored[PREFIX_START_MS])
            fold_before = lifetime_fold_cutoff(watermark, runtime.watermark_delay_ms, spec.tile_ms)
            eager_before = max(fold_before, tile_start(watermark, spec.tile_ms))
            covered = max(spec.lifetime_start_ms, _covered(final))
            final_tiles = [decode_partials(v) for s, _, _, v in tiles if covered <= s < fold_before]
            if final_tiles:
                final = fold_into_prefix(runtime.view, final, final_tiles, fold_before)
                self._put_tile(runtime, entity, PREFIX_START_MS, final, puts)
            # The eager prefix grows from where it ended (the engine merged later events of its
            # tiles into it as they came), so each pass decodes only the tiles it newly covers;
            # it restarts from the final prefix if that overtook it (a watermark jump).
            base = final
            old_eager = stored.get(EAGER_PREFIX_START_MS)
            if old_eager is not None and _covered(decode_partials(old_eager)) >= _covered(final):
                base = decode_partials(old_eager)
                eager_before = max(eager_before, _covered(base))
            covered = max(spec.lifetime_start_ms, _covered(base))
            eager_tiles = [decode_partials(v) for s, _, _, v in tiles if covered <= s < eager_before]
            eager = fold_into_prefix(runtime.view, base, eager_tiles, eager_before)
            if (base is not None or eager_tiles) and encode_partials(eager) != old_eager:
                self._put_tile(runtime, entity, EAGER_PREFIX_START_MS, eager, puts)
        for start, key, tkey, _ in tiles:
            if start not in (PREFIX_START_MS, EAGER_PREFIX_START_MS) and start + spec.tile_ms <= cutoff:
                self._sink.publish(runtime.feature_topic, runtime.partition_of(entity), tkey, None)
                puts.append((key, None))

    def _put_tile(self, runtime: _ViewRuntime, entity: bytes, start: int, partials: list[Any],
                  puts: list[tuple[bytes, bytes | None]]) -> None:
        key, value = tile_key(entity, start), encode_partials(partials)
        self._sink.publish(runtime.feature_topic, runtime.partition_of(entity), key, value)
        puts.append((store_key(runtime.view.spec.name, key), value))

    def _grow_eager_prefixes(self, runtime: _ViewRuntime, updates: list[TileUpdate]) -> list[tuple[bytes, bytes | None]]:
        """Events for tiles an entity's eager lifetime prefix already covers (late, or from a
        partition behind the others) go into that prefix too, so it stays exact between expiries."""
        spec = runtime.view.spec
        if not spec.has_lifetime or spec.lifetime_start_ms is None:
            return []
        lifetime_start = spec.lifetime_start_ms
        entities = sorted({u.entity_key for u in updates if u.tile_start_ms >= lifetime_start})
        keys = [store_key(spec.name, tile_key(e, EAGER_PREFIX_START_MS)) for e in entities]
        prefixes = {e: decode_partials(raw) for e, raw in zip(entities, self._store.get_many(keys), strict=True)
                    if raw is not None}
        grown: set[bytes] = set()
        for update in updates:
            prefix = prefixes.get(update.entity_key)
            if prefix is not None and lifetime_start <= update.tile_start_ms < prefix[-1]:
                prefixes[update.entity_key] = fold_into_prefix(runtime.view, prefix, [update.partials], prefix[-1])
                grown.add(update.entity_key)
        puts: list[tuple[bytes, bytes | None]] = []
        for entity in sorted(grown):
            self._put_tile(runtime, entity, EAGER_PREFIX_START_MS, prefixes[entity], puts)
        return puts

    def _watermarks(self) -> dict[str, int]:
        """Per source topic, the lowest partition watermark (the most conservative cutoff)."""
        result: dict[str, int] = {}
        for key, value in self._store.scan(_PROGRESS, _PROGRESS + b"\xff"):
            topic = key[len(_PROGRESS) :].split(b"\x00")[0].decode()
            watermark = _I64.unpack_from(value, 8)[0]
            result[topic] = min(result.get(topic, watermark), watermark)
        return result


def _covered(lifetime_prefix: list[Any] | None) -> int:
    """Where an entity's lifetime prefix ends (its trailing element), or the minimum if none."""
    return PREFIX_START_MS if lifetime_prefix is None else int(lifetime_prefix[-1])


def _progress_key(topic: str, partition: int) -> bytes:
    return _PROGRESS + topic.encode() + b"\x00" + str(partition).encode()
