"""Computing batch views over ranges (platform/batch/compute.py, offline.py) against brute-force
oracles of docs/design.md §4: tiles from any split of a range equal tiles from the whole range, the
values they give at any time equal the oracle, and the offline store holds every row once
whatever ranges are materialized, in whatever order."""

from __future__ import annotations

import itertools
import math
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus import Aggregate, Attribute, BatchSource, Entity, Field, FileConfig, batch_feature_view
from featurebus import materialization_context as context_marker
from featurebus.compile import compile_workspace
from featurebus.exceptions import FeaturebusError
from featurebus.platform.batch.compute import (
    aligned_range,
    compute_rows,
    output_columns,
    source_range,
    view_tiles,
)
from featurebus.platform.batch.materialize import compiled_view, rows_table
from featurebus.platform.batch.offline import list_view_parts, replace_range
from featurebus.schemas.encoding import encode_entity_key
from featurebus.schemas.specs import BatchFeatureViewSpec, FieldSpec, WorkspaceSpec
from featurebus.streams.tiles import compute_values
from featurebus.types import Float64, String

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
SPAN = 3 * 24 * HOUR

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri="/nowhere", timestamp_field="ts"))
SEEN_CONTEXTS: list[Any] = []


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(hours=1),
    batch_schedule=timedelta(days=1),
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=3), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("amount", Float64)),
        Aggregate(function="max", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
        Aggregate(function="last", time_window=timedelta(hours=5), input_column=Field("amount", Float64)),
    ],
)
def hourly(tx, context=context_marker()):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    ttl=timedelta(hours=6),
    features=[Attribute("amount", Float64)],
)
def latest(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


SPEC: WorkspaceSpec = compile_workspace("w", [user, tx, hourly, latest])
HOURLY: BatchFeatureViewSpec = SPEC.batch_view("hourly")
LATEST: BatchFeatureViewSpec = SPEC.batch_view("latest")

events_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, SPAN - 1), st.integers(-50, 50)),
    min_size=0,
    max_size=60,
    unique_by=lambda e: e[1],  # distinct times: "last" has no ties to break
)


def _frame(events: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series([e[0] for e in events], dtype=object),
            "amount": pd.Series([float(e[2]) for e in events], dtype="float64"),
            "ts": pd.to_datetime(pd.Series([T0 + e[1] for e in events], dtype="int64"), unit="ms", utc=True),
            "ignored": 1,
        }
    )


def _tiles(view: BatchFeatureViewSpec, frame: pd.DataFrame, cuts: list[int]) -> dict[tuple[bytes, int], list[Any]]:
    """Materialize [T0, T0 + SPAN) in the pieces ``cuts`` gives; later writes of a key win, as
    in the compacted feature topic."""
    compiled = compiled_view(SPEC, view)
    bounds = sorted({T0, T0 + SPAN, *(T0 + c for c in cuts)})
    tiles: dict[tuple[bytes, int], list[Any]] = {}
    for lo, hi in itertools.pairwise(bounds):
        lo, hi = aligned_range(view, lo, hi)
        rows, ts_ms = compute_rows(view, [frame], lo, hi)
        for tile in view_tiles(compiled, rows, ts_ms):
            tiles[(tile.entity_key, tile.tile_start_ms)] = tile.partials
    return tiles


def _oracle(events: list[tuple[str, int, int]], entity: str, lo: int, hi: int) -> list[tuple[int, float]]:
    return sorted((T0 + t, float(v)) for e, t, v in events if e == entity and lo <= T0 + t < hi)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy,
    cuts=st.lists(st.integers(0, SPAN), max_size=4),
    times=st.lists(st.integers(0, SPAN + 6 * HOUR), min_size=1, max_size=8),
)
def test_aggregate_tiles_from_any_split_give_the_oracle_values(
    events: list[tuple[str, int, int]], cuts: list[int], times: list[int]
) -> None:
    frame = _frame(events)
    tiles = _tiles(HOURLY, frame, cuts)
    assert tiles == _tiles(HOURLY, frame, [])  # splitting the range changes no tile
    compiled = compiled_view(SPEC, HOURLY)
    for entity in ("a", "b", "c"):
        key = encode_entity_key([entity])
        mine = [(start, partials) for (k, start), partials in tiles.items() if k == key]
        for offset in times:
            t = T0 + offset
            end = (t // HOUR) * HOUR  # time-interval mode: complete tiles only (docs/design.md §4)
            values = compute_values(compiled, mine, t)
            in3, in1, in2, in5 = (_oracle(events, entity, end - w * HOUR, end) for w in (3, 1, 2, 5))
            assert values[0] == (pytest.approx(math.fsum(v for _, v in in3)) if in3 else None)
            assert values[1] == len(in1)
            assert values[2] == (max(v for _, v in in2) if in2 else None)
            assert values[3] == (in5[-1][1] if in5 else None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy,
    cuts=st.lists(st.integers(0, SPAN), max_size=4),
    times=st.lists(st.integers(0, SPAN + 8 * HOUR), min_size=1, max_size=8),
)
def test_attribute_tiles_give_the_latest_value_within_the_ttl(
    events: list[tuple[str, int, int]], cuts: list[int], times: list[int]
) -> None:
    tiles = _tiles(LATEST, _frame(events), cuts)
    compiled = compiled_view(SPEC, LATEST)
    for entity in ("a", "b", "c"):
        key = encode_entity_key([entity])
        mine = [(start, partials) for (k, start), partials in tiles.items() if k == key]
        for offset in times:
            t = T0 + offset
            seen = _oracle(events, entity, t - 6 * HOUR, t)
            assert compute_values(compiled, mine, t) == [seen[-1][1] if seen else None]


def test_ranges_align_to_whole_tiles_and_sources_reach_back_by_the_longest_window() -> None:
    assert aligned_range(HOURLY, T0 + 1, T0 + HOUR + 1) == (T0, T0 + 2 * HOUR)
    assert aligned_range(LATEST, T0 + 1, T0 + 2) == (T0 + 1, T0 + 2)  # attributes: millisecond tiles
    assert source_range(HOURLY, T0, T0 + HOUR) == (T0 - 5 * HOUR, T0 + HOUR)
    assert source_range(LATEST, T0, T0 + HOUR) == (T0, T0 + HOUR)
    with pytest.raises(FeaturebusError, match="end must be after its start"):
        aligned_range(HOURLY, T0, T0)


def test_the_transformation_gets_the_widened_range_as_its_context() -> None:
    code = (
        "def f(tx, context=materialization_context()):\n"
        "    return tx.assign(lo=context.start_time, hi=context.end_time)\n"
    )
    view = HOURLY.__class__(
        **{**HOURLY.__dict__, "transformation": HOURLY.transformation.__class__("pandas", "f", code)}
    )
    frame = _frame([("a", HOUR, 1)])
    rows, _ = compute_rows(view, [frame], T0, T0 + 2 * HOUR)
    assert len(rows) == 1
    out = output_columns(
        view, [[FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")]]
    )
    assert out == {"user_id", "amount", "ts", "lo", "hi"}


def test_rows_before_feature_start_time_are_not_materialized() -> None:
    view = LATEST.__class__(**{**LATEST.__dict__, "feature_start_ms": T0 + 2 * HOUR})
    rows, ts_ms = compute_rows(view, [_frame([("a", HOUR, 1), ("a", 3 * HOUR, 2)])], T0, T0 + SPAN)
    assert ts_ms.tolist() == [T0 + 3 * HOUR] and rows["amount"].tolist() == [2.0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy, runs=st.lists(st.tuples(st.integers(0, SPAN), st.integers(1, SPAN)), min_size=1, max_size=5)
)
def test_the_offline_store_holds_each_row_of_the_materialized_ranges_once(
    events: list[tuple[str, int, int]], runs: list[tuple[int, int]]
) -> None:
    frame = _frame(events)
    covered: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for start, length in runs:
            lo, hi = T0 + start, T0 + min(SPAN, start + length)
            if hi <= lo:
                continue
            rows, ts_ms = compute_rows(LATEST, [frame], lo, hi)
            replace_range(root, "w", "latest", "ts", lo, hi, rows_table(LATEST, rows, ts_ms))
            covered |= {t for _, t, _ in events if lo <= T0 + t < hi}
            before = sorted(p.path.name for p in list_view_parts(root, "w", "latest"))
            replace_range(root, "w", "latest", "ts", lo, hi, rows_table(LATEST, rows, ts_ms))  # a re-run
            assert sorted(p.path.name for p in list_view_parts(root, "w", "latest")) == before
        parts = list_view_parts(root, "w", "latest")
        stored = [pq.read_table(p.path) for p in parts]
        times = sorted(t for table in stored for t in table.column("ts").cast("int64").to_pylist())
        assert times == sorted(T0 + t for t in covered)
        for part, table in zip(parts, stored, strict=True):  # every file within its own span and date
            ms = np.array(table.column("ts").cast("int64").to_pylist(), dtype=np.int64)
            assert ((ms >= part.lo_ms) & (ms < part.hi_ms)).all()
            assert part.lo_ms // (24 * HOUR) == (part.hi_ms - 1) // (24 * HOUR)


def test_incremental_backfills_run_one_chunk_per_schedule_period() -> None:
    from featurebus.platform.batch.materialize import materialization_chunks

    six_hourly = HOURLY.__class__(**{**HOURLY.__dict__, "incremental_backfills": True, "batch_schedule_ms": 6 * HOUR})
    assert materialization_chunks(six_hourly, T0, T0 + 12 * HOUR) == [
        (T0, T0 + 6 * HOUR),
        (T0 + 6 * HOUR, T0 + 12 * HOUR),
    ]
    assert materialization_chunks(HOURLY, T0 + HOUR, T0 + 30 * HOUR) == [
        (T0 + HOUR, T0 + 24 * HOUR),
        (T0 + 24 * HOUR, T0 + 30 * HOUR),
    ]
