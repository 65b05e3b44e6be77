"""The stream engine's batch step, free of Kafka so it can be tested with in-memory twins.

One call to ``StreamEngine.process`` takes a micro-batch of raw records (any topics and
partitions) and:
1. skips records at or below the partition's applied offset (replays are no-ops);
2. decodes them; malformed ones go to the dead-letter sink with the reason and original bytes;
3. drops events later than the source's watermark delay (counted);
4. runs each view's transformation on the batch (once where every output row can be traced to
   its source partition, ``streams.sharded``; else per partition) and folds each row into its
   partition's *shard* of the tiles (a tile's shards are merged by readers);
5. publishes every touched shard tile whole (a lifetime view's changed eager prefixes of the
   shard first, and a LATEST_EVENT_TIME view's moved shard high watermarks: ``streams.lifetime``), then ``sink.commit``s the batch together with the
   partitions' next offsets and watermarks (with Kafka: one transaction holding the tiles, the
   dead letters and the consumer offsets, so the effects of a batch are visible exactly once);
6. only then writes the merged tiles and the progress to the local state store, atomically.

The local store is a cache of what the bus already holds: a crash between 5 and 6 leaves the
local progress behind the committed offsets, and the owner then restores the partition's shard
from its feature-topic partition (``replace_shard``) instead of trusting the cache.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import (
    decode_partials,
    encode_partials,
    split_tile_key,
    store_prefix,
    tile_key,
)
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec
from featurebus.streams.isolation import isolate_failures
from featurebus.streams.lifetime import (
    EAGER_PREFIX_START_MS,
    high_watermark_key,
    high_watermark_record,
    high_watermark_shard,
)
from featurebus.streams.prefixes import expire_shard_entity, grow_eager_prefix
from featurebus.streams.records import decode_records, join_key_fields
from featurebus.streams.runtime.expiry import EntityGroup, key_range_end, read_slice
from featurebus.streams.sharded import SHARD_COLUMN, trace_shards
from featurebus.streams.tiles import CompiledView, TileColumns, merge_tile, tile_columns
from featurebus.streams.transform import Transformation, TransformationError, event_time_ms, view_input_frame
from featurebus.streams.windows import LATEST_EVENT_TIME, retention_ms

__all__ = ["RawRecord", "FeatureSink", "MemorySink", "Progress", "StreamEngine", "EngineCounters", "ExpiryStep", "compile_views", "shard_of"]

log = logging.getLogger(__name__)

_I64 = struct.Struct(">q")
_U16 = struct.Struct(">H")
_PROGRESS = b"\x00progress."  # + topic + b"\x00" + partition -> applied offset, watermark
NO_WATERMARK = -(2**62)
_PARTITION, _OFFSET, _VALUE = itemgetter(1), itemgetter(2), itemgetter(3)  # of a RawRecord
EXPIRY_SLICE_RECORDS = 2_000  # stored records one expiry step reads: a few ms, not a pause
MAX_PARTITIONS_PER_TOPIC = 1024  # shard = topic index * 1024 + partition fits the u16 of a tile key


@dataclass(frozen=True)
class Progress:
    """How far a source partition has been applied: the last offset and the event-time watermark."""

    offset: int = -1
    watermark: int = NO_WATERMARK

    def pack(self) -> bytes:
        return _I64.pack(self.offset) + _I64.pack(self.watermark)

    @classmethod
    def unpack(cls, raw: bytes) -> Progress:
        return cls(_I64.unpack_from(raw, 0)[0], _I64.unpack_from(raw, 8)[0])


def shard_of(source: StreamSourceSpec, topic: str, partition: int) -> int:
    """The tile shard of a source partition: stable, unique within the source."""
    if partition >= MAX_PARTITIONS_PER_TOPIC:
        raise ValueError(f"{topic} has more than {MAX_PARTITIONS_PER_TOPIC} partitions")
    return source.kafka.topics.index(topic) * MAX_PARTITIONS_PER_TOPIC + partition


class RawRecord(NamedTuple):
    """One consumed record (a tuple: the worker builds one per event, so it must be cheap)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


class FeatureSink(Protocol):
    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None: ...

    def dead_letter(self, record: RawRecord, reason: str) -> None: ...

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        """Make everything published since the last commit durable and visible, together with
        the source partitions' progress (atomically, where the backend can), or raise."""
        ...


@dataclass
class MemorySink:
    """In-memory twin of the Kafka sink, for unit tests."""

    records: list[tuple[str, int, bytes, bytes | None]] = field(default_factory=list)
    dead: list[tuple[RawRecord, str]] = field(default_factory=list)
    committed: dict[tuple[str, int], Progress] = field(default_factory=dict)
    flushed: int = 0

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.records.append((topic, partition, key, value))

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        self.dead.append((record, reason))

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        self.flushed = len(self.records)
        self.committed.update(progress)


class ExpiryStep(NamedTuple):
    expired: int  # tiles deleted by this step
    records: int  # stored records it read
    finished: bool  # the pass reached the end of every view's state


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

    def partition_of(self, shard: int) -> int:
        # A shard's tiles all go to one feature-topic partition: a tile's updates and its
        # tombstone stay ordered (compaction keeps the right one), and a new owner of the
        # source partition restores the shard by reading that one partition.
        return shard % self.feature_partitions


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
    ) -> None:
        """``feature_topic_of(view_name) -> (topic, partition count)``."""
        self._store = store
        self._sink = sink
        self.counters = EngineCounters()
        compiled = compile_views(spec)
        self._sources: dict[str, StreamSourceSpec] = {}
        self._key_fields: dict[str, tuple[str, ...]] = {}  # per source topic: join keys every record needs
        self._views_by_topic: dict[str, list[_ViewRuntime]] = {}
        self._expiry_views: list[_ViewRuntime] = []  # every online view once, in a fixed order
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
                self._key_fields[topic] = join_key_fields(spec, source)
                self._views_by_topic.setdefault(topic, []).append(runtime)
            self._expiry_views.append(runtime)
        self._expiry_cursor: tuple[int, bytes | None] | None = None  # (view index, resume key) of a pass

    @property
    def source_topics(self) -> list[str]:
        return sorted(self._views_by_topic)

    def progress(self, topic: str, partition: int) -> Progress:
        raw = self._store.get(_progress_key(topic, partition))
        return Progress() if raw is None else Progress.unpack(raw)

    def shard_locations(self, topic: str, partition: int) -> list[tuple[str, str, int, int]]:
        """``(view, feature topic, feature partition, shard)`` holding this partition's tiles."""
        source = self._sources.get(topic)
        if source is None:
            return []
        shard = shard_of(source, topic, partition)
        return [(r.view.spec.name, r.feature_topic, r.partition_of(shard), shard) for r in self._views_by_topic[topic]]

    # -- the batch step ------------------------------------------------------------------------
    def process(self, records: Sequence[RawRecord]) -> None:
        """Apply a micro-batch: publish its tiles, commit them with the offsets, then cache them."""
        by_topic: dict[str, list[RawRecord]] = {}
        for record in records:
            if record.topic in self._sources:
                by_topic.setdefault(record.topic, []).append(record)
        puts: list[tuple[bytes, bytes | None]] = []
        committed: dict[tuple[str, int], Progress] = {}
        for topic, topic_records in by_topic.items():
            topic_progress = self._process_topic(topic, topic_records, puts)
            committed.update({(topic, partition): p for partition, p in topic_progress.items()})
        if not committed:
            return
        self._sink.commit(committed)
        for (topic, partition), progress in committed.items():
            puts.append((_progress_key(topic, partition), progress.pack()))
        self._store.write(puts)

    def _process_topic(self, topic: str, records: list[RawRecord], puts: list[tuple[bytes, bytes | None]]) -> dict[int, Progress]:
        source = self._sources[topic]
        # Per-record attributes as arrays at C speed (this runs for every event).
        record_partitions = np.array(list(map(_PARTITION, records)), dtype=np.int64)
        record_offsets = np.array(list(map(_OFFSET, records)), dtype=np.int64)
        applied = {p: self.progress(topic, p) for p in np.unique(record_partitions).tolist()}
        is_fresh = np.zeros(len(records), dtype=bool)
        for partition, done in applied.items():
            is_fresh |= (record_partitions == partition) & (record_offsets > done.offset)
        fresh = records if is_fresh.all() else [records[i] for i in np.flatnonzero(is_fresh).tolist()]
        fresh_partitions, fresh_offsets = record_partitions[is_fresh], record_offsets[is_fresh]
        self.counters.skipped_replayed += len(records) - len(fresh)
        if not fresh:
            return {}
        decoded = decode_records(list(map(_VALUE, fresh)), source, self._key_fields[topic])
        for position, reason in decoded.rejected:
            self._sink.dead_letter(fresh[position], reason)
        self.counters.dead_lettered += len(decoded.rejected)

        # Event-time watermark per partition: the newest event time seen so far. An event older
        # than watermark - delay (judged against the watermark *before* it) is dropped as late.
        frame = decoded.frame
        ts_ms = event_time_ms(frame[source.kafka.timestamp_field]) if len(frame) else np.zeros(0, np.int64)
        partitions = fresh_partitions[np.array(decoded.accepted_indexes, dtype=np.int64)]
        keep = np.ones(len(partitions), dtype=bool)
        new_progress: dict[int, Progress] = {}
        for partition in np.unique(fresh_partitions).tolist():
            watermark = applied[partition].watermark
            mask = partitions == partition
            part_ts = ts_ms[mask]
            seen_before = np.maximum.accumulate(np.concatenate(([watermark], part_ts)))[:-1]
            keep[mask] = part_ts >= seen_before - source.kafka.watermark_delay_ms
            last_offset = int(fresh_offsets[fresh_partitions == partition].max())
            new_watermark = int(max(watermark, part_ts.max())) if len(part_ts) else watermark
            new_progress[partition] = Progress(last_offset, new_watermark)
        self.counters.dropped_late += int((~keep).sum())
        origins = np.array(decoded.accepted_indexes, dtype=np.int64)  # each frame row's record in ``fresh``
        if not keep.all():  # usually nothing is late: no copy of the batch then
            frame, partitions, origins = frame.loc[keep].reset_index(drop=True), partitions[keep], origins[keep]

        # Every output row of a transformation must be known to belong to one shard (a
        # transformation may filter, reorder or reshape its rows): ``_transform``.
        shards = np.array([shard_of(source, topic, p) for p in range(int(partitions.max()) + 1)],
                          dtype=np.int64)[partitions] if len(partitions) else partitions
        for runtime in self._views_by_topic[topic]:
            puts.extend(self._fold_view(runtime, frame, shards, fresh, origins))
        for runtime in self._views_by_topic[topic]:
            if runtime.view.spec.aggregation_leading_edge == LATEST_EVENT_TIME:
                puts.extend(self._publish_high_watermarks(runtime, source, topic, new_progress))
        self.counters.processed += len(fresh)
        return new_progress

    def _transform(self, runtime: _ViewRuntime, frame: pd.DataFrame, shards: np.ndarray) -> list[tuple[pd.DataFrame, np.ndarray]]:
        """The view's transformed rows with the shard of each row: one run over the
        whole batch where every row can be traced to its shard (``streams.sharded``), else one run
        per shard. Raises ``TransformationError`` when a run fails (``_fold_view`` isolates the
        records that make it fail)."""
        distinct = np.unique(shards).tolist()
        if len(distinct) > 1 and runtime.view.spec.transformation.mode == "pandas":
            try:
                whole = runtime.transformation.apply(frame)
            except TransformationError:
                whole = None  # perhaps only some shard's rows break it: try them one by one
            traced = None if whole is None else trace_shards(frame, whole, shards, runtime.view.spec.join_keys)
            if whole is not None and traced is not None:
                return [(whole, traced)]
        pieces = []
        for shard in distinct:
            piece = frame if len(distinct) == 1 else frame.loc[shards == shard].reset_index(drop=True)
            transformed = runtime.transformation.apply(piece)
            pieces.append((transformed, np.full(len(transformed), shard, dtype=np.int64)))
        return pieces

    def _fold_view(self, runtime: _ViewRuntime, frame: pd.DataFrame, shards: np.ndarray,
                   records: Sequence[RawRecord], origins: np.ndarray) -> list[tuple[bytes, bytes | None]]:
        """Transform and tile the batch for one view, and fold the tiles. A record whose
        transformation or tiling raises is dead-lettered with the reason (row i's record is
        ``records[origins[i]]``), found by bisecting the batch (``streams.isolation``): never the
        batch or the process. (A pandas transformation is thereby re-run on parts of the batch:
        a row-wise one gives the same rows; one that relates rows sees smaller batches, as it
        already does when the batch spans several shards.)"""
        view = runtime.view

        def tile_updates(rows: np.ndarray | None) -> list[TileColumns]:
            part, part_shards = (frame, shards) if rows is None else (frame.iloc[rows].reset_index(drop=True), shards[rows])
            updates = []
            for transformed, row_shards in self._transform(runtime, part, part_shards):
                view_rows, ts_ms = view_input_frame(view.spec, transformed, extra_columns={SHARD_COLUMN: row_shards})
                updates.append(tile_columns(view, view_rows, ts_ms, view_rows[SHARD_COLUMN].to_numpy()))
            return updates

        all_updates, failures = isolate_failures(len(frame), tile_updates)
        for row, reason in failures:
            self._sink.dead_letter(records[int(origins[row])], f"feature view {view.spec.name!r}: {reason}")
        if failures:
            log.error("feature view %r: %d records dead-lettered (first: %s)", view.spec.name, len(failures), failures[0][1])
            self.counters.dead_lettered += len(failures)
            self.counters.transform_failed += len(failures)
        puts: list[tuple[bytes, bytes | None]] = []
        for updates in all_updates or []:
            # Lifetime prefixes go first: a reader seeing a prefix before the tiles it covers ignores
            # their older versions; the other order could briefly miss a late event (streams/lifetime.py).
            if view.has_lifetime:
                puts.extend(self._grow_eager_prefixes(runtime, updates))
            puts.extend(self._merge_tiles(runtime, updates))
        return puts

    def _merge_tiles(self, runtime: _ViewRuntime, updates: TileColumns) -> list[tuple[bytes, bytes | None]]:
        """Merge a batch's updates into the stored tiles and publish the merged tiles whole."""
        view, topic, publish = runtime.view, runtime.feature_topic, self._sink.publish
        prefixes = {shard: _state_prefix(view.spec.name, shard) for shard in set(updates.shards)}
        partitions = {shard: runtime.partition_of(shard) for shard in prefixes}
        tile_keys = [tile_key(*key) for key in zip(updates.entity_keys, updates.starts, updates.shards, strict=True)]
        state_keys = [prefixes[shard] + key for shard, key in zip(updates.shards, tile_keys, strict=True)]
        puts: list[tuple[bytes, bytes | None]] = []
        for shard, partials, record_key, key, old in zip(updates.shards, updates.partials, tile_keys, state_keys,
                                                          self._store.get_many(state_keys), strict=True):
            value = encode_partials(partials if old is None else merge_tile(view, decode_partials(old), partials))
            publish(topic, partitions[shard], record_key, value)
            puts.append((key, value))
        self.counters.tiles_written += len(tile_keys)
        return puts

    def _grow_eager_prefixes(self, runtime: _ViewRuntime, updates: TileColumns) -> list[tuple[bytes, bytes | None]]:
        """Publish the eager lifetime prefixes this batch changes, per shard (``grow_eager_prefix``)."""
        by_entity: dict[tuple[int, bytes], list[tuple[int, list[Any]]]] = {}
        for entity, start, shard, partials in zip(*updates, strict=True):
            by_entity.setdefault((shard, entity), []).append((start, list(partials)))
        groups = sorted(by_entity)
        state_keys, keys = [], []
        for shard, entity in groups:
            keys.append(tile_key(entity, EAGER_PREFIX_START_MS, shard))
            state_keys.append(_state_prefix(runtime.view.spec.name, shard) + keys[-1])
        puts: list[tuple[bytes, bytes | None]] = []
        for (shard, entity), key, state_key, old in zip(groups, keys, state_keys, self._store.get_many(state_keys), strict=True):
            grown = grow_eager_prefix(runtime.view, None if old is None else decode_partials(old), by_entity[(shard, entity)])
            if grown is not None:
                value = encode_partials(grown)
                self._sink.publish(runtime.feature_topic, runtime.partition_of(shard), key, value)
                puts.append((state_key, value))
        return puts

    def _publish_high_watermarks(self, runtime: _ViewRuntime, source: StreamSourceSpec, topic: str,
                                 progress: dict[int, Progress]) -> list[tuple[bytes, bytes | None]]:
        """Tell serving each shard's stream high watermark (AggregationLeadingEdge.LATEST_EVENT_TIME),
        when it moved; cached like tiles, so a restored shard has it too."""
        puts: list[tuple[bytes, bytes | None]] = []
        items = sorted((shard_of(source, topic, partition), done.watermark) for partition, done in progress.items())
        state_keys = [_state_prefix(runtime.view.spec.name, shard) + high_watermark_key(shard) for shard, _ in items]
        for (shard, watermark), state_key, old in zip(items, state_keys, self._store.get_many(state_keys), strict=True):
            key, value = high_watermark_record(shard, watermark)
            if watermark != NO_WATERMARK and value != old:
                self._sink.publish(runtime.feature_topic, runtime.partition_of(shard), key, value)
                puts.append((state_key, value))
        return puts

    # -- ownership of partitions ----------------------------------------------------------------
    def replace_shard(self, topic: str, partition: int, tiles: dict[str, dict[bytes, bytes]], progress: Progress) -> int:
        """Replace the local state of a source partition by what the bus holds.

        ``tiles`` maps a view name to the latest records of its feature-topic partition (any
        shards: only this partition's shard is kept); ``progress`` is the committed position.
        Returns how many tiles were restored.
        """
        puts = self._drop_shard_puts(topic, partition)
        shard = shard_of(self._sources[topic], topic, partition)
        restored = 0
        for view, shard_partition_records in tiles.items():
            prefix = _state_prefix(view, shard)
            for key, value in shard_partition_records.items():
                # Tiles, lifetime prefixes (tile keys too) and high watermarks carry their shard.
                mark = high_watermark_shard(key)
                if (split_tile_key(key)[2] if mark is None else mark) == shard:
                    puts.append((prefix + key, value))
                    restored += 1
        puts.append((_progress_key(topic, partition), progress.pack()))
        self._store.write(_last_write_wins(puts))
        return restored

    def view_shard(self, view: str, shard: int) -> dict[bytes, bytes]:
        """One view's records of one shard (tiles, lifetime prefixes, high watermarks), by record key."""
        prefix = _state_prefix(view, shard)
        return {key[len(prefix):]: value for key, value in self._store.scan(prefix, _prefix_end(prefix))}

    def replace_view_shards(self, topic: str, partition: int, records: dict[str, dict[bytes, bytes]], progress: Progress) -> None:
        """Replace some views' state of a source partition's shard (``records``: view -> record
        key -> value, as ``view_shard`` returns them) and set its progress, atomically."""
        shard = shard_of(self._sources[topic], topic, partition)
        puts: list[tuple[bytes, bytes | None]] = []
        for view, view_records in records.items():
            prefix = _state_prefix(view, shard)
            puts.extend((key, None) for key, _ in self._store.scan(prefix, _prefix_end(prefix)))
            puts.extend((prefix + key, value) for key, value in view_records.items())
        puts.append((_progress_key(topic, partition), progress.pack()))
        self._store.write(_last_write_wins(puts))

    def set_progress(self, topic: str, partition: int, progress: Progress) -> None:
        self._store.write([(_progress_key(topic, partition), progress.pack())])

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's local state (it belongs to no committed history any more)."""
        if topic in self._sources:
            self._store.write([*self._drop_shard_puts(topic, partition), (_progress_key(topic, partition), None)])

    def _drop_shard_puts(self, topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
        puts: list[tuple[bytes, bytes | None]] = []
        for view, _, _, shard in self.shard_locations(topic, partition):
            prefix = _state_prefix(view, shard)
            puts.extend((key, None) for key, _ in self._store.scan(prefix, _prefix_end(prefix)))
        return puts

    # -- expiry --------------------------------------------------------------------------------
    def expire(self, owned: set[tuple[str, int]] | None = None) -> int:
        """A whole expiry pass at once (from the start, in one commit); returns how many tiles it
        deleted. The worker uses ``expire_step`` instead, which bounds the pause."""
        self._expiry_cursor = None
        return self.expire_step(owned, max_records=None).expired

    @property
    def expiry_pending(self) -> bool:
        """A pass of ``expire_step`` is under way (started, not yet at the end of the state)."""
        return self._expiry_cursor is not None

    def expire_step(self, owned: set[tuple[str, int]] | None = None,
                    max_records: int | None = EXPIRY_SLICE_RECORDS) -> ExpiryStep:
        """Delete (and tombstone) tiles no window can reach any more, in the next slice of about
        ``max_records`` stored records (None: all of them) of an expiry pass; starts a pass if
        none is under way.

        Only the shards of ``owned`` source partitions (default: all with local progress) are
        touched: the local store may still cache shards that another worker now owns. Each shard
        is judged by its own watermark (as of this slice). Views with a lifetime window first fold
        every final tile into the (entity, shard)'s lifetime prefix
        (``streams.prefixes.expire_shard_entity``), so lifetime values survive the tiles'
        deletion. A slice's prefixes and tombstones are committed (one transaction) before its
        local delete; the pass moves on only once both are done, so a failed slice is redone.
        """
        watermarks = self._shard_watermarks(owned)
        view_index, resume = self._expiry_cursor or (0, None)
        puts: list[tuple[bytes, bytes | None]] = []
        read = 0
        while view_index < len(self._expiry_views):
            runtime = self._expiry_views[view_index]
            budget = None if max_records is None else max(1, max_records - read)
            part = read_slice(self._store, store_prefix(runtime.view.spec.name), resume, budget)
            for group in part.groups:
                self._expire_group(runtime, group, watermarks, puts)
            read += part.records
            if part.resume is not None:
                resume = part.resume
                break
            view_index, resume = view_index + 1, None
            if max_records is not None and read >= max_records:
                break
        expired = sum(1 for _, value in puts if value is None)
        if puts:
            self._sink.commit({})
            self._store.write(puts)
        self.counters.tiles_expired += expired
        finished = view_index >= len(self._expiry_views)
        self._expiry_cursor = None if finished else (view_index, resume)
        return ExpiryStep(expired, read, finished)

    def _expire_group(self, runtime: _ViewRuntime, group: EntityGroup, watermarks: dict[tuple[str, int], int],
                      puts: list[tuple[bytes, bytes | None]]) -> None:
        shard, entity = group.shard, group.entity
        watermark = watermarks.get((runtime.view.spec.source, shard))
        if watermark is None:
            return
        plan = expire_shard_entity(runtime.view, group.records, watermark, runtime.watermark_delay_ms, runtime.retention_ms)
        state_prefix = _state_prefix(runtime.view.spec.name, shard)
        partition = runtime.partition_of(shard)
        for start, partials in plan.prefixes:  # prefixes before tombstones: see expire_shard_entity
            key, value = tile_key(entity, start, shard), encode_partials(partials)
            self._sink.publish(runtime.feature_topic, partition, key, value)
            puts.append((state_prefix + key, value))
        for start in plan.expired:
            key = tile_key(entity, start, shard)
            self._sink.publish(runtime.feature_topic, partition, key, None)
            puts.append((state_prefix + key, None))

    def _shard_watermarks(self, owned: set[tuple[str, int]] | None) -> dict[tuple[str, int], int]:
        """``(source name, shard) -> watermark`` of every (owned) partition with progress."""
        result: dict[tuple[str, int], int] = {}
        for key, value in self._store.scan(_PROGRESS, _prefix_end(_PROGRESS)):
            topic_raw, _, partition_raw = key[len(_PROGRESS) :].partition(b"\x00")
            topic, partition = topic_raw.decode(), int(partition_raw)
            source = self._sources.get(topic)
            if source is not None and (owned is None or (topic, partition) in owned):
                shard = shard_of(source, topic, partition)
                result[(source.name, shard)] = Progress.unpack(value).watermark
        return result


def _progress_key(topic: str, partition: int) -> bytes:
    return _PROGRESS + topic.encode() + b"\x00" + str(partition).encode()


def _state_prefix(view: str, shard: int) -> bytes:
    """Local state keys are ``view | shard | tile key``: a shard is one key range (moves, restores)."""
    return store_prefix(view) + _U16.pack(shard)


def _prefix_end(prefix: bytes) -> bytes:
    return key_range_end(prefix)


def _last_write_wins(puts: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    return list(dict(puts).items())
