"""Tiles: per (entity, tile start) partial aggregates. Pure logic, no I/O.

The worker turns a micro-batch of transformed rows into tile partials (vectorized with one
pandas groupby per batch), merges them into stored tiles, and publishes whole tiles; serving
merges the tiles a window covers at the request's time. Both go through this module.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from featurebus.schemas.encoding import coerce_join_key, decode_partials, encode_entity_key, encode_partials
from featurebus.schemas.specs import StreamFeatureViewSpec
from featurebus.streams.aggregations import Aggregator, aggregator_for, numeric_column
from featurebus.streams.windows import aggregation_windows

__all__ = [
    "CompiledView",
    "TileUpdate",
    "batch_tiles",
    "merge_tile",
    "compute_values",
    "read_range",
    "prefix_range",
    "PREFIX_START_MS",
    "EAGER_PREFIX_START_MS",
    "fold_into_prefix",
    "HIGH_WATERMARK_PREFIX",
    "high_watermark_record",
    "latest_event_time",
]

# An entity's *lifetime prefixes* are stored as tiles at these starts, below every event time, so
# they sort first among the entity's tiles. Each holds partials (one per aggregation, as any
# tile's) of all events from the view's lifetime_start_ms up to its ``covered_until``, stored as
# one extra trailing element; a lifetime window reads a prefix plus the tiles from its
# ``covered_until`` on, so an entity with a long history costs one partial instead of one tile per
# event (or interval) ever seen. The engine (``expire``) keeps two:
# * the *final* prefix covers tiles no accepted event can change any more (``covered_until`` at
#   ``lifetime_fold_cutoff``, at least the watermark delay behind the newest event); tiles expire
#   only once folded into it, so it is what makes lifetime values exact for every T the engine
#   serves exactly (T >= watermark - delay);
# * the *eager* prefix covers every tile before the one holding the watermark, and the engine
#   merges later-arriving events of those tiles into it as they come, so a request at or after
#   the watermark (the usual case) reads it plus the few tiles of events since the last expiry.
PREFIX_START_MS = -(2**63)
EAGER_PREFIX_START_MS = PREFIX_START_MS + 1

# Feature-topic records under this key prefix (never an entity key: those start with the key
# format byte, >= 1) carry a view's stream high watermark per source partition, published by the
# engine for views whose aggregation_leading_edge is LATEST_EVENT_TIME.
HIGH_WATERMARK_PREFIX = b"\x00hw."


@dataclass(frozen=True)
class CompiledView:
    """A view spec with its aggregators resolved once (not per event or per request)."""

    spec: StreamFeatureViewSpec
    aggregators: tuple[Aggregator, ...]
    join_key_dtypes: tuple[str, ...]

    @classmethod
    def compile(cls, spec: StreamFeatureViewSpec, join_key_dtypes: Sequence[str]) -> CompiledView:
        aggregators = tuple(aggregator_for(a.function, a.input_dtype) for a in spec.aggregations)
        return cls(spec, aggregators, tuple(join_key_dtypes))

    def entity_key(self, values: Sequence[Any]) -> bytes:
        return encode_entity_key(
            [coerce_join_key(v, d, n) for v, d, n in zip(values, self.join_key_dtypes, self.spec.join_keys, strict=False)]
        )

    def empty_partials(self) -> list[Any]:
        return [agg.initialize() for agg in self.aggregators]


@dataclass(frozen=True)
class TileUpdate:
    entity_key: bytes
    tile_start_ms: int
    partials: list[Any]


def batch_tiles(view: CompiledView, rows: pd.DataFrame, ts_ms: np.ndarray) -> list[TileUpdate]:
    """Partials of one batch of transformed rows, one update per touched (entity, tile).

    ``ts_ms`` are the rows' event times in integer milliseconds. One groupby numbers the groups;
    every aggregator then computes all groups' partials at once with numpy.
    """
    if len(rows) == 0:
        return []
    spec = view.spec
    tile_ms = spec.tile_ms
    keys = rows.loc[:, list(spec.join_keys)].assign(__tile=(ts_ms // tile_ms) * tile_ms)
    grouped = keys.groupby([*spec.join_keys, "__tile"], sort=False, dropna=False)
    group_ids = grouped.ngroup().to_numpy()
    group_keys = grouped.size().index  # the same first-appearance order as ngroup() (sort=False)
    n_groups = len(group_keys)
    columns = [
        agg.from_groups(*numeric_column(rows[a.input_column], a.input_dtype), group_ids, n_groups)
        for agg, a in zip(view.aggregators, spec.aggregations, strict=True)
    ]
    updates = []
    for index, group_key in enumerate(group_keys):
        partials = [column[index] for column in columns]
        updates.append(TileUpdate(view.entity_key(group_key[:-1]), int(group_key[-1]), partials))
    return updates


def merge_tile(view: CompiledView, stored: list[Any] | None, update: list[Any]) -> list[Any]:
    if stored is None:
        return list(update)
    return [agg.merge(a, b) for agg, a, b in zip(view.aggregators, stored, update, strict=False)]


def compute_values(view: CompiledView, tiles: Iterable[tuple[int, list[Any]]], t_ms: int) -> list[Any]:
    """Feature values at time ``t_ms`` from an entity's tiles (any order, any extent); a window
    series gives a list, one value per window, earliest first.

    Tiles are put in start order (already so when they come from a store scan), so each window
    is one slice found by bisection and merged in one call, rather than every tile tested
    against every window. A lifetime window adds the entity's lifetime prefix, if it has one, to
    the tiles after it (see ``PREFIX_START_MS``); values are exact for ``t_ms`` no earlier than
    watermark - delay, as for every other window.
    """
    spec = view.spec
    ordered = sorted(tiles, key=itemgetter(0))
    prefixes: dict[int, list[Any]] = {}
    while ordered and ordered[0][0] in (PREFIX_START_MS, EAGER_PREFIX_START_MS):
        start, partials = ordered.pop(0)
        prefixes[start] = partials
    starts = [start for start, _ in ordered]
    values: list[Any] = []
    for i, (aggregation, aggregator) in enumerate(zip(spec.aggregations, view.aggregators, strict=True)):
        results = []
        for window_start, window_end in aggregation_windows(aggregation, t_ms, spec.aggregation_interval_ms,
                                                            spec.lifetime_start_ms):
            partials = []
            if aggregation.window_kind == "lifetime":
                prefix = _usable_prefix(prefixes, window_end)
                if prefix is not None:
                    partials.append(prefix[i])
                    window_start = max(window_start, prefix[-1])  # the prefix covers up to there
            lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
            partials.extend(ordered[j][1][i] for j in range(lo, hi))
            results.append(aggregator.result(aggregator.merge_many(partials) if partials else aggregator.initialize()))
        values.append(results if aggregation.window_kind == "series" else results[0])
    return values


def _usable_prefix(prefixes: dict[int, list[Any]], window_end: int) -> list[Any] | None:
    """The eager prefix if the window reaches past it, else the final one (exact for every window
    end from its ``covered_until`` on, which the engine keeps at least watermark - delay)."""
    eager = prefixes.get(EAGER_PREFIX_START_MS)
    if eager is not None and window_end >= eager[-1]:
        return eager
    return prefixes.get(PREFIX_START_MS)


def read_range(view: CompiledView, t_ms: int, prefixes: Iterable[tuple[int, list[Any]]] = ()) -> tuple[int, int]:
    """The tile-start range ``[start, end)`` that ``compute_values`` at ``t_ms`` can use besides
    the lifetime prefixes (``prefix_range``), given those (read first): a lifetime window needs
    only the tiles from where its prefix ends, not the entity's whole history."""
    spec = view.spec
    stored = dict(prefixes)
    bounds = []
    for a in spec.aggregations:
        for start, end in aggregation_windows(a, t_ms, spec.aggregation_interval_ms, spec.lifetime_start_ms):
            usable = _usable_prefix(stored, end) if a.window_kind == "lifetime" else None
            if usable is not None:
                start = max(start, min(int(usable[-1]), end))
            bounds.append((start, end))
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def prefix_range(view: CompiledView) -> tuple[int, int] | None:
    """The tile-start range holding an entity's lifetime prefixes, if the view has any."""
    return (PREFIX_START_MS, EAGER_PREFIX_START_MS + 1) if view.spec.has_lifetime else None


def fold_into_prefix(view: CompiledView, prefix: list[Any] | None, tiles: Sequence[list[Any]],
                     covered_until_ms: int) -> list[Any]:
    """The lifetime prefix (partials + trailing ``covered_until``) after folding in ``tiles``."""
    merged = view.empty_partials() if prefix is None else prefix[:-1]
    for partials in tiles:
        merged = merge_tile(view, merged, partials)
    return [*merged, covered_until_ms]


def high_watermark_record(topic: str, partition: int, high_watermark_ms: int) -> tuple[bytes, bytes]:
    """Key and value of the feature-topic record carrying one source partition's high watermark."""
    key = HIGH_WATERMARK_PREFIX + topic.encode() + b"\x00" + str(partition).encode()
    return key, encode_partials([high_watermark_ms])


def latest_event_time(values: Iterable[bytes]) -> int | None:
    """A view's stream high watermark (the newest event time it has processed, over every source
    partition) from its high-watermark record values; None if there are none."""
    marks = [int(decode_partials(value)[0]) for value in values]
    return max(marks) if marks else None
