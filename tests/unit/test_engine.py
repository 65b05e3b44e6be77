"""The stream engine against the brute-force oracle: random histories, random micro-batching,
out-of-order arrival within the watermark delay, replays of already-applied offsets."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import split_tile_key
from featurebus.streams.engine import MemorySink, Progress, RawRecord, StreamEngine, compile_views
from featurebus.streams.tiles import compute_values
from tests.support.all_functions import all_functions_view, derived, oracle_params
from tests.support.engine_state import engine_tiles
from tests.support.oracle import Event, close, feature_value, matches
from tests.support.specs import HOUR, MINUTE, spending_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)


def _record(offset: int, user: str, ts_ms: int, amount: float | None, partition: int = 0) -> RawRecord:
    payload = {"user_id": user, "amount": amount, "ts": ts_ms}
    return RawRecord("transactions", partition, offset, orjson.dumps(payload))


def _engine(interval_ms: int | None = None) -> tuple[StreamEngine, MemoryStore, MemorySink]:
    spec = spending_workspace(interval_ms=interval_ms)
    store, sink = MemoryStore(), MemorySink()
    return StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3)), store, sink


def _tiles(store: MemoryStore, view: str, entity_key: bytes) -> list[tuple[int, list[object]]]:
    return engine_tiles(store, view, entity_key)


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        # Offsets from the base on a coarse grid so that many events tie on window boundaries.
        st.integers(min_value=0, max_value=180).map(lambda m: m * MINUTE // 2),
        st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3))),
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(
    events=events_strategy,
    cuts=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=8),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offsets=st.lists(st.integers(min_value=0, max_value=200).map(lambda m: m * MINUTE // 2), min_size=1, max_size=5),
)
def test_engine_matches_oracle(events: list[tuple[str, int, float | None]], cuts: list[int], interval: int | None,
                               query_offsets: list[int]) -> None:
    engine, store, _ = _engine(interval)
    records = [_record(i, u, BASE + t, a) for i, (u, t, a) in enumerate(events)]
    # Deliver in random-sized micro-batches; the watermark delay (1 h) exceeds the spread (90 min
    # at most, but arrival order is offset order, so "late" here means > 1 h behind the newest).
    position, i = 0, 0
    while position < len(records):
        size = cuts[i % len(cuts)]
        engine.process(records[position : position + size])
        position += size
        i += 1
    # The oracle sees what the engine was allowed to count: events within the watermark delay.
    accepted, newest = [], None
    for user, t, amount in events:
        if newest is None or t >= newest - HOUR:
            accepted.append(Event((user,), BASE + t, amount))
        newest = t if newest is None else max(newest, t)
    assert engine.counters.dropped_late == len(events) - len(accepted)
    view = compile_views(spending_workspace(interval_ms=interval))["user_spending"]
    for user in ("u1", "u2", "u3"):
        tiles = _tiles(store, "user_spending", view.entity_key([user]))
        for q in query_offsets:
            t_ms = BASE + q
            got = compute_values(view, tiles, t_ms)
            for agg, value in zip(view.spec.aggregations, got, strict=False):
                want = feature_value(accepted, (user,), t_ms, agg.function, agg.window_ms, interval)
                assert close(value, want), (user, q, agg.name, value, want)


def _all_functions_workspace(interval: int | None):  # type: ignore[no-untyped-def]
    import dataclasses

    spec = spending_workspace(interval_ms=interval)
    windows = [("1m", MINUTE), ("1h", HOUR)] if interval is None else [("1h", HOUR), ("20m", 2 * 10 * MINUTE)]
    # Attributes are continuous only (the SDK refuses them in a view with an aggregation_interval).
    ttl = 30 * MINUTE if interval is None else None
    view = all_functions_view(spec.stream_feature_views[0], windows, attribute_ttl_ms=ttl)
    return dataclasses.replace(spec, stream_feature_views=(view,))


@settings(max_examples=50, deadline=None)
@given(
    events=events_strategy,
    cuts=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=8),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offsets=st.lists(st.integers(min_value=0, max_value=200).map(lambda m: m * MINUTE // 2), min_size=1, max_size=4),
)
def test_every_function_matches_the_oracle(events: list[tuple[str, int, float | None]], cuts: list[int],
                                           interval: int | None, query_offsets: list[int]) -> None:
    """Every aggregation function and Attribute, over float, int and string columns: ties on
    window edges (a coarse time grid), out-of-order arrival, several entities, empty windows."""
    spec = _all_functions_workspace(interval)
    store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3))
    records = [_record(i, u, BASE + t, a) for i, (u, t, a) in enumerate(events)]
    position, i = 0, 0
    while position < len(records):
        engine.process(records[position : position + cuts[i % len(cuts)]])
        position += cuts[i % len(cuts)]
        i += 1
    accepted: dict[str, list[Event]] = {"amount": [], "units": [], "tag": []}
    newest = None
    for user, t, amount in events:
        if newest is None or t >= newest - HOUR:
            for column, value in derived(amount).items():
                accepted[column].append(Event((user,), BASE + t, value))
        newest = t if newest is None else max(newest, t)
    view = compile_views(spec)["user_spending"]
    for user in ("u1", "u2", "u3"):
        tiles = _tiles(store, "user_spending", view.entity_key([user]))
        for q in query_offsets:
            got = compute_values(view, tiles, BASE + q)
            for agg, value in zip(view.spec.aggregations, got, strict=True):
                want = feature_value(accepted[agg.input_column], (user,), BASE + q, agg.function, agg.window_ms,
                                     None if agg.attribute else interval, **oracle_params(agg))
                assert matches(agg.function, value, want, agg.precision), (user, q, agg.name, value, want)


def test_replayed_offsets_are_not_counted_twice() -> None:
    engine, store, _sink = _engine()
    batch = [_record(i, "u1", BASE + i * 1000, 1.0) for i in range(10)]
    engine.process(batch)
    engine.process(batch[5:])  # a crash before the offset commit replays part of a batch
    assert engine.counters.skipped_replayed == 5
    view = compile_views(spending_workspace())["user_spending"]
    values = compute_values(view, _tiles(store, "user_spending", view.entity_key(["u1"])), BASE + 20_000)
    assert values[0] == 10 and values[1] == 10.0


def test_malformed_records_go_to_the_dead_letter_sink_and_the_rest_is_processed() -> None:
    engine, _, sink = _engine()
    records = [
        _record(0, "u1", BASE, 1.0),
        RawRecord("transactions", 0, 1, b"not json"),
        RawRecord("transactions", 0, 2, orjson.dumps({"user_id": "u1", "amount": "ten", "ts": BASE})),
        RawRecord("transactions", 0, 3, None),
        _record(4, "u1", BASE + 1, 2.0),
    ]
    engine.process(records)
    assert [r.offset for r, _ in sink.dead] == [1, 2, 3]
    assert "amount" in sink.dead[1][1] and "JSON" in sink.dead[0][1]
    assert engine.counters.dead_lettered == 3 and engine.counters.processed == 5


def test_tiles_are_sharded_by_source_partition_and_committed_with_the_offsets() -> None:
    engine, _store, sink = _engine()
    engine.process([_record(i, f"u{i % 4}", BASE + i * 7000, float(i), partition=i % 2) for i in range(40)])
    for _, partition, key, value in sink.records:
        _, _, shard = split_tile_key(key)
        assert value is not None and partition == shard % 3  # a shard lives in one feature partition
    assert {split_tile_key(key)[2] for _, _, key, _ in sink.records} == {0, 1}
    assert sink.flushed == len(sink.records)
    assert sink.committed == {("transactions", 0): Progress(38, BASE + 38 * 7000),
                              ("transactions", 1): Progress(39, BASE + 39 * 7000)}


def test_a_shard_restored_from_the_bus_continues_exactly_where_the_commit_left_it() -> None:
    engine, store, sink = _engine()
    first = [_record(i, "u1", BASE + i * 1000, 1.0, partition=i % 2) for i in range(10)]
    engine.process(first)
    on_the_bus: dict[bytes, bytes] = {key: value for _, _, key, value in sink.records if value is not None}
    view = compile_views(spending_workspace())["user_spending"]
    before = compute_values(view, _tiles(store, "user_spending", view.entity_key(["u1"])), BASE + 60_000)

    engine.forget_partition("transactions", 1)  # the partition moved away: its shard is gone here
    assert engine.progress("transactions", 1) == Progress()
    restored = engine.replace_shard("transactions", 1, {"user_spending": on_the_bus}, sink.committed[("transactions", 1)])
    assert restored == 5
    assert compute_values(view, _tiles(store, "user_spending", view.entity_key(["u1"])), BASE + 60_000) == before
    engine.process(first)  # a replay of applied offsets changes nothing
    assert compute_values(view, _tiles(store, "user_spending", view.entity_key(["u1"])), BASE + 60_000) == before


def test_expiry_deletes_unreachable_tiles_and_publishes_tombstones() -> None:
    engine, store, sink = _engine()
    engine.process([_record(0, "u1", BASE, 1.0)])
    engine.process([_record(1, "u1", BASE + 3 * HOUR, 1.0)])  # watermark moves 3 h on: > 1 h window + 1 h delay
    assert engine.expire() == 1
    assert sink.records[-1][3] is None
    view = compile_views(spending_workspace())["user_spending"]
    assert len(_tiles(store, "user_spending", view.entity_key(["u1"]))) == 1


def test_large_integers_with_nulls_stay_exact() -> None:
    from featurebus.schemas.specs import FieldSpec
    from featurebus.streams.aggregations import aggregator_for, input_column
    from featurebus.streams.records import decode_json_records

    big = 12_345_678_901_234_567
    batch = decode_json_records(
        [orjson.dumps({"n": big, "ts": 1}), orjson.dumps({"n": None, "ts": 2}), orjson.dumps({"n": 1, "ts": 3})],
        [FieldSpec("n", "int64"), FieldSpec("ts", "timestamp")], "ts")
    values, valid = input_column(batch.frame["n"], "int64")
    one_group = np.zeros(len(values), dtype=np.int64)
    ts = np.array([1, 2, 3])
    assert aggregator_for("sum", "int64").from_groups(values, valid, one_group, 1, ts) == [big + 1]
    assert aggregator_for("count", "int64").from_groups(values, valid, one_group, 1, ts) == [2]
    assert aggregator_for("max", "int64").from_groups(values, valid, one_group, 1, ts) == [big]
    assert aggregator_for("last_n", "int64", n=3).from_groups(values, valid, one_group, 1, ts) == [[[1, big], [3, 1]]]


def test_python_mode_transformations_run_per_row_and_may_drop_rows() -> None:
    import dataclasses

    from featurebus.schemas.specs import TransformationSpec

    code = "def big_only(row):\n    if row['amount'] < 10:\n        return None\n    return {**row, 'amount': row['amount'] * 2}\n"
    spec = spending_workspace()
    view = dataclasses.replace(spec.stream_feature_views[0], transformation=TransformationSpec("python", "big_only", code))
    spec = dataclasses.replace(spec, stream_feature_views=(view,))
    store = MemoryStore()
    engine = StreamEngine(spec, store, MemorySink(), lambda v: (f"features.{v}", 1))
    engine.process([_record(0, "u1", BASE, 5.0), _record(1, "u1", BASE + 1, 20.0), _record(2, "u1", BASE + 2, 30.0)])
    compiled = compile_views(spec)["user_spending"]
    count_1m, sum_1m = compute_values(compiled, _tiles(store, "user_spending", compiled.entity_key(["u1"])), BASE + 10)[:2]
    assert (count_1m, sum_1m) == (2, 100.0)
