"""The stream engine against the brute-force oracle: random histories, random micro-batching,
out-of-order arrival within the watermark delay, replays of already-applied offsets."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import split_tile_key
from featurebus.streams.runtime.engine import MemorySink, Progress, RawRecord, StreamEngine, compile_views
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


def _tiles(store: MemoryStore, view: str, entity_key: bytes) -> list[tuple[int, list[object], int]]:
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
    query_offsets=st.lists(
        st.integers(min_value=0, max_value=200).map(lambda m: m * MINUTE // 2), min_size=1, max_size=5
    ),
)
def test_engine_matches_oracle(
    events: list[tuple[str, int, float | None]], cuts: list[int], interval: int | None, query_offsets: list[int]
) -> None:
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
    query_offsets=st.lists(
        st.integers(min_value=0, max_value=200).map(lambda m: m * MINUTE // 2), min_size=1, max_size=4
    ),
)
def test_every_function_matches_the_oracle(
    events: list[tuple[str, int, float | None]], cuts: list[int], interval: int | None, query_offsets: list[int]
) -> None:
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
                want = feature_value(
                    accepted[agg.input_column],
                    (user,),
                    BASE + q,
                    agg.function,
                    agg.window_ms,
                    None if agg.attribute else interval,
                    **oracle_params(agg),
                )
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
    assert sink.committed == {
        ("transactions", 0): Progress(38, BASE + 38 * 7000),
        ("transactions", 1): Progress(39, BASE + 39 * 7000),
    }


def test_a_shard_restored_from_the_bus_continues_exactly_where_the_commit_left_it() -> None:
    engine, store, sink = _engine()
    first = [_record(i, "u1", BASE + i * 1000, 1.0, partition=i % 2) for i in range(10)]
    engine.process(first)
    on_the_bus: dict[bytes, bytes] = {key: value for _, _, key, value in sink.records if value is not None}
    view = compile_views(spending_workspace())["user_spending"]
    before = compute_values(view, _tiles(store, "user_spending", view.entity_key(["u1"])), BASE + 60_000)

    engine.forget_partition("transactions", 1)  # the partition moved away: its shard is gone here
    assert engine.progress("transactions", 1) == Progress()
    restored = engine.replace_shard(
        "transactions", 1, {"user_spending": on_the_bus}, sink.committed[("transactions", 1)]
    )
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
        [FieldSpec("n", "int64"), FieldSpec("ts", "timestamp")],
        "ts",
    )
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
    view = dataclasses.replace(
        spec.stream_feature_views[0], transformation=TransformationSpec("python", "big_only", code)
    )
    spec = dataclasses.replace(spec, stream_feature_views=(view,))
    store = MemoryStore()
    engine = StreamEngine(spec, store, MemorySink(), lambda v: (f"features.{v}", 1))
    engine.process([_record(0, "u1", BASE, 5.0), _record(1, "u1", BASE + 1, 20.0), _record(2, "u1", BASE + 2, 30.0)])
    compiled = compile_views(spec)["user_spending"]
    count_1m, sum_1m = compute_values(compiled, _tiles(store, "user_spending", compiled.entity_key(["u1"])), BASE + 10)[
        :2
    ]
    assert (count_1m, sum_1m) == (2, 100.0)


# -- window kinds: offsets, lifetime (with its prefix across expiry), series -------------------

from featurebus.streams.lifetime import EAGER_PREFIX_START_MS, PREFIX_START_MS  # noqa: E402
from featurebus.streams.windows import retention_ms  # noqa: E402
from tests.support.oracle import value_of  # noqa: E402
from tests.support.window_specs import VIEW, windowed_workspace  # noqa: E402

DELAY = 30 * MINUTE


def _windowed_engine(interval_ms: int | None) -> tuple[StreamEngine, MemoryStore, MemorySink]:
    store, sink = MemoryStore(), MemorySink()
    spec = windowed_workspace(BASE, interval_ms, DELAY)
    return StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3)), store, sink


def _accepted(events: list[tuple[str, int, float | None, int]]) -> list[Event]:
    """The events the engine keeps: each partition drops those older than its watermark - delay."""
    accepted, newest = [], dict[int, int]()
    for user, t, amount, partition in events:
        if partition not in newest or t >= newest[partition] - DELAY:
            accepted.append(Event((user,), BASE + t, amount))
        newest[partition] = max(newest.get(partition, t), t)
    return accepted


def _process_with_expiries(
    engine: StreamEngine,
    events: list[tuple[str, int, float | None, int]],
    cuts: list[int],
    expire_every: int,
    first_offset: int = 0,
) -> None:
    """Micro-batches cut as ``cuts`` says (offsets count per partition), expiring every few batches."""
    offsets: dict[int, int] = {}
    records = []
    for user, t, amount, partition in events:
        offsets[partition] = offsets.get(partition, first_offset - 1) + 1
        records.append(_record(offsets[partition], user, BASE + t, amount, partition=partition))
    position, batch = 0, 0
    while position < len(records):
        engine.process(records[position : position + cuts[batch % len(cuts)]])
        position += cuts[batch % len(cuts)]
        batch += 1
        if batch % expire_every == 0:
            engine.expire()


windowed_events = st.lists(
    # Six hours of events on a coarse grid (ties on every boundary) over three source partitions
    # (three shards, each with its own watermark), mostly in time order with some stragglers, so
    # that late drops, expiry and lifetime folding all happen, per shard.
    st.tuples(
        st.sampled_from(["u1", "u2"]),
        st.integers(0, 72).map(lambda k: k * 5 * MINUTE),
        st.one_of(st.none(), st.integers(-100, 100).map(float)),
        st.integers(0, 2),
    ),
    max_size=50,
).map(lambda evs: sorted(evs, key=lambda e: e[1] + (e[1] % 7) * 10 * MINUTE))


@settings(max_examples=50, deadline=None)
@given(
    events=windowed_events,
    cuts=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6),
    expire_every=st.integers(1, 4),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offsets=st.lists(st.integers(0, 12).map(lambda k: k * 5 * MINUTE + k % 3), min_size=1, max_size=4),
    stragglers=st.lists(
        st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 6).map(lambda k: k * 5 * MINUTE), st.integers(0, 2)),
        max_size=4,
    ),
)
def test_window_kinds_match_the_oracle_across_expiry(
    events: list[tuple[str, int, float | None, int]],
    cuts: list[int],
    expire_every: int,
    interval: int | None,
    query_offsets: list[int],
    stragglers: list[tuple[str, int, int]],
) -> None:
    engine, store, _ = _windowed_engine(interval)
    _process_with_expiries(engine, events, cuts, expire_every)
    if events:  # after an expiry, events up to the watermark delay old: into the eager prefixes
        engine.expire()
        newest_ms = max(t for _, t, _, _ in events)
        late = [(user, max(0, newest_ms - DELAY + back), 2.0, partition) for user, back, partition in stragglers]
        _process_with_expiries(engine, late, [len(late) or 1], 2, first_offset=len(events))
        events = events + late
    accepted = _accepted(events)
    assert engine.counters.dropped_late == len(events) - len(accepted)
    if not events:
        return
    watermark = BASE + max(t for _, t, _, _ in events)
    spec = windowed_workspace(BASE, interval, DELAY).view(VIEW)
    view = compile_views(windowed_workspace(BASE, interval, DELAY))[VIEW]
    for user in ("u1", "u2"):
        tiles = _tiles(store, VIEW, view.entity_key([user]))
        # Exact for every T the engine promises: no earlier than watermark - delay.
        for q in query_offsets:
            t_ms = watermark - DELAY + q
            for agg, value in zip(spec.aggregations, compute_values(view, tiles, t_ms), strict=True):
                want = value_of(accepted, (user,), t_ms, agg, spec)
                assert close(value, want), (user, q, agg.name, value, want)


@settings(max_examples=40, deadline=None)
@given(
    times=st.lists(st.integers(0, 72).map(lambda k: k * 5 * MINUTE + k % 4), min_size=1, max_size=40).map(sorted),
    interval=st.sampled_from([None, 10 * MINUTE]),
    lifetime=st.booleans(),
)
def test_expiry_keeps_exactly_the_tiles_some_window_can_reach(
    times: list[int], interval: int | None, lifetime: bool
) -> None:
    if lifetime:
        spec = windowed_workspace(BASE, interval, DELAY)
    else:  # the same view without its lifetime windows: nothing to fold, tiles simply expire
        spec = windowed_workspace(BASE, interval, DELAY)
        only_bounded = tuple(a for a in spec.stream_feature_views[0].aggregations if a.window_kind != "lifetime")
        spec = dataclasses.replace(
            spec, stream_feature_views=(dataclasses.replace(spec.stream_feature_views[0], aggregations=only_bounded),)
        )
    store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3))
    engine.process([_record(i, "u1", BASE + t, 1.0) for i, t in enumerate(times)])
    before = {
        tile[0]
        for tile in _tiles(store, VIEW, compile_views(spec)[VIEW].entity_key(["u1"]))
        if tile[0] > EAGER_PREFIX_START_MS
    }
    view_spec = spec.view(VIEW)
    tile = view_spec.tile_ms
    cutoff = BASE + times[-1] - retention_ms(view_spec.max_reach_ms, DELAY, interval)
    engine.expire()
    after = {tile[0] for tile in _tiles(store, VIEW, compile_views(spec)[VIEW].entity_key(["u1"]))}
    expected = {s for s in before if s + tile > cutoff}
    # Lifetime views keep a final prefix once some tile is final, and an eager one from their
    # first tile after the lifetime start on (streams/lifetime.py).
    watermark = BASE + times[-1]
    starts = [
        s for s in before if lifetime and view_spec.lifetime_start_ms is not None and s >= view_spec.lifetime_start_ms
    ]
    final = any(s + tile <= watermark - DELAY for s in starts)
    eager = bool(starts)
    assert after == expected | ({PREFIX_START_MS} if final else set()) | ({EAGER_PREFIX_START_MS} if eager else set())
    tombstones = {split_tile_key(key)[1] for _, _, key, value in sink.records if value is None}
    assert tombstones == before - expected


def test_lifetime_counts_survive_expiry_and_late_tiles_after_the_prefix_still_count() -> None:
    engine, store, _ = _windowed_engine(None)
    lifetime_start = BASE + 20 * MINUTE
    engine.process([_record(i, "u1", BASE + i * MINUTE, 1.0) for i in range(0, 300, 10)])  # 30 events, 5 h
    assert engine.expire() > 0
    view = compile_views(windowed_workspace(BASE, None, DELAY))[VIEW]
    tiles = _tiles(store, VIEW, view.entity_key(["u1"]))
    assert [tile[0] for tile in tiles[:2]] == [PREFIX_START_MS, EAGER_PREFIX_START_MS] and len(tiles) < 30
    names = [a.name for a in view.spec.aggregations]
    values = dict(zip(names, compute_values(view, tiles, BASE + 5 * HOUR), strict=True))
    assert values["amount_count_lifetime"] == len([m for m in range(0, 300, 10) if BASE + m * MINUTE >= lifetime_start])
    engine.process([_record(1000, "u1", BASE + 290 * MINUTE - DELAY + 1, 5.0)])  # late, but accepted
    tiles = _tiles(store, VIEW, view.entity_key(["u1"]))
    values = dict(zip(names, compute_values(view, tiles, BASE + 5 * HOUR), strict=True))
    assert values["amount_count_lifetime"] == 29 and values["amount_sum_lifetime"] == 33.0


def _online_store(sink: MemorySink, workspace: str) -> MemoryStore:
    """What a serving replica's materializer makes of the feature topic (tombstones delete)."""
    from featurebus.schemas.encoding import store_key
    from featurebus.serving.online_materializer import online_view_name

    store = MemoryStore()
    store.write((store_key(online_view_name(workspace, VIEW), key), value) for _, _, key, value in sink.records)
    return store


@pytest.mark.parametrize("interval", [None, 10 * MINUTE])
def test_served_values_follow_the_leading_edge_and_the_lifetime_prefix(interval: int | None) -> None:
    from featurebus.serving.service import FeatureServer

    now = BASE + 6 * HOUR
    history = [Event(("u1",), BASE + m * MINUTE, float(m % 5)) for m in range(0, 330, 7)]
    answers = []
    for edge in ("wall_clock_time", "latest_event_time"):
        spec = windowed_workspace(BASE, interval, DELAY, leading_edge=edge)
        store, sink = MemoryStore(), MemorySink()
        engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3))
        engine.process([_record(i // 2, e.entity[0], e.ts_ms, e.value, partition=i % 2) for i, e in enumerate(history)])
        engine.expire()
        specs = {spec.name: spec}
        server = FeatureServer(lambda specs=specs: specs, _online_store(sink, spec.name), lambda: now)
        served = server.get_features(spec.name, "spending", {"user_id": "u1"})["result"]["features"]
        answers.append(served)
        # LATEST_EVENT_TIME: windows end just after the newest event (at 329 min), not at 6 h.
        t_ms = now if edge == "wall_clock_time" else history[-1].ts_ms + 1
        view = spec.view(VIEW)
        for agg, value in zip(view.aggregations, served, strict=True):
            want = value_of(history, ("u1",), t_ms, agg, view)
            if agg.output_dtype == "int64":
                want = str(want)
            assert close(value, want) if not isinstance(want, str) else value == want, (edge, agg.name, value, want)
    assert answers[0] != answers[1]


# -- lifetime prefixes and high watermarks per shard ---------------------------------------------


def _on_the_bus(sink: MemorySink) -> dict[int, dict[bytes, bytes]]:
    """Feature-topic partition -> its latest records, as compaction keeps them (tombstones delete)."""
    partitions: dict[int, dict[bytes, bytes]] = {}
    for _, partition, key, value in sink.records:
        records = partitions.setdefault(partition, {})
        if value is None:
            records.pop(key, None)
        else:
            records[key] = value
    return partitions


def _served(sink: MemorySink, spec: object, t_ms: int) -> dict[str, list[object]]:
    from featurebus.serving.service import FeatureServer

    specs = {spec.name: spec}  # type: ignore[attr-defined]
    server = FeatureServer(lambda: specs, _online_store(sink, spec.name), lambda: t_ms)  # type: ignore[attr-defined]
    return {
        user: server.get_features(spec.name, "spending", {"user_id": user})["result"]["features"]  # type: ignore[attr-defined]
        for user in ("u1", "u2")
    }


def _check_served(
    served: dict[str, list[object]], accepted: list[Event], t_ms: int, view: object, where: object
) -> None:
    for user, values in served.items():
        for agg, value in zip(view.aggregations, values, strict=True):  # type: ignore[attr-defined]
            want = value_of(accepted, (user,), t_ms, agg, view)  # type: ignore[arg-type]
            if agg.output_dtype == "int64":
                assert value == str(want), (where, user, agg.name, value, want)
            else:
                assert close(value, want), (where, user, agg.name, value, want)


@settings(max_examples=40, deadline=None)
@given(
    events=windowed_events,
    behind=st.lists(
        st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 24).map(lambda k: k * 5 * MINUTE)), max_size=8
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6),
    expire_every=st.integers(1, 3),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offsets=st.lists(st.integers(0, 12).map(lambda k: k * 5 * MINUTE + k % 3), min_size=1, max_size=3),
)
def test_served_lifetime_values_merge_shards_with_independent_watermarks(
    events: list[tuple[str, int, float | None, int]],
    behind: list[tuple[str, int]],
    cuts: list[int],
    expire_every: int,
    interval: int | None,
    query_offsets: list[int],
) -> None:
    """Serving (prefixes first, then only the tiles from the earliest shard's covered_until on)
    against the oracle, with a fourth partition whose watermark stays hours behind the others:
    its early tiles start before the other shards' prefixes end, and must still count."""
    engine, _, sink = _windowed_engine(interval)
    lagging = [(user, t, 1.0, 3) for user, t in behind]
    _process_with_expiries(engine, sorted(events + lagging, key=lambda e: e[3] == 3), cuts, expire_every)
    engine.expire()
    accepted = _accepted(events + lagging)
    if not events:
        return
    spec = windowed_workspace(BASE, interval, DELAY)
    # Exact from the most advanced shard's watermark - delay on (the "lagging" partition's events
    # may be drawn later than the others').
    newest = BASE + max(t for _, t, _, _ in events + lagging)
    for q in query_offsets:
        t_ms = newest - DELAY + q
        _check_served(_served(sink, spec, t_ms), accepted, t_ms, spec.view(VIEW), q)


@pytest.mark.parametrize("edge", ["wall_clock_time", "latest_event_time"])
def test_a_shard_restored_after_expiry_keeps_its_prefixes_and_high_watermark(edge: str) -> None:
    """A new owner rebuilds each shard from its feature partition (tiles, both lifetime prefixes
    and the high watermark record, filtered by the shard they carry), then goes on processing
    and expiring: engine state and served values still equal the oracle."""
    spec = windowed_workspace(BASE, None, DELAY, leading_edge=edge)
    store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 2))
    # Three shards over two feature partitions: shards 0 and 2 share partition 0.
    first = [(f"u{1 + i % 2}", i * 6 * MINUTE, float(i % 7), i % 3) for i in range(50)]  # 5 h
    _process_with_expiries(engine, first, [7], 2)
    engine.expire()
    state = {key: value for key, value in store.scan(b"", b"\xff" * 8)}
    prefixes = [
        t for t in _tiles(store, VIEW, compile_views(spec)[VIEW].entity_key(["u1"])) if t[0] <= EAGER_PREFIX_START_MS
    ]
    assert {t[2] for t in prefixes} == {0, 1, 2} and {t[0] for t in prefixes} == {
        PREFIX_START_MS,
        EAGER_PREFIX_START_MS,
    }

    restored_store = MemoryStore()
    restored = StreamEngine(spec, restored_store, sink, lambda view: (f"features.{view}", 2))
    bus = _on_the_bus(sink)
    for partition in range(3):
        restored.replace_shard(
            "transactions", partition, {VIEW: bus[partition % 2]}, sink.committed[("transactions", partition)]
        )
    assert {key: value for key, value in restored_store.scan(b"", b"\xff" * 8)} == state

    later = [(f"u{1 + i % 2}", 5 * HOUR + i * 3 * MINUTE, 1.0, i % 3) for i in range(20)]
    # Late but accepted events of tiles the eager prefixes already cover, then the rest.
    late = [("u1", 5 * HOUR - DELAY + 60_000, 4.0, p) for p in range(3)]
    offsets = {p: sink.committed[("transactions", p)].offset + 1 for p in range(3)}
    records = []
    for user, t, amount, partition in late + later:
        records.append(_record(offsets[partition], user, BASE + t, amount, partition=partition))
        offsets[partition] += 1
    for position in range(0, len(records), 5):
        restored.process(records[position : position + 5])
        restored.expire()
    accepted = _accepted(first + late + later)
    view = compile_views(spec)[VIEW]
    newest = BASE + max(t for _, t, _, _ in later)
    t_ms = newest + 1 if edge == "latest_event_time" else newest + 10 * MINUTE
    for user in ("u1", "u2"):
        for agg, value in zip(
            spec.view(VIEW).aggregations,
            compute_values(view, _tiles(restored_store, VIEW, view.entity_key([user])), t_ms),
            strict=True,
        ):
            assert close(value, value_of(accepted, (user,), t_ms, agg, spec.view(VIEW))), (user, agg.name)
    _check_served(_served(sink, spec, newest + 10 * MINUTE), accepted, t_ms, spec.view(VIEW), edge)


def test_high_watermarks_go_to_their_shards_partition_only_when_they_move() -> None:
    from featurebus.streams.lifetime import high_watermark_key, high_watermark_shard, latest_event_time

    spec = windowed_workspace(BASE, None, DELAY, leading_edge="latest_event_time")
    sink = MemorySink()
    engine = StreamEngine(spec, MemoryStore(), sink, lambda view: (f"features.{view}", 2))
    engine.process([_record(0, "u1", BASE + 5, 1.0, partition=0), _record(0, "u2", BASE + 9, 1.0, partition=3)])
    marks = [
        (partition, key, value) for _, partition, key, value in sink.records if high_watermark_shard(key) is not None
    ]
    assert [(p, k) for p, k, _ in marks] == [(0, high_watermark_key(0)), (1, high_watermark_key(3))]
    assert latest_event_time(v for _, _, v in marks if v is not None) == BASE + 9
    engine.process([_record(1, "u1", BASE + 2, 1.0, partition=0)])  # older: partition 0's watermark stays
    assert [k for _, _, k, _ in sink.records if high_watermark_shard(k) is not None] == [k for _, k, _ in marks]
    assert (
        high_watermark_shard(b"\x00hw.") is None
        and high_watermark_shard(compile_views(spec)[VIEW].entity_key(["u1"])) is None
    )
