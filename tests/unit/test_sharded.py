"""Tracing transformed rows to their shards (``streams.sharded``), and the engine's tiles landing
in the shard of the partition their events came from whatever the transformation does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.specs import TransformationSpec
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine, compile_views
from featurebus.streams.sharded import trace_shards
from featurebus.streams.tiles import compute_values
from featurebus.streams.transform import event_time_ms
from tests.support.engine_state import engine_tiles
from tests.support.specs import HOUR, spending_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["a", "b", "c", "a", None, "d"], "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})


SHARDS = np.array([0, 1, 2, 0, 1, 2])

TRACEABLE: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "identity": lambda df: df,
    "columns": lambda df: df[["user_id"]],
    "filter": lambda df: df[df["amount"] > 2.5],
    "sort": lambda df: df.sort_values("amount", ascending=False),
    "assign": lambda df: df.assign(double=df["amount"] * 2),
    "explode": lambda df: df.assign(part=[[1, 2]] * len(df)).explode("part"),
    "concat": lambda df: pd.concat([df, df]),
    "reset_unfiltered": lambda df: df.reset_index(drop=True),
}

UNTRACEABLE: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "reset_after_filter": lambda df: df[df["amount"] > 2.5].reset_index(drop=True),
    "first_rows_only": lambda df: df.iloc[:3],  # 0..k-1: indistinguishable from a reset filter
    "aggregate": lambda df: df.groupby("user_id", as_index=False)["amount"].sum(),
    # Same length and a default index, but the rows are others: the join keys give it away.
    "reversed_and_reset": lambda df: df.iloc[::-1].reset_index(drop=True),
    "string_index": lambda df: df.set_index("user_id", drop=False),
    "derived_key": lambda df: (
        df.assign(user_id2=df["user_id"])
        .drop(columns=["user_id"])
        .rename(columns={"user_id2": "user_id"})
        .assign(user_id=lambda d: d["user_id"].str.upper())
    ),
    "shift": lambda df: df.assign(user_id=df["user_id"].shift(1)),
}


@pytest.mark.parametrize("name", sorted(TRACEABLE))
def test_traceable_transformations_map_rows_to_their_input_shards(name: str) -> None:
    frame = _frame()
    out = TRACEABLE[name](frame)
    traced = trace_shards(frame, out, SHARDS, ["user_id"])
    assert traced is not None
    # Each output row's shard is that of the input row holding the same index.
    assert traced.tolist() == [int(SHARDS[i]) for i in out.index]


@pytest.mark.parametrize("name", sorted(UNTRACEABLE))
def test_uncertain_traces_are_refused(name: str) -> None:
    frame = _frame()
    assert trace_shards(frame, UNTRACEABLE[name](frame), SHARDS, ["user_id"]) is None


def test_a_join_key_the_input_lacks_cannot_be_checked_and_is_refused() -> None:
    frame = _frame()
    assert trace_shards(frame, frame.assign(merchant="m"), SHARDS, ["merchant"]) is None


@settings(max_examples=100, deadline=None)
@given(keep=st.lists(st.booleans(), min_size=6, max_size=6), order=st.permutations(range(6)))
def test_any_filter_and_reorder_is_traced_exactly(keep: list[bool], order: list[int]) -> None:
    frame = _frame()
    out = frame.iloc[list(order)]
    out = out[[keep[i] for i in out.index]]
    traced = trace_shards(frame, out, SHARDS, ["user_id"])
    if traced is not None:
        assert traced.tolist() == [int(SHARDS[i]) for i in out.index]
    else:  # only the ambiguous 0..k-1 shape is refused
        assert list(out.index) == list(range(len(out))) and len(out) < len(frame)


TRANSFORMATIONS = {
    "select": "def t(df):\n    return df[['user_id', 'amount', 'ts']]\n",
    "filter_reset": "def t(df):\n    return df[df['amount'] > 2].reset_index(drop=True)\n",
    "sort": "def t(df):\n    return df.sort_values('amount')\n",
    "aggregate": "def t(df):\n    return df.groupby('user_id', as_index=False).agg(amount=('amount', 'sum'), ts=('ts', 'max'))\n",
}


@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_tiles_land_in_the_shard_of_their_events_partition(name: str) -> None:
    """Users live in one partition each; whatever the transformation, a user's tiles carry that
    partition's shard, and the values equal those of per-partition batches."""
    spec = spending_workspace()
    view = dataclasses.replace(
        spec.stream_feature_views[0], transformation=TransformationSpec("pandas", "t", TRANSFORMATIONS[name])
    )
    spec = dataclasses.replace(spec, stream_feature_views=(view,))
    users = [f"u{i}" for i in range(9)]
    records = [
        RawRecord(
            "transactions",
            i % 3,
            i,
            orjson.dumps({"user_id": users[i % 9], "amount": float(i % 5), "ts": BASE + i * 1000}),
        )
        for i in range(60)
    ]
    whole_store, split_store = MemoryStore(), MemoryStore()
    StreamEngine(spec, whole_store, MemorySink(), lambda v: (f"features.{v}", 3)).process(records)
    split = StreamEngine(spec, split_store, MemorySink(), lambda v: (f"features.{v}", 3))
    for partition in range(3):
        split.process([r for r in records if r.partition == partition])
    compiled = compile_views(spec)[view.name]
    for i, user in enumerate(users):
        tiles = engine_tiles(whole_store, view.name, compiled.entity_key([user]))
        assert {shard for _, _, shard in tiles} <= {i % 3}
        if name != "aggregate":  # a per-batch aggregation depends on the batch, by nature
            expected = engine_tiles(split_store, view.name, compiled.entity_key([user]))
            assert compute_values(compiled, tiles, BASE + HOUR) == compute_values(compiled, expected, BASE + HOUR)


def test_a_transformation_failing_on_one_partitions_rows_only_loses_those() -> None:
    code = "def t(df):\n    if (df['user_id'] == 'bad').any():\n        raise ValueError('bad user')\n    return df\n"
    spec = spending_workspace()
    view = dataclasses.replace(spec.stream_feature_views[0], transformation=TransformationSpec("pandas", "t", code))
    spec = dataclasses.replace(spec, stream_feature_views=(view,))
    store = MemoryStore()
    engine = StreamEngine(spec, store, MemorySink(), lambda v: (f"features.{v}", 3))
    users = ["good", "bad", "fine"]
    engine.process(
        [
            RawRecord("transactions", i % 3, i, orjson.dumps({"user_id": users[i % 3], "amount": 1.0, "ts": BASE + i}))
            for i in range(30)
        ]
    )
    assert engine.counters.transform_failed == 10
    compiled = compile_views(spec)[view.name]
    for user, count in (("good", 10), ("bad", 0), ("fine", 10)):
        tiles = engine_tiles(store, view.name, compiled.entity_key([user]))
        assert compute_values(compiled, tiles, BASE + 100)[0] == count


@given(
    st.lists(st.integers(-(2**41), 2**42), max_size=20),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_event_time_ms_reads_the_instant_whatever_the_zone_and_unit(epoch_ms: list[int], zone: str, unit: str) -> None:
    """``event_time_ms`` reads tz-aware timestamps' instants directly: the same milliseconds as
    converting to UTC first, for any zone and resolution; naive columns are parsed as UTC."""
    utc = pd.Series(pd.to_datetime(epoch_ms, unit="ms", utc=True)).dt.as_unit(unit)
    expected = utc.dt.as_unit("ms").astype("int64").to_numpy()
    assert np.array_equal(event_time_ms(utc.dt.tz_convert(zone)), expected)
    assert np.array_equal(event_time_ms(utc.dt.tz_localize(None)), expected)
