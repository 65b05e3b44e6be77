"""An apply that invalidates a view's tiles (its transformation changed) or adds a view over an
existing history makes the running worker recompute them from the source log, without a
restart; a worker killed in the middle of that finishes it after its restart. The feature topic
then equals the brute-force oracle of the new definitions over the whole history."""

from __future__ import annotations

import dataclasses
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.describe import read_state
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import worker_group
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.materialization import CommitMetadata, online_fingerprints
from featurebus.schemas.specs import AggregationSpec, TransformationSpec, WorkspaceSpec
from featurebus.streams.runtime.engine import NO_WATERMARK
from tests.support.oracle import Event
from tests.support.specs import HOUR, spending_workspace
from tests.support.workers import (
    assert_feature_topic_equals_oracle,
    history,
    produce_steadily,
    start_worker,
    wait_caught_up,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 3
DOUBLE = TransformationSpec(
    "pandas", "double", "def double(df):\n    df = df.copy()\n    df['amount'] = df['amount'] * 2\n    return df\n"
)


def _changed(before: WorkspaceSpec) -> WorkspaceSpec:
    spending = before.stream_feature_views[0]
    counts = dataclasses.replace(
        spending,
        name="user_counts",
        aggregations=(AggregationSpec("amount_count_2h_continuous", "count", "amount", "float64", 2 * HOUR, "int64"),),
    )
    return dataclasses.replace(
        before, stream_feature_views=(dataclasses.replace(spending, transformation=DOUBLE), counts)
    )


def _stale_partitions(bootstrap: str, spec: WorkspaceSpec, topic: str) -> list[int]:
    """The source partitions whose committed state was not built by ``spec``'s definitions."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "group.id": worker_group(spec.name)}
    )
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    current = online_fingerprints(spec, topic)
    return [
        tp.partition
        for tp in committed
        if tp.offset < 0 or CommitMetadata.decode(tp.metadata, NO_WATERMARK).stale_views(current)
    ]


def test_an_invalidating_apply_is_recomputed_from_the_log_even_across_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"rebuild_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=PARTITIONS)])
    before = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = history(topic, 11, 9_000)
    first, later = events[:6_000], events[6_000:]
    producer = produce_steadily(kafka_bootstrap, topic, first)
    worker = start_worker(kafka_bootstrap, workspace, tmp_path)
    log = tmp_path / "worker.log"
    try:
        producer.join()
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        after = apply_workspace(KafkaRegistry(kafka_bootstrap), _changed(before))
        deadline = time.monotonic() + 60
        while "recomputing" not in log.read_text():  # the running worker picked the change up
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(kafka_bootstrap, workspace, tmp_path)
        deadline = time.monotonic() + 120
        while _stale_partitions(kafka_bootstrap, after, topic):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        producer = produce_steadily(kafka_bootstrap, topic, later)  # and it goes on under the new definitions
        producer.join()
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
    finally:
        worker.kill()
        worker.wait()
    assert "rebuilt" in log.read_text()
    doubled = [Event(e.entity, e.ts_ms, None if e.value is None else e.value * 2) for e in events]
    assert_feature_topic_equals_oracle(kafka_bootstrap, after, doubled, users, t_ms, "user_spending")
    assert_feature_topic_equals_oracle(kafka_bootstrap, after, events, users, t_ms, "user_counts")

    # `describe` tells which partitions of a view still wait for their recomputation.
    assert _recomputing(kafka_bootstrap, after, "user_counts") == ()
    counts = after.view("user_counts")
    wider = dataclasses.replace(counts, aggregations=(dataclasses.replace(counts.aggregations[0], window_ms=3 * HOUR),))
    third = apply_workspace(
        KafkaRegistry(kafka_bootstrap),
        dataclasses.replace(after, stream_feature_views=(after.view("user_spending"), wider)),
    )
    assert _recomputing(kafka_bootstrap, third, "user_counts") == tuple(f"{topic}[{p}]" for p in range(PARTITIONS))
    assert _recomputing(kafka_bootstrap, third, "user_spending") == ()


def _recomputing(bootstrap: str, spec: WorkspaceSpec, view: str) -> tuple[str, ...]:
    state = read_state(bootstrap, spec, spec.view(view))
    assert state is not None and state.available, state
    return state.recomputing
