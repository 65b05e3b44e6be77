"""Incremental expiry: a pass walked in bounded slices (``StreamEngine.expire_step``) ends in the
same state as a whole pass at once, stays exact when batches are processed between its slices,
and never moves on past a slice whose commit failed."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import store_prefix
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.engine import MemorySink, Progress, RawRecord, StreamEngine, compile_views
from featurebus.streams.runtime.expiry import key_range_end, read_slice
from featurebus.streams.tiles import compute_values
from tests.support.engine_state import engine_tiles
from tests.support.oracle import Event, close, value_of
from tests.support.specs import HOUR, MINUTE
from tests.support.window_specs import VIEW, windowed_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)
DELAY = 30 * MINUTE
BOUNDED = "user_bounded"  # a second view without lifetime windows: a pass crosses views
USERS = ["u1", "u2", "u3", "u4", "u5"]


def _workspace(interval_ms: int | None) -> WorkspaceSpec:
    spec = windowed_workspace(BASE, interval_ms, DELAY)
    view = spec.stream_feature_views[0]
    bounded = dataclasses.replace(
        view,
        name=BOUNDED,
        lifetime_start_ms=None,
        aggregations=tuple(a for a in view.aggregations if a.window_kind != "lifetime"),
    )
    return dataclasses.replace(spec, stream_feature_views=(view, bounded))


def _engine(spec: WorkspaceSpec) -> tuple[StreamEngine, MemoryStore, MemorySink]:
    store, sink = MemoryStore(), MemorySink()
    return StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3)), store, sink


def _records(events: list[tuple[str, int, float | None, int]], first_offset: int = 0) -> list[RawRecord]:
    offsets: dict[int, int] = {}
    records = []
    for user, t, amount, partition in events:
        offsets[partition] = offsets.get(partition, first_offset - 1) + 1
        payload = {"user_id": user, "amount": amount, "ts": BASE + t}
        records.append(RawRecord("transactions", partition, offsets[partition], orjson.dumps(payload)))
    return records


def _state(store: MemoryStore) -> dict[bytes, bytes]:
    return dict(store.scan(b"", b"\xff" * 8))


def _bus(sink: MemorySink) -> dict[tuple[str, int, bytes], bytes]:
    """The feature topics as compaction leaves them (a tombstone removes its key)."""
    latest: dict[tuple[str, int, bytes], bytes | None] = {}
    for topic, partition, key, value in sink.records:
        latest[(topic, partition, key)] = value
    return {k: v for k, v in latest.items() if v is not None}


def _step_until_done(engine: StreamEngine, max_records: int, owned: set[tuple[str, int]] | None = None) -> int:
    expired, steps = 0, 0
    while True:
        step = engine.expire_step(owned, max_records=max_records)
        expired += step.expired
        steps += 1
        assert steps < 10_000
        if step.finished:
            assert not engine.expiry_pending
            return expired
        assert engine.expiry_pending


events_strategy = st.lists(
    # Six hours on a coarse grid over three partitions, mostly in time order with stragglers.
    st.tuples(
        st.sampled_from(USERS),
        st.integers(0, 72).map(lambda k: k * 5 * MINUTE),
        st.one_of(st.none(), st.integers(-100, 100).map(float)),
        st.integers(0, 2),
    ),
    max_size=80,
).map(lambda evs: sorted(evs, key=lambda e: e[1] + (e[1] % 7) * 10 * MINUTE))


@settings(max_examples=80, deadline=None)
@given(
    events=events_strategy,
    cut=st.integers(1, 30),
    max_records=st.integers(1, 12),
    interval=st.sampled_from([None, 10 * MINUTE]),
    owned=st.sets(st.integers(0, 2)),
)
def test_a_pass_in_slices_ends_in_the_same_state_as_a_whole_pass(
    events: list[tuple[str, int, float | None, int]],
    cut: int,
    max_records: int,
    interval: int | None,
    owned: set[int],
) -> None:
    spec = _workspace(interval)
    whole, whole_store, whole_sink = _engine(spec)
    sliced, sliced_store, sliced_sink = _engine(spec)
    records = _records(events)
    for position in range(0, len(records), cut):
        whole.process(records[position : position + cut])
        sliced.process(records[position : position + cut])
    owned_partitions = {("transactions", p) for p in owned}
    expired = whole.expire(owned_partitions)
    assert _step_until_done(sliced, max_records, owned_partitions) == expired
    assert _state(sliced_store) == _state(whole_store)
    assert _bus(sliced_sink) == _bus(whole_sink)
    assert sliced.counters.tiles_expired == whole.counters.tiles_expired
    # A second pass over expired state changes nothing in either.
    assert _step_until_done(sliced, max_records, owned_partitions) == whole.expire(owned_partitions) == 0


def _accepted(events: list[tuple[str, int, float | None, int]]) -> list[Event]:
    accepted, newest = [], dict[int, int]()
    for user, t, amount, partition in events:
        if partition not in newest or t >= newest[partition] - DELAY:
            accepted.append(Event((user,), BASE + t, amount))
        newest[partition] = max(newest.get(partition, t), t)
    return accepted


@settings(max_examples=60, deadline=None)
@given(
    events=events_strategy,
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=6),
    max_records=st.integers(1, 10),
    steps_per_batch=st.integers(1, 3),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offsets=st.lists(st.integers(0, 12).map(lambda k: k * 5 * MINUTE + k % 3), min_size=1, max_size=3),
)
def test_batches_between_the_slices_of_a_pass_keep_values_exact(
    events: list[tuple[str, int, float | None, int]],
    cuts: list[int],
    max_records: int,
    steps_per_batch: int,
    interval: int | None,
    query_offsets: list[int],
) -> None:
    """Tiles written between slices (before or after the cursor, new entities, late events into
    prefixes already grown) against the brute-force oracle, for every window kind."""
    spec = _workspace(interval)
    engine, store, _ = _engine(spec)
    records = _records(events)
    position, batch = 0, 0
    while position < len(records):
        engine.process(records[position : position + cuts[batch % len(cuts)]])
        position += cuts[batch % len(cuts)]
        batch += 1
        for _ in range(steps_per_batch):
            engine.expire_step(max_records=max_records)
    _step_until_done(engine, max_records)
    if not events:
        return
    accepted = _accepted(events)
    watermark = BASE + max(t for _, t, _, _ in events)
    views = compile_views(spec)
    for name in (VIEW, BOUNDED):
        view = views[name]
        for user in USERS:
            tiles = engine_tiles(store, name, view.entity_key([user]))
            for q in query_offsets:
                t_ms = watermark - DELAY + q
                for agg, value in zip(view.spec.aggregations, compute_values(view, tiles, t_ms), strict=True):
                    want = value_of(accepted, (user,), t_ms, agg, view.spec)
                    assert close(value, want), (name, user, q, agg.name, value, want)


def test_a_slice_reads_whole_groups_and_resumes_at_the_next_group() -> None:
    spec = _workspace(None)
    engine, store, _ = _engine(spec)
    # Five users with 4 tiles each in one shard, and one in another shard.
    engine.process(_records([(u, m * MINUTE, 1.0, 0) for u in USERS for m in range(4)] + [("u1", 0, 1.0, 1)]))
    prefix = store_prefix(BOUNDED)
    first = read_slice(store, prefix, None, 5)
    assert [len(g.records) for g in first.groups] == [4, 4] and first.records == 8
    assert first.resume is not None and first.resume.startswith(prefix)
    rest = read_slice(store, prefix, first.resume, None)
    assert rest.resume is None
    groups = [(g.shard, g.entity) for g in first.groups + rest.groups]
    assert len(groups) == len(set(groups)) == 6
    assert sum(len(g.records) for g in first.groups + rest.groups) == len(
        list(store.scan(prefix, key_range_end(prefix)))
    )
    # At least one group per call, however small the budget.
    assert len(read_slice(store, prefix, None, 1).groups) == 1


def test_each_step_reads_a_bounded_slice() -> None:
    spec = _workspace(None)
    engine, _, _ = _engine(spec)
    engine.process(_records([(f"user{i}", i * MINUTE, 1.0, i % 3) for i in range(300)]))
    steps = []
    while True:
        step = engine.expire_step(max_records=50)
        steps.append(step)
        if step.finished:
            break
    # Each view holds 300 single-tile groups (the lifetime view adds an eager prefix per group).
    assert all(s.records <= 50 + 2 for s in steps) and len(steps) >= (300 * 2 + 300) // 52


class _FailingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        if self.fail:
            raise RuntimeError("commit failed")
        super().commit(progress)


def test_a_slice_whose_commit_fails_is_redone_and_nothing_is_deleted_locally() -> None:
    spec = _workspace(None)
    store, sink = MemoryStore(), _FailingSink()
    engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 3))
    engine.process(_records([(u, m * 10 * MINUTE, 1.0, 0) for u in USERS for m in range(30)]))  # 5 h
    before = _state(store)
    sink.fail = True
    with pytest.raises(RuntimeError):
        engine.expire_step(max_records=10)
    assert _state(store) == before and not engine.expiry_pending
    sink.fail = False
    reference, reference_store, _ = _engine(spec)
    reference.process(_records([(u, m * 10 * MINUTE, 1.0, 0) for u in USERS for m in range(30)]))
    assert _step_until_done(engine, 10) == reference.expire() > 0
    assert _state(store) == _state(reference_store)
