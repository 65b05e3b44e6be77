"""Recomputing views from the log (streams.rebuild) ends exactly where a worker that had always
run the new definitions would be: the same local state, the same feature topic after compaction,
the same committed position; whatever the micro-batching and however the publication is chunked."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.materialization import CommitMetadata, online_fingerprints
from featurebus.schemas.specs import AggregationSpec, TransformationSpec, WorkspaceSpec
from featurebus.streams.runtime import rebuild
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine
from featurebus.streams.runtime.rebuild import REBUILDING, install_rebuilt, recompute_views
from tests.support.specs import HOUR, MINUTE, spending_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)
TOPIC = "transactions"
DOUBLE = TransformationSpec(
    "pandas", "double", "def double(df):\n    df = df.copy()\n    df['amount'] = df['amount'] * 2\n    return df\n"
)


def _features(view: str) -> tuple[str, int]:
    return f"features.{view}", 2


def _versions() -> tuple[WorkspaceSpec, WorkspaceSpec]:
    before = spending_workspace()
    spending = before.stream_feature_views[0]
    counts = dataclasses.replace(
        spending,
        name="user_counts",
        aggregations=(
            AggregationSpec("amount_count_2h_continuous", "count", "amount", "float64", 2 * HOUR, "int64"),
            AggregationSpec("amount_max_2h_continuous", "max", "amount", "float64", 2 * HOUR, "float64"),
        ),
    )
    after = dataclasses.replace(
        before, stream_feature_views=(dataclasses.replace(spending, transformation=DOUBLE), counts)
    )
    return before, after


def _compacted(sink: MemorySink, topic: str) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    for record_topic, _, key, value in sink.records:
        if record_topic == topic:
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = value
    return latest


def _batches(records: list[RawRecord], size: int) -> list[list[RawRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(0, 240).map(lambda m: m * MINUTE // 2),
        st.floats(-1e3, 1e3, allow_nan=False).map(
            lambda x: round(x, 2) or 0.0
        ),  # no -0.0: max(-0.0, 0.0) depends on order
        st.integers(0, 1),
    ),
    max_size=80,
)


@settings(max_examples=40, deadline=None)
@given(history=events, batch=st.integers(1, 17), replay_batch=st.integers(1, 40), chunk=st.sampled_from([1, 3, 20_000]))
def test_recomputed_views_equal_a_worker_that_always_had_the_new_definitions(
    history: list[tuple[str, int, float, int]], batch: int, replay_batch: int, chunk: int
) -> None:
    before, after = _versions()
    records: list[RawRecord] = []
    for user, t, amount, partition in history:
        offset = sum(1 for r in records if r.partition == partition)
        records.append(
            RawRecord(TOPIC, partition, offset, orjson.dumps({"user_id": user, "amount": amount, "ts": BASE + t}))
        )

    store, sink = MemoryStore(), MemorySink()
    old = StreamEngine(before, store, sink, _features)
    for part in _batches(records, batch):
        old.process(part)
    stale = CommitMetadata(0, online_fingerprints(before, TOPIC)).stale_views(online_fingerprints(after, TOPIC))
    assert stale == ["user_counts", "user_spending"]  # a changed transformation, a new view

    new = StreamEngine(after, store, sink, _features)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rebuild, "PUBLISH_CHUNK_RECORDS", chunk)
        for partition in (0, 1):
            position = new.progress(TOPIC, partition)
            mine = [r for r in records if r.partition == partition]
            rebuilt, replayed = recompute_views(
                after, stale, TOPIC, partition, _batches(mine, replay_batch), MemoryStore(), _features
            )
            assert replayed == len(mine)
            install_rebuilt(new, sink, TOPIC, partition, rebuilt, position)
            assert new.progress(TOPIC, partition) == position != REBUILDING
            if position.offset >= 0:
                assert sink.committed[(TOPIC, partition)] == position

    reference_store, reference_sink = MemoryStore(), MemorySink()
    reference = StreamEngine(after, reference_store, reference_sink, _features)
    for part in _batches(records, batch):
        reference.process(part)
    reference.expire()
    for view in stale:
        for shard in (0, 1):
            assert new.view_shard(view, shard) == reference.view_shard(view, shard), (view, shard)
        assert _compacted(sink, _features(view)[0]) == _compacted(reference_sink, _features(view)[0]), view


def test_a_rebuild_touches_only_the_stale_views() -> None:
    before, after = _versions()
    records = [
        RawRecord(TOPIC, 0, i, orjson.dumps({"user_id": "u1", "amount": 1.0, "ts": BASE + i * MINUTE}))
        for i in range(5)
    ]
    store, sink = MemoryStore(), MemorySink()
    StreamEngine(before, store, sink, _features).process(records)
    new = StreamEngine(after, store, sink, _features)
    untouched = new.view_shard("user_spending", 0)
    published = len(sink.records)
    rebuilt, _ = recompute_views(after, ["user_counts"], TOPIC, 0, [records], MemoryStore(), _features)
    install_rebuilt(new, sink, TOPIC, 0, rebuilt, new.progress(TOPIC, 0))
    assert new.view_shard("user_spending", 0) == untouched
    assert {topic for topic, *_ in sink.records[published:]} == {"features.user_counts"}
