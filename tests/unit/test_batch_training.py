"""Training sets over batch views and stream sources' history files, against brute-force oracles
of docs/design.md §4 (no Kafka): computed from the sources on the fly, or read back from the offline
store once materialized, the values are the same; every spine row is kept; no row sees data at
or after its own time."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus import (
    Aggregate,
    Attribute,
    BatchSource,
    Entity,
    FeatureService,
    Field,
    FileConfig,
    KafkaConfig,
    StreamSource,
    batch_feature_view,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import InvalidRequestError
from featurebus.platform.batch.materialize import materialize_view
from featurebus.platform.offline.store import open_store, write_partition
from featurebus.platform.training.ranges import get_features_in_range
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.specs import FileConfigSpec, WorkspaceSpec
from featurebus.types import Float64, String, Timestamp

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
SPAN = 2 * 24 * HOUR

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri="/replaced/in/tests", timestamp_field="ts"))


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(hours=1),
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=3), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
    ],
)
def spend(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    ttl=timedelta(hours=5),
    features=[Attribute("amount", Float64)],
)
def last_amount(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


service = FeatureService(name="svc", features=[spend, last_amount])
BASE = compile_workspace("w", [user, tx, spend, last_amount, service])

Event = tuple[str, int, int]  # user, ms after T0, amount


def _spec(folder: Path) -> WorkspaceSpec:
    source = dataclasses.replace(BASE.batch_sources[0], batch_config=FileConfigSpec(str(folder), "parquet", "ts"))
    return dataclasses.replace(BASE, batch_sources=(source,))


def _write(folder: Path, events: list[Event]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "user_id": pd.Series([e[0] for e in events], dtype=object),
            "amount": pd.Series([float(e[2]) for e in events], dtype="float64"),
            "ts": pd.to_datetime(pd.Series([T0 + e[1] for e in events], dtype="int64"), unit="ms", utc=True),
        }
    ).to_parquet(folder / "events.parquet")


def _oracle(events: list[Event], entity: str, t: int) -> dict[str, Any]:
    end = (t // HOUR) * HOUR  # time-interval mode: complete intervals only
    in3 = [v for e, ts, v in events if e == entity and end - 3 * HOUR <= T0 + ts < end]
    in2 = [v for e, ts, v in events if e == entity and end - 2 * HOUR <= T0 + ts < end]
    recent = sorted((T0 + ts, v) for e, ts, v in events if e == entity and t - 5 * HOUR <= T0 + ts < t)
    return {
        "spend__amount_sum_3h_1h": math.fsum(in3) if in3 else None,
        "spend__amount_count_2h_1h": len(in2),
        "last_amount__amount": float(recent[-1][1]) if recent else None,
    }


def _check(result: pd.DataFrame, spine: pd.DataFrame, events: list[Event]) -> None:
    pd.testing.assert_frame_equal(result[spine.columns], spine)  # every spine row, in order
    for i in range(len(spine)):
        t = int(spine["at"].iloc[i].value // 1_000_000)
        for column, expected in _oracle(events, spine["user_id"].iloc[i], t).items():
            got = result[column].iloc[i]
            if expected is None:
                assert pd.isna(got), (i, column, got)
            else:
                assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), (i, column, got, expected)


events_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, SPAN - 1), st.integers(-20, 20)),
    max_size=40,
    unique_by=lambda e: e[1],
)
spine_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "z"]),
        st.one_of(st.integers(0, SPAN + 6 * HOUR), st.integers(0, 60).map(lambda h: h * HOUR)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, rows=spine_strategy)
def test_batch_views_in_training_sets_match_the_oracle_computed_or_materialized(
    events: list[Event], rows: list[tuple[str, int]]
) -> None:
    spine = pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "at": pd.to_datetime([T0 + t for _, t in rows], unit="ms", utc=True),
            "label": range(len(rows)),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        root, data = Path(tmp) / "offline", Path(tmp) / "data"
        _write(data, events)
        spec = _spec(data)
        open_store(root)
        computed = get_features_for_events(spec, "svc", spine, root)  # never materialized: from the files
        _check(computed, spine, events)
        start, end = datetime.fromtimestamp(T0 / 1000, UTC), datetime.fromtimestamp((T0 + SPAN) / 1000, UTC)
        for view in ("spend", "last_amount"):
            materialize_view("unused:9092", root, spec, view, start, end, online=False, offline=True)
        (data / "events.parquet").unlink()  # from here on only the materialized rows can answer
        materialized = get_features_for_events(spec, "svc", spine, root)
        _check(materialized, spine, events)


def test_a_development_workspace_computes_from_the_sources(tmp_path: Path) -> None:
    _write(tmp_path / "data", [("a", HOUR, 3)])
    spec = dataclasses.replace(_spec(tmp_path / "data"), live=False)
    open_store(tmp_path / "offline")
    spine = pd.DataFrame({"user_id": ["a"], "at": pd.to_datetime([T0 + 2 * HOUR], unit="ms", utc=True)})
    result = get_features_for_events(spec, "svc", spine, tmp_path / "offline", offline_data={})
    assert result["spend__amount_sum_3h_1h"].tolist() == [3.0]
    with pytest.raises(InvalidRequestError, match="development workspace"):
        materialize_view(
            "unused:9092",
            tmp_path / "offline",
            spec,
            "spend",
            datetime(2024, 5, 1, tzinfo=UTC),
            datetime(2024, 5, 2, tzinfo=UTC),
            online=False,
            offline=True,
        )


def test_get_features_in_range_of_a_batch_view(tmp_path: Path) -> None:
    _write(tmp_path / "data", [("a", HOUR, 3), ("a", 3 * HOUR, 4)])
    open_store(tmp_path / "offline")
    frame = get_features_in_range(
        _spec(tmp_path / "data"),
        "last_amount",
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 2, tzinfo=UTC),
        tmp_path / "offline",
    )
    values = frame["amount"].tolist()
    assert pd.isna(values[0]) and values[1:3] == [3.0, 4.0] and pd.isna(values[3])  # null again past the ttl
    assert frame["_valid_from"].iloc[1] == pd.Timestamp(T0 + HOUR + 1, unit="ms", tz="UTC")
    assert frame["_valid_from"].iloc[3] == pd.Timestamp(T0 + 8 * HOUR + 1, unit="ms", tz="UTC")  # [T - 5h, T)


# -- stream sources' history (batch_config) ---------------------------------------------------------
history = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
    batch_config=FileConfig(uri="/replaced/in/tests", file_format="parquet"),
)


@stream_feature_view(
    source=history,
    entities=[user],
    mode="pandas",
    features=[
        Aggregate(function="sum", time_window=timedelta(days=3), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(days=3), input_column=Field("amount", Float64)),
    ],
)
def click_spend(clicks):  # type: ignore[no-untyped-def]
    return clicks


STREAM = compile_workspace("w", [history, click_spend, FeatureService(name="clicks_svc", features=[click_spend])])


def test_stream_history_files_supply_only_events_older_than_the_store(tmp_path: Path) -> None:
    """The store holds the topic's retained events from ``cut`` on; the files hold history that
    overlaps them. Each event counts once: files before ``cut``, the store from ``cut``."""
    cut = T0 + 10 * HOUR
    file_events = [("a", T0 + h * HOUR, float(h)) for h in range(0, 20)]  # overlaps the store from 10h
    store_events = [("a", T0 + h * HOUR, float(h)) for h in range(10, 30)]
    folder = tmp_path / "history"
    folder.mkdir()
    pd.DataFrame(
        {
            "user_id": [e[0] for e in file_events],
            "amount": [e[2] for e in file_events],
            "ts": pd.to_datetime([e[1] for e in file_events], unit="ms", utc=True),
        }
    ).to_parquet(folder / "h.parquet")
    source = dataclasses.replace(STREAM.stream_sources[0], batch_config=FileConfigSpec(str(folder), "parquet", None))
    spec = dataclasses.replace(STREAM, stream_sources=(source,))
    root = tmp_path / "offline"
    open_store(root)
    frame = pd.DataFrame(
        {
            "user_id": [e[0] for e in store_events],
            "amount": [e[2] for e in store_events],
            "ts": pd.to_datetime([e[1] for e in store_events], unit="ms", utc=True),
        }
    )
    write_partition(root, "w", source, "clicks", 0, frame, np.arange(len(frame)))
    times = [T0 + 5 * HOUR, cut, T0 + 15 * HOUR, T0 + 40 * HOUR]
    spine = pd.DataFrame({"user_id": ["a"] * len(times), "at": pd.to_datetime(times, unit="ms", utc=True)})
    result = get_features_for_events(spec, "clicks_svc", spine, root)
    everything = {e[1]: e[2] for e in file_events if e[1] < cut} | {e[1]: e[2] for e in store_events}
    for i, t in enumerate(times):
        seen = [v for ts, v in everything.items() if t - 3 * 24 * HOUR <= ts < t]
        assert result["click_spend__amount_count_3d_continuous"].iloc[i] == len(seen)
        assert result["click_spend__amount_sum_3d_continuous"].iloc[i] == pytest.approx(sum(seen))


def test_a_cancelled_materialization_stops_between_chunks(tmp_path: Path) -> None:
    _write(tmp_path / "data", [("a", HOUR, 3), ("a", 30 * HOUR, 4)])
    spec = _spec(tmp_path / "data")
    calls: list[float] = []
    result = materialize_view(
        "unused:9092",
        tmp_path / "offline",
        spec,
        "last_amount",
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 3, tzinfo=UTC),
        online=False,
        offline=True,
        progress=calls.append,
        cancelled=lambda: len(calls) > 1,
    )  # after the first of two day-long chunks
    assert result.cancelled and result.rows_written == 1 and calls == [0.0, 0.5]
    with pytest.raises(InvalidRequestError, match="materialize at least one of online or offline"):
        materialize_view(
            "unused:9092",
            tmp_path / "offline",
            spec,
            "last_amount",
            datetime(2024, 5, 1, tzinfo=UTC),
            datetime(2024, 5, 3, tzinfo=UTC),
            online=False,
            offline=False,
        )
