"""Lifetime prefixes and stream high watermarks on the feature topics, per shard. Pure logic, no I/O.

Tiles are sharded by source partition (``schemas/encoding.py``), and each shard has its own
watermark, so everything the engine derives from a shard's tiles is per shard too:

* An entity's *lifetime prefixes* are stored as tiles of the shard at these starts, below every
  event time, so they sort first among the entity's tiles. Each holds partials (one per
  aggregation, as any tile's) of that shard's events from the view's lifetime_start_ms up to its
  ``covered_until``, stored as one extra trailing element. A lifetime value is the merge over
  shards of (the shard's usable prefix + the shard's tiles from its ``covered_until`` on): another
  shard's tiles before that point are not in this shard's prefix. The engine keeps two per shard:

  - the *final* prefix covers tiles no accepted event can change any more (``covered_until`` at
    ``lifetime_fold_cutoff`` of the shard's watermark); tiles expire only once folded into it, so
    it is what makes lifetime values exact for every T the engine serves exactly
    (T >= watermark - delay);
  - the *eager* prefix covers every tile before the one holding the shard's watermark, and the
    engine merges later-arriving events of those tiles into it as they come, so a request at or
    after the watermark (the usual case) reads it plus the few tiles since the last expiry. The
    engine writes an (empty) eager prefix as soon as a shard has an entity's first lifetime tile,
    so a reader knows every shard holding tiles of the entity from the prefixes alone, and can
    start its tile scan at the earliest ``covered_until`` instead of the lifetime start.

* Feature-topic records under ``HIGH_WATERMARK_PREFIX`` (never an entity key: those start with the
  key format byte, >= 1) carry one shard's stream high watermark, for views whose
  aggregation_leading_edge is LATEST_EVENT_TIME; serving takes the max over shards.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from featurebus.schemas.encoding import decode_partials, encode_partials

__all__ = [
    "PREFIX_START_MS",
    "EAGER_PREFIX_START_MS",
    "ShardPrefixes",
    "split_prefixes",
    "usable_prefix",
    "lifetime_partials",
    "lifetime_read_start",
    "HIGH_WATERMARK_PREFIX",
    "high_watermark_key",
    "high_watermark_shard",
    "high_watermark_record",
    "latest_event_time",
]

PREFIX_START_MS = -(2**63)
EAGER_PREFIX_START_MS = PREFIX_START_MS + 1
HIGH_WATERMARK_PREFIX = b"\x00hw."
_U16 = struct.Struct(">H")

# shard -> {PREFIX_START_MS or EAGER_PREFIX_START_MS -> partials + [covered_until]}
ShardPrefixes = dict[int, dict[int, list[Any]]]


def split_prefixes(ordered: list[tuple[Any, ...]]) -> tuple[ShardPrefixes, list[tuple[Any, ...]]]:
    """The prefixes at the head of start-ordered ``(start, partials[, shard])`` tiles, and the
    tiles after them."""
    count = 0
    while count < len(ordered) and ordered[count][0] <= EAGER_PREFIX_START_MS:
        count += 1
    prefixes: ShardPrefixes = {}
    for tile in ordered[:count]:
        prefixes.setdefault(_shard(tile), {})[tile[0]] = tile[1]
    return prefixes, ordered[count:]


def _shard(tile: tuple[Any, ...]) -> int:
    if len(tile) < 3:
        raise ValueError(
            "tiles of a lifetime view need their shard (prefixes are per shard): decode them "
            "with decode_tiles(..., shards=True)"
        )
    return int(tile[2])


def usable_prefix(prefixes: dict[int, list[Any]], window_end: int) -> list[Any] | None:
    """A shard's eager prefix if the window reaches past it, else its final one (exact for every
    window end from its ``covered_until`` on, which the engine keeps at least watermark - delay)."""
    eager = prefixes.get(EAGER_PREFIX_START_MS)
    if eager is not None and window_end >= eager[-1]:
        return eager
    return prefixes.get(PREFIX_START_MS)


def lifetime_partials(
    index: int,
    prefixes: ShardPrefixes,
    tiles: Sequence[tuple[Any, ...]],
    starts: Sequence[int],
    window_start: int,
    window_end: int,
) -> list[Any]:
    """Partials of aggregation ``index`` that make up ``[window_start, window_end)``: per shard, its
    usable prefix plus its tiles from the prefix's ``covered_until`` on (``tiles`` in start order,
    ``starts`` their starts; each ``(start, partials, shard)`` once any shard has a prefix)."""
    partials: list[Any] = []
    shard_from: dict[int, int] = {}
    for shard, stored in prefixes.items():
        prefix = usable_prefix(stored, window_end)
        if prefix is not None:
            partials.append(prefix[index])
            shard_from[shard] = max(window_start, int(prefix[-1]))
    lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
    if not shard_from:
        partials.extend(tiles[j][1][index] for j in range(lo, hi))
        return partials
    for j in range(lo, hi):
        tile = tiles[j]
        if tile[0] >= shard_from.get(_shard(tile), window_start):
            partials.append(tile[1][index])
    return partials


def lifetime_read_start(prefixes: ShardPrefixes, window_start: int, window_end: int) -> int:
    """The earliest tile start a lifetime window still needs besides the prefixes: the earliest
    usable ``covered_until`` over shards (every shard with tiles has a prefix, see above)."""
    if not prefixes:
        return window_start
    start = window_end
    for stored in prefixes.values():
        prefix = usable_prefix(stored, window_end)
        start = min(start, window_start if prefix is None else max(window_start, min(int(prefix[-1]), window_end)))
    return start


def high_watermark_key(shard: int) -> bytes:
    """The feature-topic key of one shard's high watermark record."""
    return HIGH_WATERMARK_PREFIX + _U16.pack(shard)


def high_watermark_shard(key: bytes) -> int | None:
    """The shard of a high watermark record's key; None for any other key (a tile's)."""
    if not key.startswith(HIGH_WATERMARK_PREFIX) or len(key) != len(HIGH_WATERMARK_PREFIX) + 2:
        return None
    return int(_U16.unpack(key[len(HIGH_WATERMARK_PREFIX) :])[0])


def high_watermark_record(shard: int, high_watermark_ms: int) -> tuple[bytes, bytes]:
    """Key and value of the feature-topic record carrying one shard's high watermark."""
    return high_watermark_key(shard), encode_partials([high_watermark_ms])


def latest_event_time(values: Iterable[bytes]) -> int | None:
    """A view's stream high watermark (the newest event time it has processed, over every shard)
    from its high-watermark record values; None if there are none."""
    marks = [int(decode_partials(value)[0]) for value in values]
    return max(marks) if marks else None
