"""``source.select_range(start_time, end_time)`` with ``TectonTimeConstant``: compiled into the
spec, evaluated per materialization window in materialization jobs, training sets and ad hoc
reads alike, and refused at plan time (with file:line) when it can select nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pytest

from featurebus import (
    Attribute,
    BatchSource,
    Entity,
    Field,
    FileConfig,
    KafkaConfig,
    StreamSource,
    TectonTimeConstant,
    batch_feature_view,
    materialization_context,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.platform.batch.materialize import materialize_view
from featurebus.platform.batch.offline import read_rows
from featurebus.platform.training.batch_rows import batch_view_rows
from featurebus.schemas.specs import SPEC_FORMAT_VERSION, WorkspaceSpec
from featurebus.schemas.time_range import SourceRangeSpec, TimeBoundSpec, TimeReference, empty_range_reason
from featurebus.time_constants import FilterDateTime
from featurebus.types import Float64, Int64, String, Timestamp

DAY = 86_400_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
START = TectonTimeConstant.MATERIALIZATION_START_TIME
END = TectonTimeConstant.MATERIALIZATION_END_TIME


# -- the pure part ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (
            TimeBoundSpec(TimeReference.MATERIALIZATION_START_TIME, -2 * DAY),
            TimeBoundSpec(TimeReference.MATERIALIZATION_END_TIME),
            (8 * DAY, 11 * DAY),
        ),
        (
            TimeBoundSpec(TimeReference.UNBOUNDED_PAST),
            TimeBoundSpec(TimeReference.MATERIALIZATION_END_TIME, DAY),
            (None, 12 * DAY),
        ),
        (
            TimeBoundSpec(TimeReference.MATERIALIZATION_END_TIME, -DAY),
            TimeBoundSpec(TimeReference.UNBOUNDED_FUTURE),
            (10 * DAY, None),
        ),
        (
            TimeBoundSpec(TimeReference.FIXED, 3 * DAY),
            TimeBoundSpec(TimeReference.MATERIALIZATION_START_TIME),
            (3 * DAY, 10 * DAY),
        ),
    ],
)
def test_bounds_resolve_against_the_window(
    start: TimeBoundSpec, end: TimeBoundSpec, expected: tuple[int | None, int | None]
) -> None:
    assert SourceRangeSpec("s", start, end).resolve(10 * DAY, 11 * DAY) == expected


@pytest.mark.parametrize(
    ("start", "end", "empty"),
    [
        ("materialization_start_time", "materialization_end_time", False),
        ("materialization_end_time", "materialization_start_time", True),
        ("unbounded_future", "unbounded_future", True),
        ("unbounded_past", "unbounded_past", True),
        ("unbounded_past", "unbounded_future", False),
    ],
)
def test_empty_ranges_are_found(start: str, end: str, empty: bool) -> None:
    assert (
        empty_range_reason(TimeBoundSpec(TimeReference(start)), TimeBoundSpec(TimeReference(end))) is not None
    ) == empty


def test_constants_take_offsets_as_in_tecton() -> None:
    bound = START - timedelta(days=29)
    assert bound == FilterDateTime(START, -timedelta(days=29))
    assert (bound + timedelta(days=1)).offset == -timedelta(days=28)
    assert END + timedelta(hours=1) == FilterDateTime(END, timedelta(hours=1))
    with pytest.raises(ValueError, match="unbounded"):
        TectonTimeConstant.UNBOUNDED_PAST - timedelta(days=1)
    with pytest.raises(TypeError, match="timedelta"):
        START - 5  # type: ignore[operator]
    assert {c.value for c in TectonTimeConstant} <= {r.value for r in TimeReference}


# -- a view over a ranged source ------------------------------------------------------------------
user = Entity(name="user", join_keys=[Field("user_id", String)])


def _write_source(folder: Path) -> tuple[Path, list[tuple[str, int, float]]]:
    """One transaction per user and day (two users), 20 days from T0 - 5 days."""
    folder.mkdir(parents=True, exist_ok=True)
    events = [(u, T0 + (d - 5) * DAY + 3_600_000, float(d + 1)) for d in range(20) for u in ("a", "b")]
    pd.DataFrame(
        {
            "user_id": [e[0] for e in events],
            "ts": pd.to_datetime([e[1] for e in events], unit="ms", utc=True),
            "amount": [e[2] for e in events],
        }
    ).to_parquet(folder / "tx.parquet")
    return folder, events


def _rolling_sum(transactions, context=materialization_context()):  # type: ignore[no-untyped-def]
    # Tecton's "custom aggregation": one row per user at the window's end over the rows it read.
    out = transactions.groupby("user_id", as_index=False)["amount"].sum().rename(columns={"amount": "amount_3d"})
    out["ts"] = context.end_time - timedelta(milliseconds=1)
    return out


def _spec(folder: Path, start: object = START - timedelta(days=2), end: object = END) -> WorkspaceSpec:
    source = BatchSource(name="transactions", batch_config=FileConfig(uri=str(folder), timestamp_field="ts"))
    view = batch_feature_view(
        name="user_amount_3d",
        sources=[source.select_range(start_time=start, end_time=end)],  # type: ignore[arg-type]
        entities=[user],
        mode="pandas",
        offline=True,
        ttl=timedelta(days=1),
        timestamp_field="ts",
        batch_schedule=timedelta(days=1),
        features=[Attribute("amount_3d", Float64)],
    )(_rolling_sum)
    return compile_workspace("w", [user, view])


def _brute_force(events: list[tuple[str, int, float]], day_start: int) -> dict[str, float]:
    """Each user's amount in [window start - 2 days, window end) for the day starting at day_start."""
    out: dict[str, float] = {}
    for u, ts, amount in events:
        if day_start - 2 * DAY <= ts < day_start + DAY:
            out[u] = out.get(u, 0.0) + amount
    return out


def test_the_range_is_compiled_and_round_trips(tmp_path: Path) -> None:
    folder, _ = _write_source(tmp_path / "tx")
    spec = _spec(folder)
    ranges = spec.batch_view("user_amount_3d").source_ranges
    assert ranges == (
        SourceRangeSpec(
            "transactions",
            TimeBoundSpec(TimeReference.MATERIALIZATION_START_TIME, -2 * DAY),
            TimeBoundSpec(TimeReference.MATERIALIZATION_END_TIME, 0),
        ),
    )
    assert WorkspaceSpec.from_json(spec.to_json()) == spec
    assert spec.format_version == SPEC_FORMAT_VERSION >= 5  # 5 added the ranges


def test_a_version_4_document_reads_without_ranges(tmp_path: Path) -> None:
    folder, _ = _write_source(tmp_path / "tx")
    raw = orjson.loads(_spec(folder).to_json())
    raw["format_version"] = 4
    for view in raw["batch_feature_views"]:
        del view["source_ranges"]
    old = WorkspaceSpec.from_json(orjson.dumps(raw))
    assert old.batch_view("user_amount_3d").source_ranges == ()


def test_materialization_and_ad_hoc_reads_honour_the_range_per_window(tmp_path: Path) -> None:
    folder, events = _write_source(tmp_path / "tx")
    spec = _spec(folder)
    view = spec.batch_view("user_amount_3d")
    start, end = T0, T0 + 6 * DAY
    expected = [(day, u, v) for day in range(start, end, DAY) for u, v in sorted(_brute_force(events, day).items())]

    # Ad hoc (the training-set path over a view never materialized): computed window by window.
    rows, ts_ms = batch_view_rows(spec, view, tmp_path / "offline", None)(start, end)
    got = [(int(t) + 1 - DAY, u, v) for t, u, v in zip(ts_ms, rows["user_id"], rows["amount_3d"], strict=True)]
    assert sorted(got) == expected

    # A materialization job over the same range, in one call: the same rows.
    data_dir = tmp_path / "store"
    result = materialize_view(
        "127.0.0.1:1",
        data_dir,
        spec,
        "user_amount_3d",
        datetime.fromtimestamp(start / 1000, UTC),
        datetime.fromtimestamp(end / 1000, UTC),
        online=False,
        offline=True,
    )
    assert result.rows_written == len(expected)
    table = read_rows(data_dir, "w", "user_amount_3d", "ts", start, end)
    assert table is not None
    written = sorted(
        zip(
            (int(t.timestamp() * 1000) + 1 - DAY for t in table.column("ts").to_pylist()),
            table.column("user_id").to_pylist(),
            table.column("amount_3d").to_pylist(),
            strict=True,
        )
    )
    assert written == expected


def test_a_fixed_range_reads_only_its_rows(tmp_path: Path) -> None:
    folder, events = _write_source(tmp_path / "tx")
    fixed_start = datetime.fromtimestamp((T0 - 3 * DAY) / 1000, UTC)
    spec = _spec(folder, start=fixed_start, end=TectonTimeConstant.UNBOUNDED_FUTURE)
    view = spec.batch_view("user_amount_3d")
    rows, _ = batch_view_rows(spec, view, tmp_path / "offline", None)(T0, T0 + DAY)
    expected = sum(amount for u, ts, amount in events if u == "a" and ts >= T0 - 3 * DAY)
    assert rows.set_index("user_id")["amount_3d"]["a"] == expected  # everything after the fixed start


def test_a_stream_view_without_batch_history_refuses_a_ranged_source() -> None:
    # With history (feature_start_time and batch_config) it bounds the backfill: test_stream_backfill.py.
    clicks = StreamSource(
        name="clicks",
        schema=[Field("user_id", String), Field("n", Int64), Field("ts", Timestamp)],
        stream_config=KafkaConfig(topics="clicks", timestamp_field="ts"),
        batch_config=FileConfig(uri="/tmp/none"),
    )
    with pytest.raises(DefinitionError, match=r"StreamFeatureView 'clicks_n' .*select_range.*but the view has none"):
        stream_feature_view(
            name="clicks_n",
            source=clicks.select_range(),
            entities=[user],
            mode="pandas",  # type: ignore[arg-type]
            ttl=timedelta(days=1),
            features=[Attribute("n", Int64)],
        )(lambda clicks: clicks)


def test_plan_refuses_an_end_before_the_start_naming_file_and_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "features.py").write_text(
        textwrap.dedent("""\
        from datetime import timedelta
        from featurebus import BatchSource, FileConfig, TectonTimeConstant

        transactions = BatchSource(name="transactions", batch_config=FileConfig(uri="/tmp/x", timestamp_field="ts"))
        bounded = transactions.select_range(
            start_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
            end_time=TectonTimeConstant.MATERIALIZATION_START_TIME - timedelta(days=1),
        )
    """)
    )
    done = subprocess.run(
        [sys.executable, "-m", "featurebus", "plan", "--repo", str(repo), "--bootstrap", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "BatchSource 'transactions'" in output and "features.py:5" in output
    assert "selects no row" in output and "Traceback" not in output


def test_feature_start_time_bounds_the_output_not_what_the_range_reads(tmp_path: Path) -> None:
    folder, events = _write_source(tmp_path / "tx")
    source = BatchSource(name="transactions", batch_config=FileConfig(uri=str(folder), timestamp_field="ts"))
    view = batch_feature_view(
        name="user_amount_3d",
        sources=[source.select_range(START - timedelta(days=2), END)],
        entities=[user],
        mode="pandas",
        offline=True,
        ttl=timedelta(days=1),
        timestamp_field="ts",
        batch_schedule=timedelta(days=1),
        feature_start_time=datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC),
        features=[Attribute("amount_3d", Float64)],
    )(_rolling_sum)
    spec = compile_workspace("w", [user, view])
    rows, ts_ms = batch_view_rows(spec, spec.batch_view("user_amount_3d"), tmp_path / "offline", None)(T0, T0 + 4 * DAY)
    assert sorted({int(t) + 1 - DAY for t in ts_ms}) == [T0 + 2 * DAY, T0 + 3 * DAY]  # no row before the start
    first = rows[(ts_ms == T0 + 3 * DAY - 1) & (rows["user_id"] == "a").to_numpy()]["amount_3d"].tolist()
    assert first == [_brute_force(events, T0 + 2 * DAY)["a"]]  # read back 2 days before feature_start_time


def test_a_stream_sources_history_is_ranged_in_a_batch_view(tmp_path: Path) -> None:
    folder, events = _write_source(tmp_path / "tx")
    clicks = StreamSource(
        name="transactions",
        schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
        stream_config=KafkaConfig(topics="tx", timestamp_field="ts"),
        batch_config=FileConfig(uri=str(folder), timestamp_field="ts"),
    )
    view = batch_feature_view(
        name="user_amount_3d",
        sources=[clicks.select_range(TectonTimeConstant.UNBOUNDED_PAST, END)],
        entities=[user],
        mode="pandas",
        offline=True,
        ttl=timedelta(days=1),
        timestamp_field="ts",
        features=[Attribute("amount_3d", Float64)],
    )(_rolling_sum)
    spec = compile_workspace("w", [user, view])
    rows, _ = batch_view_rows(spec, spec.batch_view("user_amount_3d"), tmp_path / "offline", None)(T0, T0 + DAY)
    assert rows.set_index("user_id")["amount_3d"]["b"] == sum(a for u, ts, a in events if u == "b" and ts < T0 + DAY)


def test_an_incremental_view_is_computed_ad_hoc_window_by_window_as_materialized(tmp_path: Path) -> None:
    folder, events = _write_source(tmp_path / "tx")
    source = BatchSource(name="transactions", batch_config=FileConfig(uri=str(folder), timestamp_field="ts"))
    view = batch_feature_view(
        name="user_amount_1d",
        sources=[source],
        entities=[user],
        mode="pandas",
        offline=True,
        ttl=timedelta(days=1),
        timestamp_field="ts",
        batch_schedule=timedelta(days=1),
        incremental_backfills=True,
        features=[Attribute("amount_3d", Float64)],
    )(_rolling_sum)
    spec = compile_workspace("w", [user, view])
    start, end = T0, T0 + 4 * DAY
    rows, ts_ms = batch_view_rows(spec, spec.batch_view("user_amount_1d"), tmp_path / "offline", None)(start, end)
    # Each day's run sees only its own day (the default, filtered source) and writes at its end.
    expected = sorted(
        (day + DAY - 1, u, a) for u, ts, a in events for day in range(start, end, DAY) if day <= ts < day + DAY
    )
    assert sorted(zip(ts_ms.tolist(), rows["user_id"], rows["amount_3d"], strict=True)) == expected


def test_a_range_over_files_without_a_timestamp_field_is_refused_where_written() -> None:
    untimed = BatchSource(name="untimed", batch_config=FileConfig(uri="/tmp/none"))
    with pytest.raises(
        DefinitionError, match=r"BatchSource 'untimed' \(.*test_select_range.py:\d+\): .*timestamp_field"
    ):
        untimed.select_range(START, END)
    everything = untimed.select_range(TectonTimeConstant.UNBOUNDED_PAST, TectonTimeConstant.UNBOUNDED_FUTURE)
    assert repr(everything) == (
        "BatchSource('untimed').select_range(start_time=TectonTimeConstant.UNBOUNDED_PAST, "
        "end_time=TectonTimeConstant.UNBOUNDED_FUTURE)"
    )
