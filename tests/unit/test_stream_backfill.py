"""Stream views with batch history (streams/cutover.py), without a broker: the SDK's validation,
the cut-over fixed once and kept by plan, the backfill jobs' ranges, and the split itself: the
engine's stream tiles plus the backfill's batch tiles give the brute-force value over the union of
file rows and topic records, each event counted once, for random histories and cut-overs."""

from __future__ import annotations

import dataclasses
import itertools
import re
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus import (
    Aggregate,
    BatchTriggerType,
    Entity,
    Field,
    FileConfig,
    KafkaConfig,
    LifetimeWindow,
    StreamSource,
    TectonTimeConstant,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.platform.batch.stream_backfill import history_chunk_tiles, history_chunks, history_tiles
from featurebus.platform.jobs.schedule import stream_backfill_ranges
from featurebus.platform.kv import MemoryStore
from featurebus.platform.plan.diff import plan
from featurebus.platform.registry.cutover import fix_cutovers
from featurebus.platform.training.batch_rows import history_rows
from featurebus.schemas.encoding import decode_partials, split_tile_key
from featurebus.schemas.specs import StreamFeatureViewSpec, TransformationSpec, WorkspaceSpec
from featurebus.schemas.time_range import SourceRangeSpec, TimeBoundSpec, TimeReference
from featurebus.streams.cutover import history_pieces, history_range, history_read_range, stream_start_ms
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine, compile_views
from featurebus.streams.tiles import compute_values
from featurebus.types import Float64, String, Timestamp
from tests.support.oracle import Event, close, feature_value

THIS_FILE = re.escape(__file__)
HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


user = Entity(name="user", join_keys=[Field("user_id", String)])
SCHEMA = [Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)]
with_files = StreamSource(
    name="tx",
    schema=SCHEMA,
    stream_config=KafkaConfig(topics="tx", timestamp_field="ts"),
    batch_config=FileConfig(uri="/nowhere/tx.parquet", timestamp_field="ts"),
)
topic_only = StreamSource(
    name="tx_live", schema=SCHEMA, stream_config=KafkaConfig(topics="tx_live", timestamp_field="ts")
)


def _view(source: StreamSource = with_files, **overrides: Any) -> Any:
    def spend(tx):  # type: ignore[no-untyped-def]
        return tx[["user_id", "amount", "ts"]]

    params: dict[str, Any] = dict(
        source=source,
        entities=[user],
        mode="pandas",
        online=True,
        offline=True,
        aggregation_interval=timedelta(hours=1),
        features=[Aggregate(function="sum", time_window=timedelta(days=2), input_column=Field("amount", Float64))],
        feature_start_time=_at(T0),
        batch_schedule=timedelta(days=1),
    )
    params.update(overrides)
    return stream_feature_view(**params)(spend)


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("bad start type", {"feature_start_time": "2024-05-01"}, "feature_start_time must be a datetime", "Pass e.g."),
    ("bad schedule type", {"batch_schedule": 3600}, "batch_schedule must be a datetime.timedelta", "Pass e.g."),
    (
        "schedule not whole tiles",
        {"batch_schedule": timedelta(minutes=90)},
        "not a multiple of aggregation_interval",
        "whole number of aggregation intervals",
    ),
    (
        "interval not whole periods",
        {"max_backfill_interval": timedelta(hours=36)},
        "max_backfill_interval (1 day, 12:00:00) is not a multiple of batch_schedule",
        "whole number of batch_schedule periods",
    ),
    (
        "incremental and interval",
        {"incremental_backfills": True, "max_backfill_interval": timedelta(days=2)},
        "incremental_backfills=True already runs one job per batch_schedule period",
        "Remove max_backfill_interval or incremental_backfills",
    ),
    (
        "manual end before start",
        {"batch_trigger": BatchTriggerType.MANUAL, "manual_trigger_backfill_end_time": _at(T0 - DAY)},
        "is not after feature_start_time",
        "later than feature_start_time",
    ),
    (
        "manual end without manual trigger",
        {"manual_trigger_backfill_end_time": _at(T0 + DAY)},
        "applies to batch_trigger=BatchTriggerType.MANUAL only",
        "Pass batch_trigger=BatchTriggerType.MANUAL",
    ),
    ("trigger as a string", {"batch_trigger": "manual"}, "batch_trigger must be a BatchTriggerType", "Pass"),
    (
        "no start",
        {"feature_start_time": None},
        "there is no feature_start_time, so no history to backfill",
        "feature_start_time=",
    ),
    (
        "lifetime window",
        {
            "aggregation_interval": None,
            "lifetime_start_time": _at(T0),
            "features": [
                Aggregate(function="count", time_window=LifetimeWindow(), input_column=Field("amount", Float64))
            ],
        },
        "lifetime windows cannot be backfilled",
        "Remove feature_start_time",
    ),
]


@pytest.mark.parametrize(("case", "overrides", "problem", "fix"), INVALID, ids=[c[0] for c in INVALID])
def test_bad_batch_history_parameters_fail_naming_the_view_the_line_and_the_fix(
    case: str, overrides: dict[str, Any], problem: str, fix: str
) -> None:
    with pytest.raises(DefinitionError) as failure:
        _view(**overrides)
    message = str(failure.value)
    assert "StreamFeatureView 'spend'" in message
    assert re.search(THIS_FILE + r":\d+", message), message
    assert problem in message and fix in message, message


def test_batch_parameters_on_a_source_without_files_fail_with_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"source 'tx_live' has no batch_config to backfill from.*batch_config="):
        _view(source=topic_only)
    # feature_start_time alone is fine there: it only bounds what the stream counts.
    view = _view(source=topic_only, batch_schedule=None)
    spec = compile_workspace("w", [user, topic_only, view]).view("spend")
    assert (spec.feature_start_ms, spec.backfill_from_batch, stream_start_ms(spec)) == (T0, False, T0)


def _workspace(*views: Any) -> WorkspaceSpec:
    return compile_workspace("w", [user, with_files, *views])


def test_the_parameters_compile_and_the_cut_over_is_fixed_once() -> None:
    view = _view(max_backfill_interval=timedelta(days=2))
    spec = _workspace(view).view("spend")
    assert (spec.feature_start_ms, spec.backfill_from_batch, spec.stream_cutover_ms) == (T0, True, None)
    assert (spec.batch_schedule_ms, spec.max_backfill_interval_ms) == (DAY, 2 * DAY)
    assert history_range(spec) is None  # not applied: no cut-over yet

    # Fixed at apply from the topic's earliest retained events (the latest of the partitions').
    applied = fix_cutovers(_workspace(view), T0 + 9 * DAY, lambda source: [T0 + 5 * DAY, T0 + 6 * DAY])
    assert applied.view("spend").stream_cutover_ms == T0 + 6 * DAY
    # No record on the topic: the apply time.
    assert fix_cutovers(_workspace(view), T0 + 9 * DAY, lambda s: []).view("spend").stream_cutover_ms == T0 + 9 * DAY

    # A re-apply of the same definitions changes nothing, and keeps the cut-over.
    again = plan(applied, _workspace(view))
    assert again.is_empty
    # A changed window re-materializes (jobs and a stream rebuild) but keeps the cut-over.
    longer = _view(
        features=[Aggregate(function="sum", time_window=timedelta(days=3), input_column=Field("amount", Float64))],
        max_backfill_interval=timedelta(days=2),
    )
    changes = plan(applied, _workspace(longer))
    change = next(c for c in changes.changes if c.name == "spend")
    assert change.rematerialize
    assert changes.apply_to(applied).view("spend").stream_cutover_ms == T0 + 6 * DAY
    # A new cut-over is never fixed over an existing one.
    kept = fix_cutovers(changes.apply_to(applied), T0 + 20 * DAY, lambda s: [T0 + 19 * DAY])
    assert kept.view("spend").stream_cutover_ms == T0 + 6 * DAY


def _applied(cutover_ms: int, **overrides: Any) -> StreamFeatureViewSpec:
    spec = _workspace(_view(**overrides)).view("spend")
    return dataclasses.replace(spec, stream_cutover_ms=cutover_ms)


def test_backfill_jobs_are_cut_as_tecton_cuts_them() -> None:
    cut = T0 + 5 * DAY + 7 * HOUR
    one = stream_backfill_ranges(_applied(cut), "history")
    assert [(r.job_id, r.start_ms, r.end_ms) for r in one] == [("history-spend-backfill", T0, cut)]
    chunked = stream_backfill_ranges(_applied(cut, max_backfill_interval=timedelta(days=2)), "history")
    assert [(r.start_ms, r.end_ms) for r in chunked] == [
        (T0, T0 + 2 * DAY),
        (T0 + 2 * DAY, T0 + 4 * DAY),
        (T0 + 4 * DAY, cut),
    ]
    incremental = stream_backfill_ranges(_applied(cut, incremental_backfills=True), "p")
    assert [r.start_ms for r in incremental] == [T0 + i * DAY for i in range(6)] and incremental[-1].end_ms == cut
    assert len({r.job_id for r in incremental}) == 6
    # Manual: nothing on apply, unless up to manual_trigger_backfill_end_time (whole periods).
    assert stream_backfill_ranges(_applied(cut, batch_trigger=BatchTriggerType.MANUAL), "h") == []
    manual = stream_backfill_ranges(
        _applied(cut, batch_trigger=BatchTriggerType.MANUAL, manual_trigger_backfill_end_time=_at(T0 + 2 * DAY + HOUR)),
        "h",
    )
    assert [(r.start_ms, r.end_ms) for r in manual] == [(T0, T0 + 2 * DAY)]
    # NO_BATCH_MATERIALIZATION: no history at all; the stream counts from feature_start_time.
    none = _workspace(_view(batch_trigger=BatchTriggerType.NO_BATCH_MATERIALIZATION, batch_schedule=None)).view("spend")
    assert not none.backfill_from_batch and stream_backfill_ranges(none, "h") == []


def test_history_chunks_are_whole_tiles_and_only_the_cut_over_ends_inside_one() -> None:
    view = _applied(T0 + 2 * DAY + 30 * 60_000)  # the cut-over is mid-tile
    chunks = history_chunks(view, T0 - DAY, T0 + 10 * DAY)
    assert chunks[0][0] == T0 and chunks[-1][1] == T0 + 2 * DAY + 30 * 60_000
    assert all(lo % HOUR == 0 for lo, _ in chunks) and all(hi % HOUR == 0 for _, hi in chunks[:-1])
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))


_PANDAS = TransformationSpec("pandas", "t", "def t(df):\n    df['amount'] = df['amount'] * 2\n    return df\n")
_PYTHON = TransformationSpec("python", "t", "def t(row):\n    return {**row, 'amount': row['amount'] * 2}\n")


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 10 * 12), st.integers(-50, 50)), min_size=1, max_size=60
    ),
    start_slot=st.integers(0, 40),
    cut_slot=st.integers(0, 120),
    files_end_slot=st.integers(0, 120),
    topic_start_slot=st.integers(0, 120),
    mode=st.sampled_from([_PANDAS, _PYTHON]),
    interval=st.sampled_from([None, HOUR]),
)
def test_stream_tiles_plus_backfilled_tiles_equal_the_brute_force_over_the_union(
    events: list[tuple[str, int, int]],
    start_slot: int,
    cut_slot: int,
    files_end_slot: int,
    topic_start_slot: int,
    mode: TransformationSpec,
    interval: int | None,
) -> None:
    slot = 5 * 60_000  # events on a 5-minute grid over 10 hours: ties on tile edges and on the cut-over
    base = _workspace(_view(aggregation_interval=None if interval is None else timedelta(milliseconds=interval)))
    view = dataclasses.replace(
        base.view("spend"),
        transformation=mode,
        feature_start_ms=T0 + start_slot * slot,
        stream_cutover_ms=T0 + max(cut_slot, start_slot) * slot,
    )
    spec = dataclasses.replace(base, stream_feature_views=(view,))
    # The files hold the events before files_end, the topic those from topic_start: every event
    # is in at least one of them when the cut-over is in [topic_start, files_end] (as the rule
    # picks it: no later than the topic's first records, the files reaching it).
    cut = view.stream_cutover_ms
    assert cut is not None
    files_end, topic_start = max(files_end_slot * slot, cut - T0) + T0, min(topic_start_slot * slot, cut - T0) + T0
    history = [(u, T0 + s * slot, a) for u, s, a in events]
    in_files = [e for e in history if e[1] < files_end]
    on_topic = [e for e in history if e[1] >= topic_start]

    engine_store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(spec, engine_store, sink, lambda v: (f"features.{v}", 1))
    engine.process(
        [
            RawRecord("tx", 0, i, orjson.dumps({"user_id": u, "amount": a, "ts": t}), t)
            for i, (u, t, a) in enumerate(on_topic)
        ]
    )
    compiled = compile_views(spec)["spend"]
    files = pa.table(
        {
            "user_id": [u for u, _, _ in in_files],
            "amount": pa.array([float(a) for _, _, a in in_files], pa.float64()),
            "ts": pa.array([t for _, t, _ in in_files], pa.timestamp("ms", tz="UTC")),
        }
    )
    bounds = history_range(view)
    assert bounds is not None
    batch = [
        tile for lo, hi in history_chunks(view, bounds[0], bounds[1]) for tile in history_tiles(compiled, files, lo, hi)
    ]
    latest: dict[bytes, bytes | None] = {}
    for _, _, key, value in sink.records:
        latest[key] = value
    tiles: dict[bytes, list[tuple[int, list[Any]]]] = {}
    for key, value in latest.items():
        if value is not None:
            entity, start, _ = split_tile_key(key)
            tiles.setdefault(entity, []).append((start, decode_partials(value)))
    for tile in batch:
        tiles.setdefault(tile.entity_key, []).append((tile.tile_start_ms, tile.partials))

    counted = [Event((u,), t, 2.0 * a) for u, t, a in history if t >= view.feature_start_ms]
    aggregation = view.aggregations[0]
    for t in range(T0, T0 + 11 * HOUR, 20 * 60_000):
        for name in ("a", "b"):
            got = compute_values(compiled, tiles.get(compiled.entity_key([name]), []), t)[0]
            want = feature_value(counted, (name,), t, "sum", aggregation.window_ms, interval)
            assert close(got, want), (name, t, got, want)


def test_apply_fixes_the_cut_over_and_queues_the_backfill_and_a_re_apply_keeps_both() -> None:
    from featurebus.platform.control.guard import Call
    from featurebus.platform.jobs.client import submit_materialization
    from featurebus.schemas.errors import InvalidRequestError
    from featurebus.schemas.specs import FileConfigSpec
    from tests.support.control import control_fixture, spec_json
    from tests.support.specs import spending_workspace

    fixture = control_fixture()
    base = spending_workspace(name="a")
    start = T0 - 30 * DAY
    view = dataclasses.replace(
        base.stream_feature_views[0], feature_start_ms=start, backfill_from_batch=True, batch_schedule_ms=DAY
    )
    source = dataclasses.replace(base.stream_sources[0], batch_config=FileConfigSpec("/nowhere/tx.parquet"))
    desired = spec_json("a", stream_feature_views=(view,), stream_sources=(source,))
    editor = Call(f"Bearer {fixture.secrets['p-editor']}", "p-editor")

    applied = fixture.plane.definitions.apply(editor, "a", desired, 1)
    assert applied["applied"] and applied["backfillJobs"] == [
        "apply-v2-user_spending-backfill"
    ]  # the view existed: re-materialized
    current = fixture.registry.get("a")
    assert current is not None
    cutover = current.view("user_spending").stream_cutover_ms
    assert cutover is not None and cutover > T0  # an in-memory registry has no topic: the apply time
    job = fixture.registry.jobs("a").get("apply-v2-user_spending-backfill")
    assert job is not None and (job.start_ms, job.end_ms, job.online, job.offline) == (
        start // DAY * DAY,
        cutover,
        True,
        False,
    )

    again = fixture.plane.definitions.apply(editor, "a", desired, current.version)
    assert not again["applied"]  # nothing changed: the cut-over stays where the first apply put it

    # A manual run of part of the history is a job like a batch view's; a view without history is refused.
    # (It overlaps the queued backfill: refused unless asked for, as for batch views.)
    with pytest.raises(InvalidRequestError, match="overlapping range"):
        submit_materialization(fixture.registry.jobs("a"), current, "user_spending", start, start + DAY, T0)
    manual = submit_materialization(
        fixture.registry.jobs("a"), current, "user_spending", start, start + DAY, T0, overwrite=True
    )
    assert (manual.online, manual.offline) == (True, False)
    with pytest.raises(InvalidRequestError, match="writes online only"):
        submit_materialization(
            fixture.registry.jobs("a"), current, "user_spending", start, start + DAY, T0, offline=True, overwrite=True
        )
    plain = spending_workspace(name="a")
    with pytest.raises(InvalidRequestError, match="without batch history"):
        submit_materialization(fixture.registry.jobs("a"), plain, "user_spending", start, start + DAY, T0)


def test_views_without_history_keep_the_fingerprint_they_had_before_batch_history_existed() -> None:
    """An upgrade must not make the worker recompute every view: the batch-history, data-quality
    and secondary-key fields at their defaults leave the hash as it was without them; setting the
    history changes it (the stream's share of events changed)."""
    import hashlib

    from featurebus.schemas.materialization import SOURCE_HARMLESS, VIEW_HARMLESS, fingerprint
    from tests.support.specs import spending_workspace

    spec = spending_workspace()
    view, source = spec.stream_feature_views[0], spec.stream_sources[0]
    history_fields = {
        "feature_start_ms", "backfill_from_batch", "stream_cutover_ms", "batch_schedule_ms", "batch_trigger",
        "manual_trigger_backfill_end_ms", "max_backfill_interval_ms", "incremental_backfills", "source_range",
    }  # fmt: skip
    before = {k: v for k, v in dataclasses.asdict(view).items() if k not in history_fields | VIEW_HARMLESS}
    secondary_key_fields = {"secondary_key", "secondary_key_dtype", "keys_feature"}  # added with issue 16 too
    before["aggregations"] = [
        {k: v for k, v in a.items() if k not in secondary_key_fields} for a in before["aggregations"]
    ]
    source_part = {k: v for k, v in dataclasses.asdict(source).items() if k not in SOURCE_HARMLESS}
    source_part["kafka"] = {k: v for k, v in source_part["kafka"].items() if f"kafka.{k}" not in SOURCE_HARMLESS}
    payload = orjson.dumps({"view": before, "source": source_part}, option=orjson.OPT_SORT_KEYS)
    assert fingerprint(view, source) == hashlib.sha256(payload).hexdigest()[:16]
    assert fingerprint(dataclasses.replace(view, stream_cutover_ms=T0, backfill_from_batch=True), source) != (
        fingerprint(view, source)
    )


# -- select_range on a stream view's source: bounds what each backfill window reads ----------------


def test_a_ranged_stream_source_compiles_to_the_views_range_and_fails_where_it_means_nothing() -> None:
    ranged = with_files.select_range(
        start_time=TectonTimeConstant.MATERIALIZATION_START_TIME - timedelta(hours=2),
        end_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
    )
    spec = _workspace(_view(source=ranged)).view("spend")
    assert spec.source == "tx" and spec.source_range is not None
    assert spec.source_range.resolve(T0, T0 + DAY) == (T0 - 2 * HOUR, T0 + DAY)
    # End before start: refused where select_range is called, naming the source and the line.
    with pytest.raises(DefinitionError) as failure:
        with_files.select_range(
            start_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
            end_time=TectonTimeConstant.MATERIALIZATION_START_TIME,
        )
    message = str(failure.value)
    assert "StreamSource 'tx'" in message and "selects no row" in message
    assert re.search(THIS_FILE + r":\d+", message), message
    # No batch history (no feature_start_time): the range would bound nothing.
    with pytest.raises(DefinitionError) as failure:
        _view(source=ranged, feature_start_time=None, batch_schedule=None)
    message = str(failure.value)
    assert "StreamFeatureView 'spend'" in message and "but the view has none" in message
    assert re.search(THIS_FILE + r":\d+", message) and "feature_start_time=" in message, message
    # Changing the range changes the backfilled values: the plan re-materializes.
    applied = fix_cutovers(_workspace(_view()), T0 + 9 * DAY, lambda s: [])
    change = next(c for c in plan(applied, _workspace(_view(source=ranged))).changes if c.name == "spend")
    assert change.rematerialize and "source_range" in change.reason


def test_a_moving_range_is_evaluated_per_batch_schedule_window() -> None:
    ranged = with_files.select_range(
        start_time=TectonTimeConstant.MATERIALIZATION_START_TIME + timedelta(hours=1),
        end_time=TectonTimeConstant.MATERIALIZATION_END_TIME - timedelta(hours=2),
    )
    cut = T0 + 2 * DAY + 5 * HOUR
    view = _applied(cut, source=ranged, batch_schedule=timedelta(hours=6))
    chunks = history_chunks(view, T0, cut)
    # One chunk per 6-hour window (the last ends at the cut-over), whatever the jobs cover.
    assert chunks == [(T0 + 6 * HOUR * i, min(cut, T0 + 6 * HOUR * (i + 1))) for i in range(9)]
    assert history_chunks(view, T0 + 6 * HOUR, T0 + 18 * HOUR) == chunks[1:3]
    # Each window reads [its start + 1h, its end - 2h); the last, cut at +5h, reads [+1h, +4h).
    assert [history_read_range(view, lo, hi) for lo, hi in chunks[:2]] == [
        (T0 + HOUR, T0 + 4 * HOUR),
        (T0 + 7 * HOUR, T0 + 10 * HOUR),
    ]
    assert history_read_range(view, *chunks[-1]) == (T0 + 2 * DAY + HOUR, T0 + 2 * DAY + 4 * HOUR)
    # A piece of a window is still evaluated for the whole window (a manual run, a training read).
    assert history_read_range(view, T0 + 3 * HOUR, T0 + 5 * HOUR) == (T0 + 3 * HOUR, T0 + 4 * HOUR)
    assert history_read_range(view, T0 + 4 * HOUR, T0 + 6 * HOUR) is None
    assert history_pieces(view, T0 + 3 * HOUR, T0 + 13 * HOUR) == [
        (T0 + 3 * HOUR, T0 + 6 * HOUR),
        (T0 + 6 * HOUR, T0 + 12 * HOUR),
        (T0 + 12 * HOUR, T0 + 13 * HOUR),
    ]
    # A fixed range does not move with the window: day-long chunks, one training piece.
    fixed = _applied(
        cut,
        source=with_files.select_range(start_time=_at(T0 + 30 * HOUR), end_time=TectonTimeConstant.UNBOUNDED_FUTURE),
    )
    assert history_chunks(fixed, T0, cut)[0] == (T0, T0 + DAY)
    assert history_pieces(fixed, T0, cut) == [(T0, cut)]
    assert history_read_range(fixed, T0, T0 + DAY) is None
    assert history_read_range(fixed, T0 + DAY, T0 + 2 * DAY) == (T0 + 30 * HOUR, T0 + 2 * DAY)


_BOUND_KINDS = ["start", "end", "unbounded", "fixed"]


def _bound(kind: str, offset_slots: int, start: bool, slot: int) -> TimeBoundSpec:
    if kind == "unbounded":
        return TimeBoundSpec(TimeReference.UNBOUNDED_PAST if start else TimeReference.UNBOUNDED_FUTURE)
    if kind == "fixed":
        return TimeBoundSpec(TimeReference.FIXED, T0 + offset_slots * slot)
    reference = TimeReference.MATERIALIZATION_START_TIME if kind == "start" else TimeReference.MATERIALIZATION_END_TIME
    return TimeBoundSpec(reference, offset_slots * slot)


def _in_range(t: int, window_ms: int, bounds: list[tuple[str, int]], slot: int) -> bool:
    """Brute force: ``t``'s window is the batch_schedule period holding it; each bound by hand."""
    window_start = t // window_ms * window_ms
    (start_kind, start_slots), (end_kind, end_slots) = bounds
    values = []
    for kind, slots in ((start_kind, start_slots), (end_kind, end_slots)):
        values.append(
            None
            if kind == "unbounded"
            else T0 + slots * slot
            if kind == "fixed"
            else window_start + (0 if kind == "start" else window_ms) + slots * slot
        )
    return (values[0] is None or t >= values[0]) and (values[1] is None or t < values[1])


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 10 * 12), st.integers(-50, 50)), min_size=1, max_size=60
    ),
    start_slot=st.integers(0, 40),
    cut_slot=st.integers(0, 120),
    job_split_hours=st.integers(0, 10),
    start_bound=st.tuples(st.sampled_from(_BOUND_KINDS), st.integers(-30, 30)),
    end_bound=st.tuples(st.sampled_from(_BOUND_KINDS), st.integers(-30, 30)),
    schedule_hours=st.sampled_from([1, 2, 3]),
    mode=st.sampled_from([_PANDAS, _PYTHON]),
    interval=st.sampled_from([None, HOUR]),
)
def test_backfilled_tiles_and_training_rows_equal_the_brute_force_over_the_selected_history(
    events: list[tuple[str, int, int]],
    start_slot: int,
    cut_slot: int,
    job_split_hours: int,
    start_bound: tuple[str, int],
    end_bound: tuple[str, int],
    schedule_hours: int,
    mode: TransformationSpec,
    interval: int | None,
) -> None:
    slot = 5 * 60_000
    schedule_ms = schedule_hours * HOUR
    base = _workspace(
        _view(
            aggregation_interval=None if interval is None else timedelta(milliseconds=interval),
            batch_schedule=timedelta(milliseconds=schedule_ms),
        )
    )
    selected = SourceRangeSpec(
        "tx", _bound(*start_bound, start=True, slot=slot), _bound(*end_bound, start=False, slot=slot)
    )
    view = dataclasses.replace(
        base.view("spend"),
        transformation=mode,
        feature_start_ms=T0 + start_slot * slot,
        stream_cutover_ms=T0 + max(cut_slot, start_slot) * slot,
        source_range=selected,
    )
    spec = dataclasses.replace(base, stream_feature_views=(view,))
    history = [(u, T0 + s * slot, a) for u, s, a in events]
    files = pa.table(
        {
            "user_id": [u for u, _, _ in history],
            "amount": pa.array([float(a) for _, _, a in history], pa.float64()),
            "ts": pa.array([t for _, t, _ in history], pa.timestamp("ms", tz="UTC")),
        }
    )
    asked: list[tuple[int, int]] = []

    def read(lo: int, hi: int) -> pa.Table:
        asked.append((lo, hi))
        stamps = pc.cast(files.column("ts"), pa.int64())
        return files.filter(pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi)))

    bounds = history_range(view)
    assert bounds is not None and view.feature_start_ms is not None and view.stream_cutover_ms is not None
    # The backfill cut into two jobs at a tile boundary: the values do not depend on the cut.
    split = min(max(bounds[0], T0 + job_split_hours * HOUR), bounds[1])
    compiled = compile_views(spec)["spend"]
    # Keyed as on the feature topic, (entity, tile start): a re-written tile replaces the old one.
    published: dict[tuple[bytes, int], list[Any]] = {}
    for job_lo, job_hi in ((bounds[0], split), (split, bounds[1])):
        for lo, hi in history_chunks(view, job_lo, job_hi):
            for tile in history_chunk_tiles(compiled, read, lo, hi)[1]:
                published[(tile.entity_key, tile.tile_start_ms)] = tile.partials
    tiles: dict[bytes, list[tuple[int, list[Any]]]] = {}
    for (entity, start), partials in published.items():
        tiles.setdefault(entity, []).append((start, partials))
    assert all(lo < hi for lo, hi in asked)  # an empty selection reads nothing

    counted = [
        (u, t, 2.0 * a)
        for u, t, a in history
        if view.feature_start_ms <= t < view.stream_cutover_ms
        and _in_range(t, schedule_ms, [start_bound, end_bound], slot)
    ]
    aggregation = view.aggregations[0]
    oracle = [Event((u,), t, a) for u, t, a in counted]
    for t in range(T0, T0 + 11 * HOUR, 20 * 60_000):
        for name in ("a", "b"):
            got = compute_values(compiled, tiles.get(compiled.entity_key([name]), []), t)[0]
            want = feature_value(oracle, (name,), t, "sum", aggregation.window_ms, interval)
            assert close(got, want), (name, t, got, want)

    # Training sets read the same rows from the files (over the history: events.py clamps), in time order.
    with tempfile.TemporaryDirectory() as folder:
        pq.write_table(files, f"{folder}/tx.parquet")
        source = spec.source("tx")
        assert source.batch_config is not None
        source = dataclasses.replace(source, batch_config=dataclasses.replace(source.batch_config, uri=folder))
        pieces = history_rows(source, view, *bounds)
    rows = [
        (u, int(t), float(a))
        for frame, ts_ms in pieces
        for u, t, a in zip(frame["user_id"], ts_ms, frame["amount"], strict=True)
    ]
    assert [t for _, t, _ in rows] == sorted(t for _, t, _ in rows)
    assert sorted(rows) == sorted(counted)


def test_local_get_features_for_events_reads_the_ranged_history_as_jobs_do() -> None:
    ranged = with_files.select_range(
        start_time=TectonTimeConstant.MATERIALIZATION_START_TIME + timedelta(hours=1),
        end_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
    )
    view = _view(
        source=ranged,
        batch_schedule=timedelta(hours=2),
        features=[Aggregate(function="count", time_window=timedelta(days=1), input_column=Field("amount", Float64))],
    )
    rows = pd.DataFrame(
        {"user_id": ["a"] * 10, "amount": [1.0] * 10, "ts": [_at(T0 + i * 30 * 60_000) for i in range(10)]}
    )
    spine = pd.DataFrame({"user_id": ["a"], "ts": [_at(T0 + 6 * HOUR)]})
    got = view.get_features_for_events(spine, mock_inputs={"tx": rows}).to_pandas()
    # Events every 30 minutes over [0h, 5h); 2-hour windows keep their second hour: 1:00, 1:30, 3:00, 3:30.
    assert got["spend__amount_count_1d_1h"].tolist() == [4]
