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
   shard first, and a latest-event-time view's moved shard high watermarks: ``streams.lifetime``), then ``sink.commit``s the batch together with the
   partitions' next offsets and watermarks (with Kafka: one transaction holding the tiles, the
   dead letters and the consumer offsets, so the effects of a batch are visible exactly once);
6. only then writes the merged tiles and the progress to the local state store, atomically.

The local store is a cache of what the bus already holds: a crash between 5 and 6 leaves the
local progress behind the committed offsets, and the owner then restores the partition's shard
from its feature-topic partition (``replace_shard``) instead of trusting the cache.

The key layout of shards and progress lives in ``shard_state.py``; expiry passes in ``expiry.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
from prometheus_client import Counter

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import decode_partials, encode_partials, tile_key
from featurebus.schemas.kinds import AggregationLeadingEdge
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec
from featurebus.streams.arrival import FUTURE_TOLERANCE_MS, judge_partition
from featurebus.streams.cutover import stream_mask
from featurebus.streams.isolation import isolate_failures
from featurebus.streams.lifetime import EAGER_PREFIX_START_MS, high_watermark_key, high_watermark_record
from featurebus.streams.prefixes import grow_eager_prefix
from featurebus.streams.records import decode_records, join_key_fields
from featurebus.streams.runtime.expiry import EXPIRY_SLICE_RECORDS, ExpiryPass, ExpiryStep
from featurebus.streams.runtime.shard_state import (
    NO_WATERMARK,
    Progress,
    ShardState,
    ViewRuntime,
    progress_key,
    shard_of,
    state_prefix,
)
from featurebus.streams.sharded import SHARD_COLUMN, trace_shards
from featurebus.streams.tiles import CompiledView, TileColumns, merge_tile, tile_columns
from featurebus.streams.transform import Transformation, TransformationError, event_time_ms, view_input_frame
from featurebus.streams.windows import retention_ms

__all__ = [
    "NO_WATERMARK",
    "RawRecord",
    "FeatureSink",
    "MemorySink",
    "Progress",
    "StreamEngine",
    "EngineCounters",
    "ExpiryStep",
    "compile_views",
    "shard_of",
]

log = logging.getLogger(__name__)

_PARTITION, _OFFSET, _VALUE, _TIMESTAMP = itemgetter(1), itemgetter(2), itemgetter(3), itemgetter(4)  # of a RawRecord


class RawRecord(NamedTuple):
    """One consumed record (a tuple: the worker builds one per event, so it must be cheap)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None  # the record's Kafka timestamp (None: none; the wall clock stands in)


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


@dataclass
class EngineCounters:
    processed: int = 0
    skipped_replayed: int = 0
    dead_lettered: int = 0
    dropped_late: int = 0
    dropped_ahead: int = 0
    tiles_written: int = 0
    tiles_expired: int = 0
    transform_failed: int = 0
    # (view, topic, partition) -> [late, ahead] events dropped there (streams/arrival.py)
    dropped_by_partition: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)


# Dropped events per view and source partition (reason: late | ahead, streams/arrival.py).
EVENTS_DROPPED = Counter(
    "featurebus_events_dropped_total",
    "Source events the stream engine did not count",
    ["view", "topic", "partition", "reason"],
)


def _ahead_reason(ts_ms: int, reference_ms: int) -> str:
    return (
        f"event time {ts_ms} is {ts_ms - reference_ms} ms ahead of its record's time {reference_ms} "
        f"(more than the {FUTURE_TOLERANCE_MS} ms tolerance): is the producer's clock right?"
    )


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``feature_topic_of(view_name) -> (topic, partition count)``; ``clock``: the wall clock
        in seconds (the bound of reference times and of expiry, streams/arrival.py)."""
        self._store = store
        self._sink = sink
        self._clock = clock
        self.counters = EngineCounters()
        compiled = compile_views(spec)
        self._sources: dict[str, StreamSourceSpec] = {}
        self._key_fields: dict[str, tuple[str, ...]] = {}  # per source topic: join keys every record needs
        self._views_by_topic: dict[str, list[ViewRuntime]] = {}
        self._expiry_views: list[ViewRuntime] = []  # every online view once, in a fixed order
        for view_spec in spec.stream_feature_views:
            if not view_spec.online:
                continue
            source = spec.source(view_spec.source)
            topic, partitions = feature_topic_of(view_spec.name)
            runtime = ViewRuntime(
                compiled[view_spec.name],
                Transformation(view_spec.transformation),
                topic,
                partitions,
                retention_ms(
                    view_spec.max_reach_ms, source.kafka.watermark_delay_ms, view_spec.aggregation_interval_ms
                ),
                source.kafka.watermark_delay_ms,
            )
            for topic in source.kafka.topics:
                self._sources[topic] = source
                self._key_fields[topic] = join_key_fields(spec, source)
                self._views_by_topic.setdefault(topic, []).append(runtime)
            self._expiry_views.append(runtime)
        self._shards = ShardState(store, self._sources, self._views_by_topic)
        self._expiry = ExpiryPass(store, sink, self._shards, self._expiry_views, self.counters, clock)

    @property
    def source_topics(self) -> list[str]:
        return sorted(self._views_by_topic)

    def progress(self, topic: str, partition: int) -> Progress:
        return self._shards.progress(topic, partition)

    def shard_locations(self, topic: str, partition: int) -> list[tuple[str, str, int, int]]:
        """``(view, feature topic, feature partition, shard)`` holding this partition's tiles."""
        return self._shards.shard_locations(topic, partition)

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
            puts.append((progress_key(topic, partition), progress.pack()))
        self._store.write(puts)

    def _process_topic(
        self, topic: str, records: list[RawRecord], puts: list[tuple[bytes, bytes | None]]
    ) -> dict[int, Progress]:
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

        # Which events count (streams/arrival.py, the same rule training sets apply): events ahead
        # of their record's time are dead-lettered, events behind the partition's event-time
        # watermark by more than the delay are dropped as late.
        frame = decoded.frame
        ts_ms = event_time_ms(frame[source.kafka.timestamp_field]) if len(frame) else np.zeros(0, np.int64)
        accepted = np.array(decoded.accepted_indexes, dtype=np.int64)
        partitions = fresh_partitions[accepted]
        reference = self._reference_times(fresh, accepted)
        keep = np.ones(len(partitions), dtype=bool)
        new_progress: dict[int, Progress] = {}
        for partition in np.unique(fresh_partitions).tolist():
            mask = partitions == partition
            verdict = judge_partition(
                ts_ms[mask], reference[mask], applied[partition].watermark, source.kafka.watermark_delay_ms
            )
            keep[mask] = ~(verdict.ahead | verdict.late)
            for position in np.flatnonzero(mask)[verdict.ahead].tolist():
                self._sink.dead_letter(
                    fresh[int(accepted[position])], _ahead_reason(int(ts_ms[position]), int(reference[position]))
                )
            late, ahead = int(verdict.late.sum()), int(verdict.ahead.sum())
            if late or ahead:
                self._count_dropped(topic, partition, late, ahead)
            last_offset = int(fresh_offsets[fresh_partitions == partition].max())
            done = applied[partition]
            new_progress[partition] = Progress(
                last_offset, verdict.watermark, done.dropped_late + late, done.dropped_ahead + ahead
            )
        origins = accepted  # each frame row's record in ``fresh``
        if not keep.all():  # usually nothing is dropped: no copy of the batch then
            frame, partitions, origins = frame.loc[keep].reset_index(drop=True), partitions[keep], origins[keep]

        # Every output row of a transformation must be known to belong to one shard (a
        # transformation may filter, reorder or reshape its rows): ``_transform``.
        shards = (
            np.array([shard_of(source, topic, p) for p in range(int(partitions.max()) + 1)], dtype=np.int64)[partitions]
            if len(partitions)
            else partitions
        )
        for runtime in self._views_by_topic[topic]:
            puts.extend(self._fold_view(runtime, frame, shards, fresh, origins))
        for runtime in self._views_by_topic[topic]:
            if runtime.view.spec.aggregation_leading_edge == AggregationLeadingEdge.LATEST_EVENT_TIME:
                puts.extend(self._publish_high_watermarks(runtime, source, topic, new_progress))
        self.counters.processed += len(fresh)
        return new_progress

    def _count_dropped(self, topic: str, partition: int, late: int, ahead: int) -> None:
        """Count one partition's dropped events, per view of its source (counters and metric)."""
        self.counters.dropped_late += late
        self.counters.dropped_ahead += ahead
        self.counters.dead_lettered += ahead
        for runtime in self._views_by_topic[topic]:
            view = runtime.view.spec.name
            counts = self.counters.dropped_by_partition.setdefault((view, topic, partition), [0, 0])
            counts[0] += late
            counts[1] += ahead
            for reason, n in (("late", late), ("ahead", ahead)):
                if n:
                    EVENTS_DROPPED.labels(view, topic, str(partition), reason).inc(n)

    def _reference_times(self, fresh: list[RawRecord], accepted: np.ndarray) -> np.ndarray:
        """Each accepted record's reference time (streams/arrival.py): its Kafka timestamp, never
        later than the wall clock (nor, without one, other than it)."""
        now_ms = int(self._clock() * 1000)
        stamps = np.array(list(map(_TIMESTAMP, fresh)), dtype=np.float64)[accepted]  # None -> nan
        return np.where(stamps > 0, np.minimum(stamps, now_ms), now_ms).astype(np.int64)

    def _transform(
        self, runtime: ViewRuntime, frame: pd.DataFrame, shards: np.ndarray
    ) -> list[tuple[pd.DataFrame, np.ndarray]]:
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

    def _fold_view(
        self,
        runtime: ViewRuntime,
        frame: pd.DataFrame,
        shards: np.ndarray,
        records: Sequence[RawRecord],
        origins: np.ndarray,
    ) -> list[tuple[bytes, bytes | None]]:
        """Transform and tile the batch for one view, and fold the tiles. A record whose
        transformation or tiling raises is dead-lettered with the reason (row i's record is
        ``records[origins[i]]``), found by bisecting the batch (``streams.isolation``): never the
        batch or the process. (A pandas transformation is thereby re-run on parts of the batch:
        a row-wise one gives the same rows; one that relates rows sees smaller batches, as it
        already does when the batch spans several shards.)"""
        view = runtime.view

        def tile_updates(rows: np.ndarray | None) -> list[TileColumns]:
            part, part_shards = (
                (frame, shards) if rows is None else (frame.iloc[rows].reset_index(drop=True), shards[rows])
            )
            updates = []
            for transformed, row_shards in self._transform(runtime, part, part_shards):
                view_rows, ts_ms = view_input_frame(view.spec, transformed, extra_columns={SHARD_COLUMN: row_shards})
                # Events before feature_start_time, or before the cut-over to batch history, are
                # not the stream's to count (streams/cutover.py).
                counted = stream_mask(view.spec, ts_ms)
                if counted is not None:
                    view_rows, ts_ms = view_rows.loc[counted].reset_index(drop=True), ts_ms[counted]
                updates.append(tile_columns(view, view_rows, ts_ms, view_rows[SHARD_COLUMN].to_numpy()))
            return updates

        all_updates, failures = isolate_failures(len(frame), tile_updates)
        for row, reason in failures:
            self._sink.dead_letter(records[int(origins[row])], f"feature view {view.spec.name!r}: {reason}")
        if failures:
            log.error(
                "feature view %r: %d records dead-lettered (first: %s)", view.spec.name, len(failures), failures[0][1]
            )
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

    def _merge_tiles(self, runtime: ViewRuntime, updates: TileColumns) -> list[tuple[bytes, bytes | None]]:
        """Merge a batch's updates into the stored tiles and publish the merged tiles whole."""
        view, topic, publish = runtime.view, runtime.feature_topic, self._sink.publish
        prefixes = {shard: state_prefix(view.spec.name, shard) for shard in set(updates.shards)}
        partitions = {shard: runtime.partition_of(shard) for shard in prefixes}
        tile_keys = [tile_key(*key) for key in zip(updates.entity_keys, updates.starts, updates.shards, strict=True)]
        state_keys = [prefixes[shard] + key for shard, key in zip(updates.shards, tile_keys, strict=True)]
        puts: list[tuple[bytes, bytes | None]] = []
        for shard, partials, record_key, key, old in zip(
            updates.shards, updates.partials, tile_keys, state_keys, self._store.get_many(state_keys), strict=True
        ):
            value = encode_partials(partials if old is None else merge_tile(view, decode_partials(old), partials))
            publish(topic, partitions[shard], record_key, value)
            puts.append((key, value))
        self.counters.tiles_written += len(tile_keys)
        return puts

    def _grow_eager_prefixes(self, runtime: ViewRuntime, updates: TileColumns) -> list[tuple[bytes, bytes | None]]:
        """Publish the eager lifetime prefixes this batch changes, per shard (``grow_eager_prefix``)."""
        by_entity: dict[tuple[int, bytes], list[tuple[int, list[Any]]]] = {}
        for entity, start, shard, partials in zip(*updates, strict=True):
            by_entity.setdefault((shard, entity), []).append((start, list(partials)))
        groups = sorted(by_entity)
        state_keys, keys = [], []
        for shard, entity in groups:
            keys.append(tile_key(entity, EAGER_PREFIX_START_MS, shard))
            state_keys.append(state_prefix(runtime.view.spec.name, shard) + keys[-1])
        puts: list[tuple[bytes, bytes | None]] = []
        for (shard, entity), key, state_key, old in zip(
            groups, keys, state_keys, self._store.get_many(state_keys), strict=True
        ):
            grown = grow_eager_prefix(
                runtime.view, None if old is None else decode_partials(old), by_entity[(shard, entity)]
            )
            if grown is not None:
                value = encode_partials(grown)
                self._sink.publish(runtime.feature_topic, runtime.partition_of(shard), key, value)
                puts.append((state_key, value))
        return puts

    def _publish_high_watermarks(
        self, runtime: ViewRuntime, source: StreamSourceSpec, topic: str, progress: dict[int, Progress]
    ) -> list[tuple[bytes, bytes | None]]:
        """Tell serving each shard's stream high watermark (leading edge LATEST_EVENT_TIME),
        when it moved; cached like tiles, so a restored shard has it too."""
        puts: list[tuple[bytes, bytes | None]] = []
        items = sorted((shard_of(source, topic, partition), done.watermark) for partition, done in progress.items())
        state_keys = [state_prefix(runtime.view.spec.name, shard) + high_watermark_key(shard) for shard, _ in items]
        for (shard, watermark), state_key, old in zip(items, state_keys, self._store.get_many(state_keys), strict=True):
            key, value = high_watermark_record(shard, watermark)
            if watermark != NO_WATERMARK and value != old:
                self._sink.publish(runtime.feature_topic, runtime.partition_of(shard), key, value)
                puts.append((state_key, value))
        return puts

    # -- deletes (platform/deletes) ---------------------------------------------------------------
    def drop_entities(self, view: str, entity_keys: set[bytes], extra_puts: Sequence[tuple[bytes, bytes]] = ()) -> int:
        """Forget these entities of ``view``: tombstone every record of theirs this engine holds (in
        one transaction) and drop them from the local state, with ``extra_puts`` (the delete
        request's position) in the same store write. Without this, the next event of a deleted
        entity would merge into its cached tiles and publish the deleted counts again. Returns how
        many records were dropped; a view this engine does not run is a no-op."""
        runtime = next((r for r in self._expiry_views if r.view.spec.name == view), None)
        puts: list[tuple[bytes, bytes | None]] = list(extra_puts)
        if runtime is not None:
            for shard, state_key, record_key in self._shards.entity_records(
                view, runtime.view.spec.source, entity_keys
            ):
                self._sink.publish(runtime.feature_topic, runtime.partition_of(shard), record_key, None)
                puts.append((state_key, None))
            self._sink.commit({})
        if puts:
            self._store.write(puts)
        return len(puts) - len(extra_puts)

    # -- ownership of partitions (shard_state.py) ------------------------------------------------
    def replace_shard(
        self, topic: str, partition: int, tiles: dict[str, dict[bytes, bytes]], progress: Progress
    ) -> int:
        """``ShardState.replace_shard``: a partition's local state replaced by what the bus holds."""
        return self._shards.replace_shard(topic, partition, tiles, progress)

    def view_shard(self, view: str, shard: int) -> dict[bytes, bytes]:
        return self._shards.view_shard(view, shard)

    def replace_view_shards(
        self, topic: str, partition: int, records: dict[str, dict[bytes, bytes]], progress: Progress
    ) -> None:
        self._shards.replace_view_shards(topic, partition, records, progress)

    def set_progress(self, topic: str, partition: int, progress: Progress) -> None:
        self._shards.set_progress(topic, partition, progress)

    def forget_partition(self, topic: str, partition: int) -> None:
        self._shards.forget_partition(topic, partition)

    # -- expiry (expiry.py) ---------------------------------------------------------------------
    def expire(self, owned: set[tuple[str, int]] | None = None) -> int:
        """A whole expiry pass at once (from the start, in one commit); returns how many tiles it
        deleted. The worker uses ``expire_step`` instead, which bounds the pause."""
        self._expiry.restart()
        return self._expiry.step(owned, max_records=None).expired

    @property
    def expiry_pending(self) -> bool:
        """A pass of ``expire_step`` is under way (started, not yet at the end of the state)."""
        return self._expiry.pending

    def expire_step(
        self, owned: set[tuple[str, int]] | None = None, max_records: int | None = EXPIRY_SLICE_RECORDS
    ) -> ExpiryStep:
        """The next slice of an expiry pass (``ExpiryPass.step``)."""
        return self._expiry.step(owned, max_records)
