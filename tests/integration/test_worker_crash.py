"""SIGKILL stream workers mid-stream and the feature topics still equal the brute-force oracle:
nothing lost, nothing counted twice (each batch's tiles and its consumer offsets are committed in
one Kafka transaction; a worker whose local state does not match the committed offsets rebuilds
the partition's shard from the feature topic), also when a partition moves to another worker."""

from __future__ import annotations

import random
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.specs import spending_workspace
from tests.support.workers import (
    assert_feature_topic_equals_oracle,
    history,
    produce_steadily,
    start_worker,
    wait_caught_up,
    wait_processing,
)

pytestmark = pytest.mark.kafka


def test_worker_killed_three_times_serves_exactly_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(4)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"crash_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = history(topic, 4, 24_000)
    producer_thread = produce_steadily(kafka_bootstrap, topic, events)
    worker = start_worker(kafka_bootstrap, workspace, tmp_path)
    try:
        for kill in range(3):
            wait_processing(kafka_bootstrap, workspace, topic, tmp_path, worker, producer_thread)
            time.sleep(rng.uniform(0.2, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            if kill == 1:
                # The worst case of a crash between the commit and the local write, and a lost
                # disk: no local state at all. The shards must come back from the feature topic.
                shutil.rmtree(tmp_path / "worker")
            worker = start_worker(kafka_bootstrap, workspace, tmp_path)
        producer_thread.join()
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        # The worker after the lost disk (or, if that one was killed before its assignment, a
        # later one) rebuilds its shards from the feature topic once it is assigned.
        deadline = time.monotonic() + 60
        while "restored" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        worker.kill()
        worker.wait()
    assert_feature_topic_equals_oracle(kafka_bootstrap, spec, events, users, t_ms)


def test_when_one_of_two_workers_dies_the_survivor_takes_over_its_partitions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"pair_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=4)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = history(topic, 7, 16_000)
    first, second = (
        start_worker(kafka_bootstrap, workspace, tmp_path / "a"),
        start_worker(kafka_bootstrap, workspace, tmp_path / "b"),
    )
    producer_thread = produce_steadily(kafka_bootstrap, topic, events)
    try:
        deadline = time.monotonic() + 60
        while f"assigned {topic}" not in (tmp_path / "b" / "worker.log").read_text():  # the group is split in two
            assert second.poll() is None and time.monotonic() < deadline, (tmp_path / "b" / "worker.log").read_text()
            time.sleep(0.2)
        wait_processing(kafka_bootstrap, workspace, topic, tmp_path / "b", second, producer_thread)
        time.sleep(1.0)
        assert first.poll() is None and second.poll() is None
        second.send_signal(signal.SIGKILL)
        second.wait()
        producer_thread.join()
        wait_caught_up(kafka_bootstrap, workspace, topic, first, tmp_path / "a")
    finally:
        for worker in (first, second):
            worker.kill()
            worker.wait()
    survivor_log = (tmp_path / "a" / "worker.log").read_text()
    assert "restored" in survivor_log, survivor_log[-2000:]  # it rebuilt the shards it inherited
    assert_feature_topic_equals_oracle(kafka_bootstrap, spec, events, users, t_ms)
