"""Point-in-time training sets against a brute-force oracle of docs/design.md §4 (no Kafka).

Source files are written with the store module, as the offline materializer would write them.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.exceptions import InvalidRequestError, NotFoundError
from featurebus.platform.offline.store import open_store, write_partition
from featurebus.platform.training.spine import spine_times_ns
from featurebus.platform.training.training_sets import get_features_for_events, write_training_set
from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.streams.windows import window_bounds

MINUTE = 60_000
HOUR = 60 * MINUTE
INTERVAL = 10 * MINUTE
# 23:00 UTC: three hours of events cross midnight, so reads span two date folders.
T0 = int(pd.Timestamp("2024-03-10T23:00:00Z").value // 1_000_000)
TOPIC = "transactions"

SOURCE = StreamSourceSpec(
    "transactions",
    (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
    KafkaConfigSpec((TOPIC,), "ts"),
)
IDENTITY = TransformationSpec("pandas", "t", "def t(df):\n    return df\n")
WINDOWS = (("1m", MINUTE), ("1h", HOUR))


def _view(name: str, interval_ms: int | None) -> StreamFeatureViewSpec:
    suffix = "continuous" if interval_ms is None else "10m"
    return StreamFeatureViewSpec(
        name=name,
        source=SOURCE.name,
        entities=("user",),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=IDENTITY,
        aggregations=tuple(
            AggregationSpec(
                f"amount_{fn}_{label}_{suffix}",
                fn,
                "amount",
                "float64",
                window,
                "int64" if fn == "count" else "float64",
            )
            for label, window in WINDOWS
            for fn in ("count", "sum", "mean")
        ),
        aggregation_interval_ms=interval_ms,
    )


VIEWS = (_view("spend", None), _view("spend_tiled", INTERVAL))
SPEC = WorkspaceSpec(
    name="ws",
    entities=(EntitySpec("user", (FieldSpec("user_id", "string"),)),),
    stream_sources=(SOURCE,),
    stream_feature_views=VIEWS,
    feature_services=(
        FeatureServiceSpec(
            "svc", tuple(FeatureSelectionSpec(v.name, tuple(a.name for a in v.aggregations)) for v in VIEWS)
        ),
    ),
)

Event = tuple[str | None, int, float | None]  # user, ts_ms, amount


def _write_events(root: Path, events: list[Event], files: int = 3) -> None:
    """Spread events over two partitions and several flushes, with increasing offsets."""
    open_store(root)
    for partition in (0, 1):
        mine = events[partition::2]
        for chunk in np.array_split(np.arange(len(mine)), files):
            if not len(chunk):
                continue
            frame = pd.DataFrame(
                {
                    "user_id": [mine[i][0] for i in chunk],
                    "amount": [mine[i][2] for i in chunk],
                    "ts": pd.to_datetime([mine[i][1] for i in chunk], unit="ms", utc=True),
                }
            )
            write_partition(root, "ws", SOURCE, TOPIC, partition, frame, chunk + 1000)


def _oracle(events: list[Event], user: str, t_ms: int, view: StreamFeatureViewSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for a in view.aggregations:
        start, end = window_bounds(t_ms, a.window_ms, view.aggregation_interval_ms)
        amounts = [amt for u, ts, amt in events if u == user and start <= ts < end and amt is not None]
        if a.function == "count":
            values[a.name] = len(amounts)
        elif not amounts:
            values[a.name] = None
        elif a.function == "sum":
            values[a.name] = math.fsum(amounts)
        else:
            values[a.name] = math.fsum(amounts) / len(amounts)
    return values


def _assert_matches_oracle(result: pd.DataFrame, spine: pd.DataFrame, events: list[Event]) -> None:
    assert list(result.columns[: len(spine.columns)]) == list(spine.columns)
    pd.testing.assert_frame_equal(result[spine.columns], spine)  # every row, in order, untouched
    for position in range(len(spine)):
        user = spine["user_id"].iloc[position]
        t_ms = int(spine["at"].iloc[position].value // 1_000_000)
        for view in VIEWS:
            for name, expected in _oracle(events, user, t_ms, view).items():
                got = result[f"{view.name}__{name}"].iloc[position]
                where = f"row {position} ({user}, T={t_ms - T0} ms after T0) {view.name}__{name}"
                if expected is None:
                    assert pd.isna(got), f"{where}: expected null, got {got}"
                else:
                    assert not pd.isna(got), f"{where}: expected {expected}, got null"
                    assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {got} != {expected}"


def _spine(rows: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "at": pd.to_datetime([t for _, t in rows], unit="ms", utc=True),
            "label": np.arange(len(rows)),
        }
    )


# Boundary-heavy times: whole minutes and interval edges (where windows start and end), plus noise.
_OFFSETS = st.one_of(
    st.integers(0, 3 * HOUR),
    st.integers(0, 180).map(lambda m: m * MINUTE),
    st.integers(0, 18).map(lambda k: k * INTERVAL),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_brute_force_oracle(data: st.DataObject) -> None:
    spine_rows = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "c", "nobody"]), _OFFSETS.map(lambda o: T0 + o)),
            min_size=1,
            max_size=25,
        )
    )
    # Events exactly at spine times and at every window edge those times define, plus random ones.
    amounts = st.one_of(st.none(), st.floats(-1000, 1000, allow_nan=False), st.integers(-5, 5).map(float))
    # For some spine rows, events of the row's own user exactly at T and at every window edge
    # T defines (the ties where off-by-one errors live), plus events anywhere for anyone.
    events: list[Event] = []
    for user, t in spine_rows:
        tile_end = (t // INTERVAL) * INTERVAL
        edges = [t + d for d in (0, 1, -1, -MINUTE, -HOUR)] + [tile_end + d for d in (0, -1, -MINUTE, -HOUR)]
        picked = data.draw(st.lists(st.tuples(st.sampled_from(edges), amounts), max_size=4))
        events.extend((user, at, amount) for at, amount in picked)
    times = _OFFSETS.map(lambda o: T0 + o)
    events += data.draw(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), times, amounts), max_size=60))
    spine = _spine(spine_rows)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_events(root, events)
        result = get_features_for_events(SPEC, "svc", spine, root)
    _assert_matches_oracle(result, spine, events)


def test_no_leakage_from_events_at_or_after_t(tmp_path: Path) -> None:
    t = T0 + 30 * MINUTE
    events: list[Event] = [("a", t - 1, 1.0), ("a", t, 100.0), ("a", t + 1, 1000.0)]
    _write_events(tmp_path, events, files=1)
    # The later row makes the read range include the events at and after t: only the join decides.
    result = get_features_for_events(SPEC, "svc", _spine([("a", t), ("b", t + HOUR)]), tmp_path)
    assert result["spend__amount_count_1m_continuous"].tolist() == [1, 0]
    assert result["spend__amount_sum_1h_continuous"].tolist()[0] == 1.0
    # Interval mode: T is on a tile edge, so E = T and [E - W, E) excludes the same events.
    assert result["spend_tiled__amount_sum_1h_10m"].tolist()[0] == 1.0


def test_sub_millisecond_spine_times(tmp_path: Path) -> None:
    t = T0 + 30 * MINUTE
    _write_events(tmp_path, [("a", t, 5.0), ("a", t - MINUTE, 7.0)], files=1)
    at = pd.Timestamp(t, unit="ms", tz="UTC") + pd.Timedelta(microseconds=500)
    spine = pd.DataFrame({"user_id": ["a"], "at": [at]})
    result = get_features_for_events(SPEC, "svc", spine, tmp_path)
    # T = t + 0.5 ms: the event at t is before T; the one at t - 1 min is before T - 1 min.
    assert result["spend__amount_sum_1m_continuous"].tolist() == [5.0]
    assert result["spend__amount_count_1h_continuous"].tolist() == [2]


def test_duplicate_records_count_once(tmp_path: Path) -> None:
    t = T0 + 30 * MINUTE
    _write_events(tmp_path, [("a", t - 10, 2.0)], files=1)
    # The same Kafka record again under another file name (e.g. a restored backup).
    (written,) = tmp_path.glob("sources/ws/transactions/date=*/part-*.parquet")
    shutil.copy(written, written.with_name("part-transactions-0-990-1000.parquet"))
    result = get_features_for_events(SPEC, "svc", _spine([("a", t)]), tmp_path)
    assert result["spend__amount_count_1m_continuous"].tolist() == [1]


def test_rows_without_events_and_an_empty_store(tmp_path: Path) -> None:
    open_store(tmp_path)
    spine = _spine([("a", T0), ("b", T0 + HOUR)])
    result = get_features_for_events(SPEC, "svc", spine, tmp_path)
    assert result["spend__amount_count_1h_continuous"].tolist() == [0, 0]
    assert result["spend__amount_count_1h_continuous"].dtype == np.int64
    assert result["spend__amount_sum_1h_continuous"].isna().all()
    assert result["spend_tiled__amount_mean_1m_10m"].isna().all()


def test_keeps_spine_index_order_and_extra_columns(tmp_path: Path) -> None:
    events: list[Event] = [("a", T0 + i * MINUTE, float(i)) for i in range(30)]
    _write_events(tmp_path, events)
    spine = _spine([("a", T0 + i * 7 * MINUTE) for i in (4, 0, 3, 1)]).set_index(pd.Index([10, 3, 7, 1]))
    result = get_features_for_events(SPEC, "svc", spine, tmp_path)
    assert list(result.index) == [10, 3, 7, 1]
    assert result.columns[:3].tolist() == ["user_id", "at", "label"]
    _assert_matches_oracle(result.reset_index(drop=True), spine.reset_index(drop=True), events)


def test_integer_sums_stay_exact_integers(tmp_path: Path) -> None:
    source = StreamSourceSpec(
        "clicks",
        (FieldSpec("user_id", "int64"), FieldSpec("n", "int64"), FieldSpec("ts", "timestamp")),
        KafkaConfigSpec(("clicks",), "ts"),
    )
    view = StreamFeatureViewSpec(
        "clicks",
        "clicks",
        ("user",),
        ("user_id",),
        "ts",
        IDENTITY,
        (
            AggregationSpec("n_sum_1h", "sum", "n", "int64", HOUR, "int64"),
            AggregationSpec("n_mean_1h", "mean", "n", "int64", HOUR, "float64"),
        ),
    )
    spec = WorkspaceSpec(
        "ws",
        stream_sources=(source,),
        stream_feature_views=(view,),
        feature_services=(FeatureServiceSpec("s", (FeatureSelectionSpec("clicks", ("n_sum_1h", "n_mean_1h")),)),),
    )
    open_store(tmp_path)
    big = 2**60
    frame = pd.DataFrame({"user_id": [1, 1], "n": [big, 3], "ts": pd.to_datetime([T0, T0 + 1], unit="ms", utc=True)})
    write_partition(tmp_path, "ws", source, "clicks", 0, frame, [0, 1])
    spine = pd.DataFrame({"user_id": [1, 2], "ts": pd.to_datetime([T0 + MINUTE] * 2, unit="ms", utc=True)})
    result = get_features_for_events(spec, "s", spine, tmp_path)
    assert str(result["clicks__n_sum_1h"].dtype) == "Int64"
    assert result["clicks__n_sum_1h"].iloc[0] == big + 3
    assert result["clicks__n_sum_1h"].isna().tolist() == [False, True]
    assert result["clicks__n_mean_1h"].iloc[0] == pytest.approx((big + 3) / 2)
    # A string spine key for an integer join key is a clear error, not an empty join.
    with pytest.raises(InvalidRequestError, match="convert the spine column"):
        get_features_for_events(spec, "s", spine.astype({"user_id": str}), tmp_path)


def test_spine_errors_name_the_columns(tmp_path: Path) -> None:
    open_store(tmp_path)
    two = _spine([("a", T0)]).assign(other=pd.Timestamp("2024-01-01", tz="UTC"))
    with pytest.raises(InvalidRequestError, match=r"datetime columns \['at', 'other'\].*timestamp_key"):
        get_features_for_events(SPEC, "svc", two, tmp_path)
    assert "spend__amount_count_1m_continuous" in get_features_for_events(SPEC, "svc", two, tmp_path, "at")
    with pytest.raises(InvalidRequestError, match="no datetime column"):
        get_features_for_events(SPEC, "svc", pd.DataFrame({"user_id": ["a"]}), tmp_path)
    with pytest.raises(InvalidRequestError, match=r"lacks join key columns \['user_id'\]"):
        get_features_for_events(SPEC, "svc", _spine([("a", T0)]).rename(columns={"user_id": "uid"}), tmp_path)
    with pytest.raises(NotFoundError, match="no offline store"):
        get_features_for_events(SPEC, "svc", _spine([("a", T0)]), tmp_path / "missing")


def test_naive_spine_times_are_utc_and_training_sets_round_trip(tmp_path: Path) -> None:
    events: list[Event] = [("a", T0 - 5 * MINUTE, 4.0)]
    _write_events(tmp_path, events, files=1)
    spine = pd.DataFrame({"user_id": ["a"], "at": [pd.Timestamp(T0, unit="ms")]})  # naive
    result = get_features_for_events(SPEC, "svc", spine, tmp_path)
    assert result["spend__amount_sum_1h_continuous"].tolist() == [4.0]
    path = write_training_set(result, tmp_path / "out" / "train.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), result)


# -- every aggregation function: training set == engine tiles, and both == the oracle ---------------


def _all_functions_spec(interval_ms: int | None) -> WorkspaceSpec:
    import dataclasses

    from tests.support.all_functions import all_functions_view

    base = VIEWS[0] if interval_ms is None else VIEWS[1]
    windows = [("1m", MINUTE), ("1h", HOUR)] if interval_ms is None else [("1h", HOUR), ("20m", 2 * INTERVAL)]
    view = all_functions_view(base, windows, attribute_ttl_ms=30 * MINUTE if interval_ms is None else None)
    view = dataclasses.replace(view, name="every")
    source = dataclasses.replace(SOURCE, kafka=dataclasses.replace(SOURCE.kafka, watermark_delay_ms=100 * HOUR))
    return dataclasses.replace(
        SPEC,
        stream_sources=(source,),
        stream_feature_views=(view,),
        feature_services=(
            FeatureServiceSpec("svc", (FeatureSelectionSpec("every", tuple(a.name for a in view.aggregations)),)),
        ),
    )


def _plain(value: Any) -> Any:
    """A training-set cell as a Python value (NaN / <NA> -> None, numpy scalars -> Python)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return value
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), interval_ms=st.sampled_from([None, INTERVAL]))
def test_training_values_equal_engine_tiles_for_every_function(data: st.DataObject, interval_ms: int | None) -> None:
    """Parity by construction: the offline path runs the engine's aggregators, so for any history
    and spine the training set equals ``compute_values`` over the tiles the engine built from the
    same records in the same order (one partition: arrival order is offset order)."""
    import orjson

    from featurebus.platform.kv import MemoryStore
    from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine, compile_views
    from featurebus.streams.tiles import compute_values
    from tests.support.all_functions import derived, oracle_params
    from tests.support.engine_state import engine_tiles
    from tests.support.oracle import Event as OracleEvent
    from tests.support.oracle import feature_value, matches

    spec = _all_functions_spec(interval_ms)
    amounts = st.one_of(
        st.none(), st.floats(-1000, 1000, allow_nan=False).map(lambda x: round(x, 2)), st.integers(-9, 9).map(float)
    )
    events: list[Event] = data.draw(
        st.lists(st.tuples(st.sampled_from(["a", "b"]), _OFFSETS.map(lambda o: T0 + o), amounts), max_size=50)
    )
    spine_rows = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "nobody"]), _OFFSETS.map(lambda o: T0 + o)), min_size=1, max_size=12
        )
    )
    store = MemoryStore()
    engine = StreamEngine(spec, store, MemorySink(), lambda view: (f"features.{view}", 1))
    engine.process(
        [
            RawRecord(TOPIC, 0, i, orjson.dumps({"user_id": u, "amount": a, "ts": t}))
            for i, (u, t, a) in enumerate(events)
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        open_store(root)
        if events:
            frame = pd.DataFrame(
                {
                    "user_id": [e[0] for e in events],
                    "amount": [e[2] for e in events],
                    "ts": pd.to_datetime([e[1] for e in events], unit="ms", utc=True),
                }
            )
            write_partition(root, "ws", spec.stream_sources[0], TOPIC, 0, frame, np.arange(len(events)))
        result = get_features_for_events(spec, "svc", _spine(spine_rows), root)
    view = compile_views(spec)["every"]
    oracle_events = {c: [OracleEvent((u,), t, derived(a)[c]) for u, t, a in events] for c in ("amount", "units", "tag")}
    for position, (user, t_ms) in enumerate(spine_rows):
        online = compute_values(view, engine_tiles(store, "every", view.entity_key([user])), t_ms)
        for agg, served in zip(view.spec.aggregations, online, strict=True):
            offline = _plain(result[f"every__{agg.name}"].iloc[position])
            where = (position, user, t_ms - T0, agg.name, offline, served)
            if isinstance(served, float):
                assert offline is not None and math.isclose(offline, served, rel_tol=1e-9, abs_tol=1e-9), where
            else:
                assert offline == served, where
            want = feature_value(
                oracle_events[agg.input_column],
                (user,),
                t_ms,
                agg.function,
                agg.window_ms,
                None if agg.attribute else interval_ms,
                **oracle_params(agg),
            )
            assert matches(agg.function, offline, want, agg.precision), (*where, want)


def test_rows_whose_pairs_span_several_chunks_merge_their_partials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The (spine row, event) pairs stream out in chunks; a row cut between chunks merges its
    parts as tiles merge, so the answer does not depend on the chunk size."""
    from featurebus.platform.training import event_pairs
    from tests.support.all_functions import derived, oracle_params
    from tests.support.oracle import Event as OracleEvent
    from tests.support.oracle import feature_value, matches

    spec = _all_functions_spec(None)
    rng = np.random.default_rng(3)
    events: list[Event] = [("a", T0 - int(rng.integers(0, HOUR)), float(rng.integers(-50, 50))) for _ in range(6000)]
    _write_events(tmp_path, events)
    spine = _spine([("a", T0), ("a", T0 - 10 * MINUTE), ("b", T0)])
    whole = get_features_for_events(spec, "svc", spine, tmp_path)
    monkeypatch.setattr(event_pairs, "PAIR_CHUNK_ROWS", 1024)
    chunked = get_features_for_events(spec, "svc", spine, tmp_path)
    pd.testing.assert_frame_equal(whole, chunked, check_exact=False, rtol=1e-9)
    # _write_events spreads events over two partitions: arrival order there is per partition,
    # so compare with the oracle only where order cannot matter.
    view = spec.view("every")
    oracle_events = {c: [OracleEvent((u,), t, derived(a)[c]) for u, t, a in events] for c in ("amount", "units", "tag")}
    for agg in view.aggregations:
        if agg.function.startswith(("first", "last")):
            continue
        want = feature_value(
            oracle_events[agg.input_column], ("a",), T0, agg.function, agg.window_ms, None, **oracle_params(agg)
        )
        assert matches(agg.function, _plain(chunked[f"every__{agg.name}"].iloc[0]), want, agg.precision), agg.name


# -- window kinds: offsets, lifetime, series, and the leading edge ----------------------------

import dataclasses  # noqa: E402

from tests.support.oracle import Event as OracleEvent  # noqa: E402
from tests.support.oracle import close, value_of  # noqa: E402
from tests.support.window_specs import windowed_workspace  # noqa: E402


def _windowed_view(name: str, interval_ms: int | None, edge: str) -> StreamFeatureViewSpec:
    view = windowed_workspace(T0, interval_ms, leading_edge=edge).stream_feature_views[0]
    return dataclasses.replace(view, name=name, source=SOURCE.name, transformation=IDENTITY)


WINDOWED = tuple(
    _windowed_view(f"w_{label}_{edge[:6]}", interval, edge)
    for label, interval in (("cont", None), ("tiled", INTERVAL))
    for edge in ("wall_clock_time", "latest_event_time")
)
WINDOWED_SPEC = dataclasses.replace(
    SPEC,
    stream_feature_views=WINDOWED,
    feature_services=(
        FeatureServiceSpec(
            "svc", tuple(FeatureSelectionSpec(v.name, tuple(a.name for a in v.aggregations)) for v in WINDOWED)
        ),
    ),
)


def _reference_time(events: list[Event], t_ms: int, view: StreamFeatureViewSpec) -> int:
    """LATEST_EVENT_TIME: just after the newest source event before T (any entity), else T."""
    if view.aggregation_leading_edge == "wall_clock_time":
        return t_ms
    before = [ts for _, ts, _ in events if ts < t_ms]
    return max(before) + 1 if before else t_ms


def _assert_windowed_matches_oracle(result: pd.DataFrame, spine: pd.DataFrame, events: list[Event]) -> None:
    history = [OracleEvent((u,), ts, amount) for u, ts, amount in events]
    for position in range(len(spine)):
        user = spine["user_id"].iloc[position]
        t_ms = int(spine["at"].iloc[position].value // 1_000_000)
        for view in WINDOWED:
            reference = _reference_time(events, t_ms, view)
            for a in view.aggregations:
                expected = value_of(history, (user,), reference, a, view)
                got = result[f"{view.name}__{a.name}"].iloc[position]
                if got is pd.NA or (isinstance(got, float) and math.isnan(got)):
                    got = None
                elif not isinstance(got, list):  # a series window's value is a list already
                    got = got.item() if hasattr(got, "item") else got
                where = f"row {position} ({user}, T={t_ms - T0} ms after T0) {view.name}__{a.name}"
                assert close(got, expected), f"{where}: {got} != {expected}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_window_kinds_match_the_brute_force_oracle(data: st.DataObject) -> None:
    spine_rows = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "nobody"]), _OFFSETS.map(lambda o: T0 + o)), min_size=1, max_size=12
        )
    )
    amounts = st.one_of(st.none(), st.floats(-1000, 1000, allow_nan=False), st.integers(-5, 5).map(float))
    events: list[Event] = []
    for user, t in spine_rows:  # events on the edges each row's windows define
        tile_end = (t // INTERVAL) * INTERVAL
        edges = [t + d for d in (0, 1, -1, -HOUR, -90 * MINUTE, -2 * HOUR, -10 * MINUTE)]
        edges += [tile_end + d for d in (0, -1, -HOUR, -90 * MINUTE, -2 * HOUR)] + [
            T0 + 20 * MINUTE,
            T0 + 20 * MINUTE - 1,
        ]
        picked = data.draw(st.lists(st.tuples(st.sampled_from(edges), amounts), max_size=4))
        events.extend((user, at, amount) for at, amount in picked)
    events += data.draw(
        st.lists(st.tuples(st.sampled_from(["a", "b", None]), _OFFSETS.map(lambda o: T0 + o), amounts), max_size=40)
    )
    spine = _spine(spine_rows)
    with tempfile.TemporaryDirectory() as tmp:
        _write_events(Path(tmp), events)
        result = get_features_for_events(WINDOWED_SPEC, "svc", spine, Path(tmp))
    pd.testing.assert_frame_equal(result[spine.columns], spine)
    _assert_windowed_matches_oracle(result, spine, events)


def test_latest_event_time_with_events_only_at_or_after_t(tmp_path: Path) -> None:
    _write_events(tmp_path, [("a", T0, 1.0), ("a", T0 + 5, 2.0)], files=1)
    result = get_features_for_events(WINDOWED_SPEC, "svc", _spine([("a", T0)]), tmp_path)
    assert result[f"{WINDOWED[1].name}__amount_count_lifetime"].tolist() == [0]  # the edge stays at T


def test_window_kinds_on_rows_without_events(tmp_path: Path) -> None:
    _write_events(tmp_path, [("a", T0 + HOUR, 3.0)], files=1)
    result = get_features_for_events(WINDOWED_SPEC, "svc", _spine([("nobody", T0 + 2 * HOUR), ("a", T0)]), tmp_path)
    view = WINDOWED[0].name
    assert result[f"{view}__amount_count_lifetime"].tolist() == [0, 0]
    assert result[f"{view}__amount_sum_lifetime"].isna().all()
    assert result[f"{view}__amount_count_40m_series"].tolist() == [[0] * 8, [0] * 8]
    assert result[f"{view}__amount_mean_40m_series"].tolist() == [[None] * 8, [None] * 8]
    # LATEST_EVENT_TIME: no event before either row's time but a's own at T0 + 1 h, which is after
    # T0, so the second row keeps T0 as its edge; nothing counts for "nobody" either way.
    assert result[f"{WINDOWED[1].name}__amount_count_lifetime"].tolist() == [0, 0]
    # Half an hour past the event's hour: the wall clock's 1 h window has left it behind, the
    # latest event time's (ending just after it) still holds it.
    late = get_features_for_events(WINDOWED_SPEC, "svc", _spine([("a", T0 + 2 * HOUR + 30 * MINUTE)]), tmp_path)
    assert late[f"{WINDOWED[0].name}__amount_sum_1h"].isna().all()
    assert late[f"{WINDOWED[1].name}__amount_sum_1h"].tolist() == [3.0]


_KEYS = st.sampled_from(["a", "b", "c", None])


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            _KEYS,
            st.integers(0, 2),
            st.integers(-50, 50),
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
            st.one_of(st.none(), st.integers(-(2**40), 2**40)),
        ),
        max_size=60,
    ),
    rows=st.lists(
        st.tuples(st.one_of(_KEYS, st.just("nobody")), st.integers(0, 2), st.integers(-60, 60)), min_size=1, max_size=20
    ),
    windows=st.lists(st.integers(1, 120), min_size=1, max_size=3, unique=True),
)
def test_prefix_window_parts_equal_brute_force(
    events: list[tuple[str | None, int, int, float | None, int | None]],
    rows: list[tuple[str | None, int, int]],
    windows: list[int],
) -> None:
    """Two join keys (one nullable string, one int), float and int inputs with nulls, windows
    ending anywhere: each count and sum equals the events of the key in [end - W, end)."""
    from featurebus.platform.training.prefix import window_parts

    table = pa.table(
        {
            "k0": pa.array([e[0] for e in events], pa.string()),
            "k1": pa.array([e[1] for e in events], pa.int64()),
            "__ts": pa.array([e[2] for e in events], pa.int64()),
            "v0": pa.array([e[3] for e in events], pa.float64()),
            "v1": pa.array([e[4] for e in events], pa.int64()),
        }
    )
    spine_keys = {"k0": pa.array([r[0] for r in rows], pa.string()), "k1": pa.array([r[1] for r in rows], pa.int32())}
    ends = np.array([r[2] for r in rows], dtype=np.int64)
    needs = {
        (kind, name, w): f"a{i}_{kind}_{name}"
        for i, w in enumerate(windows)
        for kind in ("count", "sum")
        for name in ("x", "n")
    }
    result = window_parts(spine_keys, table, ends, needs, {"x": "v0", "n": "v1"}, {"x": False, "n": True})
    if not events or all(e[0] is None for e in events):
        assert result is None  # nothing to index: the caller's join handles it
        return
    assert result is not None
    for (kind, name, w), alias in needs.items():
        values, nulls = result[alias]
        for position, (key, key1, end) in enumerate(rows):
            column = 3 if name == "x" else 4
            inside = [
                e[column]
                for e in events
                if key is not None and e[0] == key and e[1] == key1 and end - w <= e[2] < end and e[column] is not None
            ]
            if kind == "count":
                assert values[position] == len(inside), (alias, position)
            elif not inside:
                assert nulls[position], (alias, position)
            else:
                assert not nulls[position]
                want = math.fsum(inside) if name == "x" else sum(inside)
                assert math.isclose(values[position], want, rel_tol=1e-9, abs_tol=1e-6), (
                    alias,
                    position,
                    values[position],
                    want,
                )
                if name == "n":
                    assert values[position] == want  # integer sums are exact


def test_prefix_declines_non_finite_inputs() -> None:
    from featurebus.platform.training.prefix import window_parts

    table = pa.table({"k0": ["a", "a"], "__ts": pa.array([1, 2], pa.int64()), "v0": [1.0, math.inf]})
    needs = {("sum", "x", 10): "s"}
    assert window_parts({"k0": pa.array(["a"])}, table, np.array([5]), needs, {"x": "v0"}, {"x": False}) is None


@pytest.mark.parametrize("interval_ms", [None, INTERVAL])
def test_time_sliced_spines_give_the_same_training_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval_ms: int | None
) -> None:
    """A store larger than ``_GROUP_EVENTS`` is processed in slices of consecutive spine dates;
    the result (every function, attributes, every column type, row order) does not change."""
    from featurebus.platform.training import training_sets as training

    day = 24 * HOUR
    rng = np.random.default_rng(5)
    # Six days of events, 40 per day (cutting groups into a few days), spine rows in random order.
    events: list[Event] = [
        (str(rng.choice(["a", "b"])), T0 + int(rng.integers(0, 6 * day)), float(rng.integers(-50, 50)))
        for _ in range(240)
    ]
    _write_events(tmp_path, events)
    spine = _spine([(str(rng.choice(["a", "b", "nobody"])), T0 + int(rng.integers(-day, 7 * day))) for _ in range(60)])
    spec = _all_functions_spec(interval_ms)
    whole = get_features_for_events(spec, "svc", spine, tmp_path)
    monkeypatch.setattr(training, "_GROUP_EVENTS", 50)
    groups = training._time_groups(tmp_path, (("ws", "transactions"),), spine_times_ns(spine, "at"), HOUR)
    assert len(groups) >= 3 and sorted(np.concatenate(groups)) == list(range(len(spine)))
    sliced = get_features_for_events(spec, "svc", spine, tmp_path)
    pd.testing.assert_frame_equal(whole, sliced)


# -- secondary keys: training set == engine tiles == the oracle, for every function ----------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), interval_ms=st.sampled_from([None, INTERVAL]), key=st.sampled_from(["tag", "units"]))
def test_secondary_key_aggregations_equal_engine_tiles_and_the_oracle(
    data: st.DataObject, interval_ms: int | None, key: str
) -> None:
    """``aggregation_secondary_key`` over every function: the engine's tiles served online, the
    training set, and a brute-force per-key oracle agree (arrays ordered by key)."""
    import dataclasses

    import orjson

    from featurebus.platform.kv import MemoryStore
    from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine, compile_views
    from featurebus.streams.tiles import compute_values
    from tests.support.all_functions import derived, keyed_view, oracle_params
    from tests.support.engine_state import engine_tiles
    from tests.support.oracle import Event as OracleEvent
    from tests.support.oracle import keyed_feature_value, matches

    base = _all_functions_spec(interval_ms)
    windows = [("1m", MINUTE), ("1h", HOUR)] if interval_ms is None else [("1h", HOUR), ("20m", 2 * INTERVAL)]
    view = dataclasses.replace(keyed_view(base.stream_feature_views[0], windows, key), name="every")
    spec = dataclasses.replace(
        base,
        stream_feature_views=(view,),
        feature_services=(
            FeatureServiceSpec("svc", (FeatureSelectionSpec("every", tuple(a.name for a in view.aggregations)),)),
        ),
    )
    amounts = st.one_of(
        st.none(), st.integers(-12, 12).map(float), st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 1))
    )
    events: list[Event] = data.draw(
        st.lists(st.tuples(st.sampled_from(["a", "b"]), _OFFSETS.map(lambda o: T0 + o), amounts), max_size=40)
    )
    spine_rows = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "nobody"]), _OFFSETS.map(lambda o: T0 + o)), min_size=1, max_size=10
        )
    )
    store = MemoryStore()
    engine = StreamEngine(spec, store, MemorySink(), lambda v: (f"features.{v}", 1))
    engine.process(
        [
            RawRecord(TOPIC, 0, i, orjson.dumps({"user_id": u, "amount": a, "ts": t}))
            for i, (u, t, a) in enumerate(events)
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        open_store(root)
        if events:
            frame = pd.DataFrame(
                {
                    "user_id": [e[0] for e in events],
                    "amount": [e[2] for e in events],
                    "ts": pd.to_datetime([e[1] for e in events], unit="ms", utc=True),
                }
            )
            write_partition(root, "ws", spec.stream_sources[0], TOPIC, 0, frame, np.arange(len(events)))
        result = get_features_for_events(spec, "svc", _spine(spine_rows), root)
    compiled = compile_views(spec)["every"]
    keys = [derived(a)[key] for _, _, a in events]
    oracle_events = {c: [OracleEvent((u,), t, derived(a)[c]) for u, t, a in events] for c in ("amount", "units", "tag")}
    for position, (user, t_ms) in enumerate(spine_rows):
        online = compute_values(compiled, engine_tiles(store, "every", compiled.entity_key([user])), t_ms)
        for agg, served in zip(compiled.spec.aggregations, online, strict=True):
            offline = _plain(result[f"every__{agg.name}"].iloc[position])
            where = (position, user, t_ms - T0, agg.name, offline, served)
            assert (offline is None) == (served is None), where
            if served is not None:
                assert len(offline) == len(served), where
                for got, want in zip(offline, served, strict=True):
                    if isinstance(want, float):
                        assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), where
                    else:
                        assert got == want, where
            expected = keyed_feature_value(
                oracle_events[agg.input_column], keys, (user,), t_ms, agg, interval_ms, **oracle_params(agg)
            )
            assert (offline is None) == (expected is None), (*where, expected)
            if expected is not None:
                assert len(offline) == len(expected), (*where, expected)
                for got, want in zip(offline, expected, strict=True):
                    assert matches(agg.function, got, want, agg.precision), (*where, expected)
