"""``tile_columns`` groups a batch's rows by (entity, tile, shard) without a pandas groupby: its
tiles must be exactly those a plain dictionary fold of the rows gives."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.schemas.specs import FieldSpec
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import tile_columns
from tests.support.specs import MINUTE, spending_workspace

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "ab", ""]),
        st.integers(-3, 3),
        st.integers(0, 40).map(lambda m: m * MINUTE // 4),
        st.integers(0, 2),
        st.one_of(st.none(), st.integers(-50, 50).map(float)),
    ),
    max_size=60,
)


def _view(two_keys: bool, interval_ms: int | None):  # type: ignore[no-untyped-def]
    spec = spending_workspace(interval_ms=interval_ms)
    if two_keys:
        entity = dataclasses.replace(spec.entities[0], join_keys=(*spec.entities[0].join_keys, FieldSpec("n", "int64")))
        view = dataclasses.replace(spec.stream_feature_views[0], join_keys=("user_id", "n"))
        spec = dataclasses.replace(spec, entities=(entity,), stream_feature_views=(view,))
    return compile_views(spec)["user_spending"]


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, two_keys=st.booleans(), interval=st.sampled_from([None, 10 * MINUTE]))
def test_tiles_equal_a_dictionary_fold_of_the_rows(
    rows: list[tuple[str, int, int, int, float | None]], two_keys: bool, interval: int | None
) -> None:
    view = _view(two_keys, interval)
    frame = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "n": pd.array([r[1] for r in rows], dtype="Int64"),
            "amount": [r[4] for r in rows],
        }
    )
    ts_ms = np.array([r[2] for r in rows], dtype=np.int64)
    shards = np.array([r[3] for r in rows], dtype=np.int64)
    got = tile_columns(view, frame, ts_ms, shards)
    tile_ms = view.spec.tile_ms
    expected: dict[tuple[bytes, int, int], list[tuple[int, float | None]]] = defaultdict(list)
    for user, n, t, shard, amount in rows:
        entity = view.entity_key([user, n] if two_keys else [user])
        expected[(entity, (t // tile_ms) * tile_ms, shard)].append((t, amount))
    keys = list(zip(got.entity_keys, got.starts, got.shards, strict=True))
    assert len(keys) == len(set(keys)) and set(keys) == set(expected)
    names = [a.name for a in view.spec.aggregations]
    for key, partials in zip(keys, got.partials, strict=True):
        amounts = [a for _, a in expected[key] if a is not None]
        for name, partial in zip(names, partials, strict=True):
            if name.startswith("amount_count"):
                assert partial == len(amounts)
            elif name.startswith("amount_sum"):
                # A float sum partial is the exact sum as a double-double [hi, lo] (streams/exact_sum.py).
                assert (partial is None and not amounts) or partial[0] + partial[1] == math.fsum(amounts)
