"""How the Flink job follows definitions, without Flink: which applies restart it, and how a
shard is aligned with new definitions (removed views' state dropped, changed and new views
recomputed from the source log to what an engine that always ran them holds)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import orjson

from featurebus.platform.kv import MemoryStore
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.schemas.specs import AggregationSpec, TransformationSpec, WorkspaceSpec
from featurebus.streams.runtime.engine import RawRecord, StreamEngine
from featurebus.streams.runtime.flink.definitions import align_shard, job_definitions, views_in_state
from featurebus.streams.runtime.flink.follow import DefinitionsFollower
from featurebus.streams.runtime.flink.state import RowSink
from featurebus.streams.runtime.workspace_watch import WorkspaceWatch
from tests.support.specs import HOUR, spending_workspace

TOPIC = "tx"
DOUBLE = TransformationSpec(
    "pandas", "double", "def double(df):\n    df = df.copy()\n    df['amount'] = df['amount'] * 2\n    return df\n"
)


def _spec(*, doubled: bool = False, counts: bool = True, spending: bool = True) -> WorkspaceSpec:
    base = spending_workspace(topic=TOPIC)
    view = base.stream_feature_views[0]
    views = []
    if spending:
        views.append(dataclasses.replace(view, transformation=DOUBLE) if doubled else view)
    if counts:
        views.append(
            dataclasses.replace(
                view,
                name="user_counts",
                aggregations=(AggregationSpec("n_2h", "count", "amount", "float64", 2 * HOUR, "int64"),),
            )
        )
    return dataclasses.replace(base, stream_feature_views=tuple(views), feature_services=())


def _topics(view: str) -> tuple[str, int]:
    return f"features.{view}", 1


def _records(start: int, n: int, base_ms: int) -> list[RawRecord]:
    return [
        RawRecord(
            TOPIC,
            0,
            offset,
            orjson.dumps({"user_id": f"u{offset % 3}", "amount": offset / 4, "ts": base_ms + offset * 1000}),
        )
        for offset in range(start, start + n)
    ]


def _state(spec: WorkspaceSpec, records: list[RawRecord]) -> dict[bytes, bytes]:
    """What an engine that always ran ``spec`` holds after ``records``."""
    store = MemoryStore()
    StreamEngine(spec, store, RowSink("dlq"), _topics).process(records)
    return dict(store.scan(b"", b"\xff" * 8))


def test_a_shard_is_aligned_with_new_definitions_as_if_they_had_always_applied() -> None:
    base_ms = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
    history = _records(0, 200, base_ms)
    v1 = _spec(counts=False)
    store, sink = MemoryStore(), RowSink("dlq")
    StreamEngine(v1, store, sink, _topics).process(history)
    built_with = {"user_spending": "stale-on-purpose"}  # what v1 recorded, as far as v2 is concerned

    # v2: user_spending changed (doubled), user_counts new: both recomputed from the log.
    v2 = _spec(doubled=True)
    engine = StreamEngine(v2, store, sink, _topics)
    sink.drain()
    alignment = align_shard(
        v2, engine, store, sink, TOPIC, 0, built_with, lambda t, p, end: [history[:end]], lambda view: {}, _topics
    )
    assert sorted(alignment.rebuilt) == ["user_counts", "user_spending"] and alignment.replayed == 200
    assert alignment.fingerprints.keys() == {"user_counts", "user_spending"}
    published = sink.drain()
    assert published and {topic for _, _, topic, _ in published} == {"features.user_spending", "features.user_counts"}
    assert dict(store.scan(b"\x01", b"\xff" * 8)) == {
        k: v for k, v in _state(v2, history).items() if not k.startswith(b"\x00")
    }

    # v3: user_spending removed: its state is dropped, user_counts untouched.
    v3 = _spec(spending=False)
    before = {k: v for k, v in store.scan(b"", b"\xff" * 8) if b"user_counts" in k}
    engine = StreamEngine(v3, store, sink, _topics)
    alignment = align_shard(
        v3, engine, store, sink, TOPIC, 0, alignment.fingerprints, lambda t, p, end: [], lambda view: {}, _topics
    )
    assert alignment.dropped == ("user_spending",) and alignment.rebuilt == ()
    assert set(views_in_state(store)) == {"user_counts"}
    assert {k: v for k, v in store.scan(b"", b"\xff" * 8) if b"user_counts" in k} == before


def test_only_applies_that_change_what_the_job_computes_restart_it() -> None:
    registry = MemoryRegistry()
    v1 = apply_workspace(registry, _spec())
    watch = WorkspaceWatch(registry, v1.name, poll_s=0.01)
    watch.start()
    try:
        follower = DefinitionsFollower(watch, v1, lambda topics: topics)
        described = dataclasses.replace(
            v1,
            stream_feature_views=tuple(
                dataclasses.replace(v, description="now documented") for v in v1.stream_feature_views
            ),
        )
        assert job_definitions(described) == job_definitions(v1)
        v2 = apply_workspace(registry, described)
        _wait(lambda: watch.latest is not None and watch.latest.version == v2.version)
        assert follower.poll() is None and follower.running.version == v2.version
        v3 = apply_workspace(registry, _spec(doubled=True))
        _wait(lambda: watch.latest is not None and watch.latest.version == v3.version)
        restart = follower.poll()
        assert restart is not None and restart.version == v3.version
        # A change that waits for a missing source topic keeps the running version.
        missing = DefinitionsFollower(watch, v2, lambda topics: [])
        assert missing.poll() is None and missing.running.version == v2.version
    finally:
        watch.stop()


def _wait(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")
