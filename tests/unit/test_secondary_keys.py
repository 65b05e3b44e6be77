"""``aggregation_secondary_key``: compiled to Tecton's shape (arrays per key plus
``<key>_keys_<window>``), served over the serving fast path equal to the training set, the keyed
partial's merge laws, and plan-time errors naming the view, file:line and the fix."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus import (
    Aggregate,
    Attribute,
    Entity,
    FeatureService,
    Field,
    FileConfig,
    KafkaConfig,
    LifetimeWindow,
    StreamSource,
    batch_feature_view,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.platform.kv import MemoryStore
from featurebus.platform.offline.store import open_store, write_partition
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.encoding import encode_partials, store_key, tile_key
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.streams.aggregations import aggregator_for
from featurebus.streams.secondary_keys import KeyedAggregator
from featurebus.streams.tiles import CompiledView, batch_tiles
from featurebus.types import Float64, Int64, String, Timestamp

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[
        Field("user_id", String),
        Field("category", String),
        Field("shelf", Int64),
        Field("price", Float64),
        Field("ts", Timestamp),
    ],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
)


@stream_feature_view(
    source=clicks,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_secondary_key="category",
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("price", Float64)),
        Aggregate(function="sum", time_window=timedelta(hours=2), input_column=Field("price", Float64)),
        Aggregate(function="last", time_window=timedelta(hours=2), input_column=Field("shelf", Int64)),
    ],
)
def by_category(clicks: Any) -> Any:
    return clicks


service = FeatureService(name="svc", features=[by_category])
SPEC = compile_workspace("keys", [user, clicks, by_category, service])
HOUR = 3_600_000
BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)


def test_compiles_to_tectons_shape() -> None:
    names = [(a.name, a.output_dtype, a.keys_feature) for a in SPEC.view("by_category").aggregations]
    assert names == [
        ("category_keys_1h", "array<string>", True),
        ("category_keys_2h", "array<string>", True),
        ("price_count_1h_continuous", "array<int64>", False),
        ("price_sum_2h_continuous", "array<float64>", False),
        ("shelf_last_2h_continuous", "array<int64>", False),
    ]
    assert {a.secondary_key for a in SPEC.view("by_category").aggregations} == {"category"}


Row = tuple[str, str | None, int, float | None, int]  # user, category, shelf, price, ts offset


def _load(store: MemoryStore, rows: list[Row]) -> None:
    view = CompiledView.compile(SPEC.view("by_category"), ["string"])
    frame = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "category": pd.array([r[1] for r in rows], dtype=object),
            "shelf": [r[2] for r in rows],
            "price": pd.array([r[3] for r in rows], dtype="Float64").astype("float64"),
        }
    )
    ts_ms = np.array([BASE + r[4] for r in rows], dtype=np.int64)
    name = online_view_name(SPEC.name, "by_category")
    store.write(
        (store_key(name, tile_key(u.entity_key, u.tile_start_ms)), encode_partials(u.partials))
        for u in batch_tiles(view, frame, ts_ms)
    )


def _served(rows: list[Row], user_id: str, t_ms: int) -> dict[str, Any]:
    store = MemoryStore()
    if rows:
        _load(store, rows)
    server = FeatureServer(lambda: {SPEC.name: SPEC}, store, lambda: t_ms)
    answer = server.get_features("keys", "svc", {"user_id": user_id}, {"includeDataTypes": True})
    names = [m["name"] for m in answer["metadata"]["features"]]
    return dict(zip(names, answer["result"]["features"], strict=True))


def test_served_as_arrays_aligned_with_the_keys() -> None:
    rows: list[Row] = [
        ("u", "toys", 3, 5.0, 10 * 60_000),
        ("u", "books", 1, 2.0, 20 * 60_000),
        ("u", "toys", 4, None, 30 * 60_000),
        ("u", None, 9, 100.0, 40 * 60_000),  # no key: in no array
        ("u", "books", 2, 1.5, 90 * 60_000),
    ]
    served = _served(rows, "u", BASE + 100 * 60_000)
    assert served == {
        "by_category.category_keys_1h": ["books"],
        "by_category.category_keys_2h": ["books", "toys"],
        "by_category.price_count_1h_continuous": ["1"],  # int64 elements travel as strings
        "by_category.price_sum_2h_continuous": [3.5, 5.0],
        "by_category.shelf_last_2h_continuous": ["2", "4"],
    }
    assert _served(rows, "nobody", BASE + 100 * 60_000)["by_category.category_keys_2h"] is None


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["x", "y", "z", None]),
            st.integers(0, 5),
            st.one_of(st.none(), st.integers(-5, 5).map(float)),
            st.integers(0, 3 * 60).map(lambda m: m * 60_000),
        ),
        max_size=30,
    ),
    query=st.integers(0, 4 * 60).map(lambda m: m * 60_000 + 1),
)
def test_serving_equals_the_training_set(rows: list[Row], query: int) -> None:
    t_ms = BASE + query
    with_history = [r for r in rows if BASE + r[4] < t_ms]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        open_store(root)
        if rows:
            frame = pd.DataFrame(
                {
                    "user_id": [r[0] for r in rows],
                    "category": [r[1] for r in rows],
                    "shelf": [r[2] for r in rows],
                    "price": [r[3] for r in rows],
                    "ts": pd.to_datetime([BASE + r[4] for r in rows], unit="ms", utc=True),
                }
            )
            write_partition(root, SPEC.name, SPEC.source("clicks"), "clicks", 0, frame, np.arange(len(rows)))
        spine = pd.DataFrame({"user_id": ["a", "b"], "ts": pd.to_datetime([t_ms, t_ms], unit="ms", utc=True)})
        offline = get_features_for_events(SPEC, "svc", spine, root)
    for position, user_id in enumerate(["a", "b"]):
        served = _served(with_history, user_id, t_ms)
        for name, value in served.items():
            cell = offline[name.replace(".", "__")].iloc[position]
            if value is None:
                assert cell is None, (name, cell)
                continue
            expected = [str(v) if isinstance(v, int | np.integer) else v for v in list(cell)]
            assert value == expected, (name, value, expected)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(-3, 3)), max_size=6), min_size=3, max_size=3
    )
)
def test_keyed_partials_merge_associatively_in_arrival_order(batches: list[list[tuple[int, int]]]) -> None:
    for function in ("sum", "last", "count"):
        agg = KeyedAggregator(aggregator_for(function, "int64"))
        parts = []
        for number, batch in enumerate(batches):
            keys = np.array([k for k, _ in batch], dtype=np.int64)
            values = np.array([v for _, v in batch], dtype=np.int64)
            ones = np.ones(len(batch), dtype=bool)
            (part,) = agg.from_keyed_groups(
                values, ones, keys, ones, np.zeros(len(batch), dtype=np.int64), 1, np.arange(len(batch)) + 10 * number
            )
            parts.append(part)
        a, b, c = parts
        left = agg.merge(agg.merge(a, b), c)
        assert left == agg.merge(a, agg.merge(b, c)) == agg.merge_many([a, b, c])
        flat = [pair for batch in batches for pair in batch]
        keys_seen = sorted({k for k, _ in flat})
        if function == "sum":
            assert agg.result(left) == ([sum(v for k2, v in flat if k2 == k) for k in keys_seen] or None)
        if function == "last":
            assert agg.result(left) == ([[v for k2, v in flat if k2 == k][-1] for k in keys_seen] or None)


# -- plan-time errors -------------------------------------------------------------------------------


def _line() -> int:
    return sys._getframe(1).f_lineno


def _view(**overrides: Any) -> Any:
    options: dict[str, Any] = {
        "source": clicks,
        "entities": [user],
        "mode": "pandas",
        "aggregation_secondary_key": "category",
        "features": [Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("price", Float64))],
    }
    options.update(overrides)

    def bad(clicks: Any) -> Any:
        return clicks

    return stream_feature_view(**options)(bad)


def test_a_secondary_key_missing_from_the_schema_fails_plan() -> None:
    line = _line()

    @stream_feature_view(
        source=clicks,
        entities=[user],
        mode="pandas",
        aggregation_secondary_key="brand",
        features=[Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("price", Float64))],
    )
    def bad(clicks: Any) -> Any:
        return clicks

    view = bad
    line += 2  # the decorator's line
    with pytest.raises(DefinitionError) as caught:
        compile_workspace("keys", [user, clicks, view])
    message = str(caught.value)
    assert "StreamFeatureView 'bad' (" in message and f"test_secondary_keys.py:{line}" in message
    assert "aggregation_secondary_key 'brand' is not a column of the source's schema" in message
    assert "Name a column of the source's schema" in message


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"aggregation_secondary_key": "user_id"}, "is one of the view's join keys"),
        ({"aggregation_secondary_key": "price"}, "has type float64"),
        ({"aggregation_secondary_key": "not a column"}, "must be a column name"),
        (
            {
                "features": [
                    Aggregate(function="count", time_window=LifetimeWindow(), input_column=Field("price", Float64))
                ],
                "lifetime_start_time": datetime(2024, 1, 1, tzinfo=UTC),
            },
            "supports TimeWindow aggregations only",
        ),
        ({"features": [Attribute("price", Float64)], "ttl": timedelta(days=1)}, "applies to Aggregate features"),
    ],
)
def test_other_bad_secondary_keys_fail_plan(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(DefinitionError, match=problem):
        compile_workspace("keys", [user, clicks, _view(**overrides)])


def test_batch_views_take_a_secondary_key(tmp_path: Path) -> None:
    history = StreamSource(
        name="clicks_history",
        schema=clicks.schema,
        stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
        batch_config=FileConfig(uri=str(tmp_path / "clicks.csv"), file_format="csv", timestamp_field="ts"),
    )

    @batch_feature_view(
        sources=[history],
        entities=[user],
        mode="pandas",
        aggregation_interval=timedelta(hours=1),
        aggregation_secondary_key="shelf",
        timestamp_field="ts",
        features=[Aggregate(function="sum", time_window=timedelta(hours=3), input_column=Field("price", Float64))],
    )
    def shelves(clicks_history: Any) -> Any:
        return clicks_history

    spec = compile_workspace("keys", [user, history, shelves])
    names = [(a.name, a.output_dtype) for a in spec.batch_view("shelves").aggregations]
    assert names == [("shelf_keys_3h", "array<int64>"), ("price_sum_3h_1h", "array<float64>")]


def test_a_key_the_transformation_derives_is_typed_from_its_output() -> None:
    @stream_feature_view(
        source=clicks,
        entities=[user],
        mode="pandas",
        aggregation_secondary_key="price_band",
        features=[Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("price", Float64))],
    )
    def banded(clicks: Any) -> Any:
        clicks = clicks.copy()
        clicks["price_band"] = (clicks["price"] // 10).astype("int64")
        return clicks

    spec = compile_workspace("keys", [user, clicks, banded])
    (keys, count) = spec.view("banded").aggregations
    assert (keys.name, keys.output_dtype, count.secondary_key_dtype) == ("price_band_keys_1h", "array<int64>", "int64")


# -- batch views: tiles materialized from any split of the range give the per-key oracle ---------

# A stream source's history feeds the batch view (its schema types the secondary key).
_shelves = StreamSource(
    name="shelf_events",
    schema=[Field("user_id", String), Field("shelf", Int64), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="shelf_events", timestamp_field="ts"),
    batch_config=FileConfig(uri="/nowhere/shelf_events.csv", file_format="csv", timestamp_field="ts"),
)


@batch_feature_view(
    sources=[_shelves],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(hours=1),
    aggregation_secondary_key="shelf",
    timestamp_field="ts",
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=3), input_column=Field("amount", Float64)),
        Aggregate(function="last", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
    ],
)
def hourly_by_shelf(shelf_events: Any) -> Any:
    return shelf_events[["user_id", "shelf", "amount", "ts"]]


BATCH_SPEC = compile_workspace("b", [user, _shelves, hourly_by_shelf])


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]), st.sampled_from([1, 2, 3]), st.integers(0, 12 * HOUR - 1), st.integers(-9, 9)
        ),
        max_size=40,
        unique_by=lambda e: e[2],  # distinct times: "last" has no ties to break
    ),
    cuts=st.lists(st.integers(0, 12 * HOUR), max_size=3),
    times=st.lists(st.integers(0, 14 * HOUR), min_size=1, max_size=5),
)
def test_batch_tiles_from_any_split_give_the_per_key_oracle(
    events: list[tuple[str, int, int, int]], cuts: list[int], times: list[int]
) -> None:
    import itertools

    from featurebus.platform.batch.compute import aligned_range, compute_rows, view_tiles
    from featurebus.platform.batch.materialize import compiled_view
    from featurebus.schemas.encoding import encode_entity_key
    from featurebus.streams.tiles import compute_values

    view = BATCH_SPEC.batch_view("hourly_by_shelf")
    frame = pd.DataFrame(
        {
            "user_id": pd.Series([e[0] for e in events], dtype=object),
            "shelf": pd.Series([e[1] for e in events], dtype="int64"),
            "amount": pd.Series([float(e[3]) for e in events], dtype="float64"),
            "ts": pd.to_datetime(pd.Series([BASE + e[2] for e in events], dtype="int64"), unit="ms", utc=True),
        }
    )
    compiled = compiled_view(BATCH_SPEC, view)
    bounds = sorted({BASE, BASE + 12 * HOUR, *(BASE + c for c in cuts)})
    tiles: dict[tuple[bytes, int], list[Any]] = {}
    for lo, hi in itertools.pairwise(bounds):
        lo, hi = aligned_range(view, lo, hi)
        rows, ts_ms = compute_rows(view, [frame], lo, hi)
        for tile in view_tiles(compiled, rows, ts_ms):
            tiles[(tile.entity_key, tile.tile_start_ms)] = tile.partials
    for entity in ("a", "b"):
        mine = [(start, partials) for (k, start), partials in tiles.items() if k == encode_entity_key([entity])]
        for offset in times:
            t = BASE + offset
            end = (t // HOUR) * HOUR  # time-interval mode: complete tiles only
            keys3, keys2, sums, lasts = compute_values(compiled, mine, t)
            in3 = sorted((e[2], e[1], e[3]) for e in events if e[0] == entity and end - 3 * HOUR <= BASE + e[2] < end)
            in2 = [e for e in in3 if end - 2 * HOUR <= BASE + e[0]]
            assert keys3 == (sorted({s for _, s, _ in in3}) or None)
            assert keys2 == (sorted({s for _, s, _ in in2}) or None)
            assert sums == ([float(sum(v for _, s, v in in3 if s == k)) for k in keys3] if keys3 else None)
            assert lasts == ([float([v for _, s, v in in2 if s == k][-1]) for k in keys2] if keys2 else None)
