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
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from featurebus.schemas.encoding import coerce_join_key, encode_entity_key, encode_entity_keys
from featurebus.schemas.kinds import WindowKind
from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec
from featurebus.streams.aggregations import Aggregator, aggregator_of, group_partials, input_column
from featurebus.streams.lifetime import (
    EAGER_PREFIX_START_MS,
    PREFIX_START_MS,
    lifetime_partials,
    lifetime_read_start,
    split_prefixes,
)
from featurebus.streams.windows import aggregation_windows, window_bounds

__all__ = [
    "CompiledView",
    "Tile",
    "TileUpdate",
    "batch_tiles",
    "TileColumns",
    "tile_columns",
    "merge_tile",
    "compute_values",
    "read_range",
    "prefix_range",
]

# ``(tile start, partials)``, or ``(tile start, partials, shard)`` where the shard matters (lifetime
# prefixes are per shard; see ``featurebus.streams.lifetime``).
Tile = tuple[int, list[Any]] | tuple[int, list[Any], int]


@dataclass(frozen=True)
class CompiledView:
    """A view spec with its aggregators resolved once (not per event or per request)."""

    spec: StreamFeatureViewSpec
    aggregators: tuple[Aggregator, ...]
    join_key_dtypes: tuple[str, ...]
    has_lifetime: bool = False  # spec.has_lifetime, decided once: readers branch on it per request

    @classmethod
    def compile(cls, spec: StreamFeatureViewSpec, join_key_dtypes: Sequence[str]) -> CompiledView:
        aggregators = tuple(aggregator_of(a) for a in spec.aggregations)
        return cls(spec, aggregators, tuple(join_key_dtypes), spec.has_lifetime)

    def entity_key(self, values: Sequence[Any]) -> bytes:
        return encode_entity_key(
            [
                coerce_join_key(v, d, n)
                for v, d, n in zip(values, self.join_key_dtypes, self.spec.join_keys, strict=False)
            ]
        )

    def empty_partials(self) -> list[Any]:
        return [agg.initialize() for agg in self.aggregators]


class TileUpdate(NamedTuple):
    """One touched tile of a batch (``batch_tiles``; the engine itself reads ``TileColumns``)."""

    entity_key: bytes
    tile_start_ms: int
    partials: list[Any]
    shard: int = 0


class TileColumns(NamedTuple):
    """A batch's tile updates column by column (the engine's hot path makes no object per tile)."""

    entity_keys: list[bytes]
    starts: list[int]
    shards: list[int]
    partials: list[tuple[Any, ...]]  # one tuple per tile, one partial per aggregation


def batch_tiles(
    view: CompiledView, rows: pd.DataFrame, ts_ms: np.ndarray, shards: np.ndarray | None = None
) -> list[TileUpdate]:
    """Partials of one batch of transformed rows, one update per touched (entity, tile, shard):
    ``tile_columns`` as one object per tile."""
    columns = tile_columns(view, rows, ts_ms, shards)
    return [
        TileUpdate(entity, start, list(partials), shard)
        for entity, start, shard, partials in zip(*columns, strict=True)
    ]


def tile_columns(
    view: CompiledView, rows: pd.DataFrame, ts_ms: np.ndarray, shards: np.ndarray | None = None
) -> TileColumns:
    """Partials of one batch of transformed rows, one per touched (entity, tile, shard).

    ``ts_ms`` are the rows' event times in integer milliseconds, ``shards`` the rows' shards (all
    0 if not given). One groupby numbers the groups; every aggregator then computes all groups'
    partials at once with numpy.
    """
    if len(rows) == 0:
        return TileColumns([], [], [], [])
    spec = view.spec
    tile_ms = spec.tile_ms
    tiles = (ts_ms // tile_ms) * tile_ms
    row_shards = np.zeros(len(rows), dtype=np.int64) if shards is None else shards
    key_columns = [rows[k] for k in spec.join_keys]
    group_ids, first = _group_rows([*key_columns, tiles, row_shards])
    n_groups = len(first)
    normalised: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # each column normalised once

    def column(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        if (name, dtype) not in normalised:
            normalised[(name, dtype)] = input_column(rows[name], dtype)
        return normalised[(name, dtype)]

    # Aggregations differing only in their window (count 10m, count 1h) have equal partials in
    # a tile: computed once, shared.
    by_partial: dict[tuple[Any, ...], Any] = {}
    columns = []
    for agg, a in zip(view.aggregators, spec.aggregations, strict=True):
        signature = (
            a.function,
            a.input_column,
            a.input_dtype,
            a.n,
            a.percentile,
            a.precision,
            a.attribute,
            a.secondary_key,
            a.keys_feature,
        )
        if signature not in by_partial:
            by_partial[signature] = group_partials(agg, a, column, group_ids, n_groups, ts_ms)
        columns.append(by_partial[signature])
    entity_keys = encode_entity_keys(
        [column.to_numpy()[first].tolist() for column in key_columns], view.join_key_dtypes, spec.join_keys
    )
    # Rows of partials by transposing whole columns (indexing numpy columns per group would make
    # a numpy scalar per value).
    rows_of_partials = list(zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in columns), strict=True))
    return TileColumns(entity_keys, tiles[first].tolist(), row_shards[first].tolist(), rows_of_partials)


def _group_rows(columns: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(group id of each row, first row of each group)`` over the distinct combinations of
    ``columns``' values, numbered in order of first appearance (a null is a value of its own, as
    in ``groupby(dropna=False)``). Column by column factorization, at a fraction of a pandas
    groupby's fixed cost; the combined codes stay below rows² (no overflow)."""
    codes: np.ndarray | None = None
    for column in columns:
        column_codes, uniques = pd.factorize(column, use_na_sentinel=False)
        if codes is None:
            codes = column_codes.astype(np.int64)
        else:
            codes, _ = pd.factorize(codes * len(uniques) + column_codes)
    assert codes is not None  # a view has at least one join key
    group_ids, _ = pd.factorize(codes)
    _, first = np.unique(group_ids, return_index=True)  # ids are 0..n-1: first rows in id order
    return group_ids.astype(np.int64), first.astype(np.int64)


def merge_tile(view: CompiledView, stored: Sequence[Any] | None, update: Sequence[Any]) -> list[Any]:
    if stored is None:
        return list(update)
    return [agg.merge(a, b) for agg, a, b in zip(view.aggregators, stored, update, strict=False)]


def compute_values(view: CompiledView, tiles: Iterable[Tile], t_ms: int) -> list[Any]:
    """Feature values at time ``t_ms`` from an entity's tiles (any order, any extent); a window
    series gives a list, one value per window, earliest first.

    Tiles are put in start order (already so when they come from a store scan), so each window
    is one slice found by bisection and merged in one call, rather than every tile tested
    against every window. A lifetime window adds the entity's lifetime prefix, if it has one, to
    the tiles after it, per shard (``streams.lifetime``; the tiles of a lifetime view then need
    their shards); values are exact for ``t_ms`` no earlier than watermark - delay, as for every
    other window. A tile's shards are simply several tiles at one start.
    """
    spec = view.spec
    ordered: list[Tile] = sorted(tiles, key=itemgetter(0))
    prefixes, ordered = split_prefixes(ordered) if ordered and ordered[0][0] <= EAGER_PREFIX_START_MS else ({}, ordered)
    starts = [tile[0] for tile in ordered]
    values: list[Any] = []
    for i, (aggregation, aggregator) in enumerate(zip(spec.aggregations, view.aggregators, strict=True)):
        if aggregation.window_kind == WindowKind.TIME:  # the common case, without the general loop below
            window_start, window_end = window_bounds(
                t_ms, aggregation.window_ms, _interval_ms(spec, aggregation), aggregation.offset_ms
            )
            lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
            partials = [ordered[j][1][i] for j in range(lo, hi)]
            values.append(aggregator.result(aggregator.merge_many(partials) if partials else aggregator.initialize()))
            continue
        results = []
        for window_start, window_end in aggregation_windows(
            aggregation, t_ms, _interval_ms(spec, aggregation), spec.lifetime_start_ms
        ):
            if aggregation.window_kind == WindowKind.LIFETIME:
                partials = lifetime_partials(i, prefixes, ordered, starts, window_start, window_end)
            else:
                lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
                partials = [ordered[j][1][i] for j in range(lo, hi)]
            results.append(aggregator.result(aggregator.merge_many(partials) if partials else aggregator.initialize()))
        values.append(results if aggregation.window_kind == WindowKind.SERIES else results[0])
    return values


def _interval_ms(spec: StreamFeatureViewSpec, aggregation: AggregationSpec) -> int | None:
    """An Attribute is continuous ([T - ttl, T)) whatever the view's interval (docs/design.md §4)."""
    return None if aggregation.attribute else spec.aggregation_interval_ms


def read_range(view: CompiledView, t_ms: int, prefixes: Iterable[Tile] = ()) -> tuple[int, int]:
    """The tile-start range ``[start, end)`` that ``compute_values`` at ``t_ms`` can use besides
    the lifetime prefixes (``prefix_range``), given those (read first, with their shards): a
    lifetime window needs only the tiles from where its shards' prefixes end, not the entity's
    whole history."""
    spec = view.spec
    stored = split_prefixes(sorted(prefixes, key=itemgetter(0)))[0] if view.has_lifetime else {}
    bounds = []
    for a in spec.aggregations:
        if a.window_kind == WindowKind.TIME:
            bounds.append(window_bounds(t_ms, a.window_ms, _interval_ms(spec, a), a.offset_ms))
            continue
        for start, end in aggregation_windows(a, t_ms, _interval_ms(spec, a), spec.lifetime_start_ms):
            if a.window_kind == WindowKind.LIFETIME:
                start = lifetime_read_start(stored, start, end)
            bounds.append((start, end))
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def prefix_range(view: CompiledView) -> tuple[int, int] | None:
    """The tile-start range holding an entity's lifetime prefixes, if the view has any."""
    return (PREFIX_START_MS, EAGER_PREFIX_START_MS + 1) if view.has_lifetime else None
