"""Per-shard lifetime prefixes, pure: which partials make up a lifetime window, where a reader's
tile scan can start, and how the engine grows a shard's eager prefix."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.schemas.encoding import decode_tiles, encode_partials, tile_key
from featurebus.streams.lifetime import (
    EAGER_PREFIX_START_MS,
    PREFIX_START_MS,
    lifetime_partials,
    lifetime_read_start,
    split_prefixes,
    usable_prefix,
)
from featurebus.streams.prefixes import grow_eager_prefix
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.specs import MINUTE
from tests.support.window_specs import VIEW, windowed_workspace

BASE = 1_700_000_000_000


def _count_view() -> Any:
    spec = windowed_workspace(BASE)
    view = spec.view(VIEW)
    counts = tuple(a for a in view.aggregations if a.name == "amount_count_lifetime")
    spec = dataclasses.replace(spec, stream_feature_views=(dataclasses.replace(view, aggregations=counts),))
    return compile_views(spec)[VIEW]


@settings(max_examples=200, deadline=None)
@given(
    tiles=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3), st.integers(1, 5)), max_size=30),
    covered=st.dictionaries(st.integers(0, 3), st.integers(0, 21), max_size=4),
    window_end=st.integers(0, 21),
)
def test_a_lifetime_window_is_each_shards_prefix_plus_its_own_later_tiles(
    tiles: list[tuple[int, int, int]], covered: dict[int, int], window_end: int
) -> None:
    """Counts in unit tiles: shard s's prefix holds its tiles before covered[s]; the window must
    count every tile in [0, window_end) exactly once, whatever the shards' coverage."""
    tile_list: list[tuple[int, list[Any], int]] = [(start, [count], shard) for start, shard, count in tiles]
    prefixes = [
        (PREFIX_START_MS + 1, [sum(c for s, sh, c in tiles if sh == shard and s < until), until], shard)
        for shard, until in covered.items()
    ]  # eager prefixes
    ordered = sorted([*prefixes, *tile_list], key=lambda t: t[0])
    stored, rest = split_prefixes(ordered)
    starts = [t[0] for t in rest]
    got = sum(lifetime_partials(0, stored, rest, starts, 0, window_end))
    # Prefixes here are eager only: one ending past the window end is unusable, and its shard's
    # tiles (all still stored) count from the window start instead.
    assert got == sum(c for s, _, c in tiles if s < window_end)
    usable = [until if until <= window_end else 0 for until in covered.values()]
    assert lifetime_read_start(stored, 0, window_end) == min(usable, default=0)


def test_the_eager_prefix_is_used_when_the_window_reaches_past_it_else_the_final_one() -> None:
    final, eager = [1, 10], [5, 20]
    prefixes = {PREFIX_START_MS: final, EAGER_PREFIX_START_MS: eager}
    assert usable_prefix(prefixes, 20) is eager and usable_prefix(prefixes, 19) is final
    assert usable_prefix({EAGER_PREFIX_START_MS: eager}, 19) is None


def test_prefixes_without_their_shard_are_refused() -> None:
    view = _count_view()
    with pytest.raises(ValueError, match="shards=True"):
        compute_values(view, [(EAGER_PREFIX_START_MS, [1, BASE])], BASE + MINUTE)
    items = [(tile_key(b"\x02e", EAGER_PREFIX_START_MS, 7), encode_partials([1, BASE]))]
    assert decode_tiles(items, shards=True) == [(EAGER_PREFIX_START_MS, [1, BASE], 7)]
    assert decode_tiles(items) == [(EAGER_PREFIX_START_MS, [1, BASE])]


def test_an_entitys_first_lifetime_tile_in_a_shard_creates_an_empty_prefix_then_late_tiles_grow_it() -> None:
    view = _count_view()
    lifetime_start = view.spec.lifetime_start_ms
    assert grow_eager_prefix(view, None, [(lifetime_start - MINUTE, [3])]) is None  # before the lifetime: no prefix
    marker = grow_eager_prefix(view, None, [(lifetime_start, [3])])
    assert marker == [0, lifetime_start]  # covers nothing: the tile itself stays a tile
    prefix = [4, lifetime_start + 10 * MINUTE]
    assert grow_eager_prefix(view, prefix, [(lifetime_start + 10 * MINUTE, [1])]) is None  # after it: a tile
    assert grow_eager_prefix(view, prefix, [(lifetime_start + MINUTE, [2]), (lifetime_start + 20 * MINUTE, [1])]) == [
        6,
        lifetime_start + 10 * MINUTE,
    ]
