"""Reading a view's local state for expiry a bounded slice at a time.

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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import split_tile_key
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX

__all__ = ["EntityGroup", "StateSlice", "read_slice", "key_range_end"]

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


def key_range_end(prefix: bytes) -> bytes:
    """A key above every key starting with ``prefix`` (tile keys are far shorter than 16 bytes
    past any prefix this is used with)."""
    return prefix + b"\xff" * 16


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
