"""How the stream engine maintains one (entity, shard)'s lifetime prefixes. Pure logic, no I/O.

The engine reads a shard's stored records, asks these functions what to write, publishes that
on the shard's feature-topic partition and caches it locally. What a prefix is and how readers
use it: ``featurebus.streams.lifetime``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.encoding import decode_partials
from featurebus.streams.lifetime import EAGER_PREFIX_START_MS, PREFIX_START_MS
from featurebus.streams.tiles import CompiledView, merge_tile
from featurebus.streams.windows import lifetime_fold_cutoff, tile_start

__all__ = ["fold_into_prefix", "grow_eager_prefix", "ShardExpiry", "expire_shard_entity"]


def fold_into_prefix(
    view: CompiledView, prefix: list[Any] | None, tiles: Sequence[list[Any]], covered_until_ms: int
) -> list[Any]:
    """The lifetime prefix (partials + trailing ``covered_until``) after folding in ``tiles``."""
    merged = view.empty_partials() if prefix is None else prefix[:-1]
    for partials in tiles:
        merged = merge_tile(view, merged, partials)
    return [*merged, covered_until_ms]


def grow_eager_prefix(
    view: CompiledView, prefix: list[Any] | None, updates: Sequence[tuple[int, list[Any]]]
) -> list[Any] | None:
    """The shard's eager prefix of an entity after a batch's ``(tile start, partials)`` updates of
    that entity; None when it does not change.

    Events for tiles the prefix already covers (late, or behind another partition) go into it,
    so it stays exact between expiries. An entity's first lifetime tile in the shard creates an
    empty prefix covering nothing (``covered_until`` = lifetime start): readers learn from it
    that the shard holds tiles of the entity (see ``streams.lifetime``).
    """
    lifetime_start = view.spec.lifetime_start_ms
    assert lifetime_start is not None  # only lifetime views have prefixes
    inside = [(start, partials) for start, partials in updates if start >= lifetime_start]
    if not inside:
        return None
    if prefix is None:
        return fold_into_prefix(view, None, [], lifetime_start)
    covered = int(prefix[-1])
    late = [partials for start, partials in inside if start < covered]
    return fold_into_prefix(view, prefix, late, covered) if late else None


@dataclass(frozen=True)
class ShardExpiry:
    """What one expiry pass writes for an (entity, shard): prefixes first, then tombstones."""

    prefixes: list[tuple[int, list[Any]]]  # (PREFIX_START_MS or EAGER_PREFIX_START_MS, prefix)
    expired: list[int]  # starts of the tiles to delete


def expire_shard_entity(
    view: CompiledView,
    tiles: Sequence[tuple[int, bytes]],
    watermark_ms: int,
    watermark_delay_ms: int,
    retention_ms: int,
) -> ShardExpiry:
    """One entity's expiry in one shard, from its stored ``(start, value)`` records in start order
    (prefixes included) and the shard's own watermark.

    A lifetime view first grows the final prefix over every tile no accepted event can change
    (``lifetime_fold_cutoff``), then the eager one up to the tile holding the watermark; tiles
    are deleted only once no window can reach them (``retention_ms``), by which time the final
    prefix holds them. The engine publishes the prefixes before the tombstones (same partition,
    so in this order): a reader never misses a deleted tile's events, and one that still sees
    such a tile ignores it, as it starts before its shard's ``covered_until``.
    """
    spec = view.spec
    cutoff = watermark_ms - retention_ms
    expired = [start for start, _ in tiles if start > EAGER_PREFIX_START_MS and start + spec.tile_ms <= cutoff]
    if not spec.has_lifetime or spec.lifetime_start_ms is None:
        return ShardExpiry([], expired)
    lifetime_start = spec.lifetime_start_ms
    stored = {start: value for start, value in tiles if start <= EAGER_PREFIX_START_MS}
    final = None if PREFIX_START_MS not in stored else decode_partials(stored[PREFIX_START_MS])
    fold_before = lifetime_fold_cutoff(watermark_ms, watermark_delay_ms, spec.tile_ms)
    eager_before = max(fold_before, tile_start(watermark_ms, spec.tile_ms))
    writes: list[tuple[int, list[Any]]] = []
    covered = max(lifetime_start, _covered(final))
    final_tiles = [decode_partials(v) for s, v in tiles if s > EAGER_PREFIX_START_MS and covered <= s < fold_before]
    if final_tiles:
        final = fold_into_prefix(view, final, final_tiles, fold_before)
        writes.append((PREFIX_START_MS, final))
    # The eager prefix grows from where it ended (the engine merged later events of its tiles
    # into it as they came), so each pass decodes only the tiles it newly covers; it restarts
    # from the final prefix if that overtook it (a watermark jump).
    base = final
    old_eager_raw = stored.get(EAGER_PREFIX_START_MS)
    old_eager = None if old_eager_raw is None else decode_partials(old_eager_raw)
    if old_eager is not None and _covered(old_eager) >= _covered(final):
        base = old_eager
        eager_before = max(eager_before, _covered(base))
    covered = max(lifetime_start, _covered(base))
    eager_tiles = [decode_partials(v) for s, v in tiles if s > EAGER_PREFIX_START_MS and covered <= s < eager_before]
    eager = fold_into_prefix(view, base, eager_tiles, eager_before)
    if (base is not None or eager_tiles) and eager != old_eager:
        writes.append((EAGER_PREFIX_START_MS, eager))
    return ShardExpiry(writes, expired)


def _covered(prefix: list[Any] | None) -> int:
    """Where a lifetime prefix ends (its trailing element), or the minimum if there is none."""
    return PREFIX_START_MS if prefix is None else int(prefix[-1])
