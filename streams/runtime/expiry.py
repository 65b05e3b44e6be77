"""Expiry: deleting tiles no window can reach any more, a bounded slice of the state at a time.

A full expiry pass visits every stored tile of every view (at 100k entities, hundreds of
thousands of keys): done at once inside the processing loop, it held every event arriving
meanwhile back by seconds. The engine instead walks the state in slices of about
``max_records`` keys, one per loop turn, resuming where the previous slice stopped.

A slice always ends on an (shard, entity) boundary and resumes at the *start* of the next
group's key range (``view | shard | entity key``), never at one of its tiles: a group is judged
whole (a lifetime view folds its tiles into the prefixes that sort first in the group), and
tiles written between slices are then either in a group this pass still reaches, or in one it
already passed (expired by the next pass). Entity keys are self-delimiting, so the key range of
``view | shard | entity`` holds exactly that group's records.

``ExpiryPass`` runs the passes over the engine's views (``read_slice`` for the reading, the
shards' watermarks from ``shard_state``, ``streams.prefixes.expire_shard_entity`` for what to
fold and delete).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import encode_partials, split_tile_key, store_prefix, tile_key
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX
from featurebus.streams.prefixes import expire_shard_entity
from featurebus.streams.runtime.shard_state import Puts, ShardState, ViewRuntime, key_range_end, state_prefix

if TYPE_CHECKING:
    from featurebus.streams.runtime.engine import EngineCounters, FeatureSink

__all__ = [
    "EXPIRY_SLICE_RECORDS",
    "EntityGroup",
    "ExpiryPass",
    "ExpiryStep",
    "StateSlice",
    "read_slice",
    "key_range_end",
]

EXPIRY_SLICE_RECORDS = 2_000  # stored records one expiry step reads: a few ms, not a pause

_U16 = struct.Struct(">H")


class EntityGroup(NamedTuple):
    """One entity's stored records in one shard, in start order (lifetime prefixes first)."""

    shard: int
    entity: bytes
    records: list[tuple[int, bytes]]  # (tile start, stored value)


@dataclass
class StateSlice:
    groups: list[EntityGroup] = field(default_factory=list)
    records: int = 0
    resume: bytes | None = None  # where the next slice of this view starts; None: the view is done


def read_slice(store: KeyValueStore, view_prefix: bytes, resume: bytes | None, max_records: int | None) -> StateSlice:
    """The (shard, entity) groups of a view's state from ``resume`` (default: the start) on, whole
    groups only, stopping at the first group boundary after ``max_records`` records (at least one
    group per call; None: to the end). High-watermark records are no entity's and are skipped."""
    result = StateSlice()
    base = len(view_prefix) + 2  # view prefix | u16 shard | tile key
    current: tuple[int, bytes] | None = None
    records: list[tuple[int, bytes]] = []
    for key, value in store.scan(view_prefix if resume is None else resume, key_range_end(view_prefix)):
        record_key = key[base:]
        if record_key.startswith(HIGH_WATERMARK_PREFIX):
            continue
        entity, start, shard = split_tile_key(record_key)
        if current is None or current[0] != shard or current[1] != entity:
            if current is not None:
                result.groups.append(EntityGroup(current[0], current[1], records))
                result.records += len(records)
                if max_records is not None and result.records >= max_records:
                    result.resume = view_prefix + _U16.pack(shard) + entity
                    return result
            current, records = (shard, entity), []
        records.append((start, value))
    if current is not None:
        result.groups.append(EntityGroup(current[0], current[1], records))
        result.records += len(records)
    return result


class ExpiryStep(NamedTuple):
    expired: int  # tiles deleted by this step
    records: int  # stored records it read
    finished: bool  # the pass reached the end of every view's state


class ExpiryPass:
    """Expiry passes over every online view's local state, one bounded slice per ``step``."""

    def __init__(
        self,
        store: KeyValueStore,
        sink: FeatureSink,
        shards: ShardState,
        views: list[ViewRuntime],
        counters: EngineCounters,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._sink = sink
        self._shards = shards
        self._views = views  # every online view once, in a fixed order
        self._counters = counters
        self._clock = clock
        self._cursor: tuple[int, bytes | None] | None = None  # (view index, resume key) of a pass

    @property
    def pending(self) -> bool:
        """A pass is under way (started, not yet at the end of the state)."""
        return self._cursor is not None

    def restart(self) -> None:
        self._cursor = None

    def step(
        self, owned: set[tuple[str, int]] | None = None, max_records: int | None = EXPIRY_SLICE_RECORDS
    ) -> ExpiryStep:
        """Delete (and tombstone) tiles no window can reach any more, in the next slice of about
        ``max_records`` stored records (None: all of them) of an expiry pass; starts a pass if
        none is under way.

        Only the shards of ``owned`` source partitions (default: all with local progress) are
        touched: the local store may still cache shards that another worker now owns. Each shard
        is judged by its own watermark (as of this slice), bounded by the wall clock. Views with a lifetime window first fold
        every final tile into the (entity, shard)'s lifetime prefix
        (``streams.prefixes.expire_shard_entity``), so lifetime values survive the tiles'
        deletion. A slice's prefixes and tombstones are committed (one transaction) before its
        local delete; the pass moves on only once both are done, so a failed slice is redone.
        """
        # Never past the wall clock: a watermark ahead of it (only events within the arrival
        # tolerance can put it there, streams/arrival.py) must not expire or fold tiles that a
        # request at the current time still reads.
        now_ms = int(self._clock() * 1000)
        watermarks = {shard: min(watermark, now_ms) for shard, watermark in self._shards.watermarks(owned).items()}
        view_index, resume = self._cursor or (0, None)
        puts: Puts = []
        read = 0
        while view_index < len(self._views):
            runtime = self._views[view_index]
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
        self._counters.tiles_expired += expired
        finished = view_index >= len(self._views)
        self._cursor = None if finished else (view_index, resume)
        return ExpiryStep(expired, read, finished)

    def _expire_group(
        self, runtime: ViewRuntime, group: EntityGroup, watermarks: dict[tuple[str, int], int], puts: Puts
    ) -> None:
        shard, entity = group.shard, group.entity
        watermark = watermarks.get((runtime.view.spec.source, shard))
        if watermark is None:
            return
        plan = expire_shard_entity(
            runtime.view, group.records, watermark, runtime.watermark_delay_ms, runtime.retention_ms
        )
        prefix = state_prefix(runtime.view.spec.name, shard)
        partition = runtime.partition_of(shard)
        for start, partials in plan.prefixes:  # prefixes before tombstones: see expire_shard_entity
            key, value = tile_key(entity, start, shard), encode_partials(partials)
            self._sink.publish(runtime.feature_topic, partition, key, value)
            puts.append((prefix + key, value))
        for start in plan.expired:
            key = tile_key(entity, start, shard)
            self._sink.publish(runtime.feature_topic, partition, key, None)
            puts.append((prefix + key, None))
