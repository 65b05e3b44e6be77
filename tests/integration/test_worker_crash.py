"""SIGKILL the stream worker mid-stream, restart it, and the feature topic still equals the oracle:
nothing lost, nothing counted twice (state and applied offsets are written in one atomic batch,
after the batch's tiles were published whole)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from featurebus.platform.kafka_admin import TopicConfig, ensure_topics, group_lag, read_compacted
from featurebus.platform.producer import reliable_producer
from featurebus.platform.registry import apply_workspace
from featurebus.platform.topics import feature_topic, worker_group
from featurebus.schemas.encoding import decode_partials, split_tile_key
from featurebus.streams.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.oracle import Event, close, feature_value
from tests.support.specs import HOUR, spending_workspace

pytestmark = pytest.mark.kafka


def _start_worker(bootstrap: str, workspace: str, home: Path) -> subprocess.Popen[bytes]:
    with open(home / "worker.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "featurebus", "worker", "--workspace", workspace, "--bootstrap", bootstrap,
             "--home", str(home)], stdout=subprocess.DEVNULL, stderr=log)


def _wait_caught_up(bootstrap: str, workspace: str, topic: str, worker: subprocess.Popen[bytes], home: Path) -> None:
    deadline = time.monotonic() + 180
    while group_lag(bootstrap, worker_group(workspace), [topic]) > 0:
        assert worker.poll() is None, (home / "worker.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the restarted worker did not catch up"
        time.sleep(0.5)


def _rewind(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 for every partition once the killed member has left the group."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, 0) for p in partitions])
    deadline = time.monotonic() + 60
    while True:
        try:
            result = admin.alter_consumer_group_offsets([request])[group].result(timeout=10)
            # Errors come per partition (the group is not empty until the dead member expires).
            if all(tp.error is None for tp in result.topic_partitions):
                assert group_lag(bootstrap, group, [topic]) > 0
                return
        except KafkaException:
            pass
        assert time.monotonic() < deadline, "could not rewind the worker's group"
        time.sleep(1.0)


def test_worker_killed_three_times_serves_exactly_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(4)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"crash_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    spec = apply_workspace(kafka_bootstrap, spending_workspace(topic=topic, name=workspace))
    base = (int(time.time() * 1000) // HOUR) * HOUR - 2 * HOUR
    users = [f"u{i}" for i in range(15)]
    events = [Event((rng.choice(users),), base + i * 300 + rng.randrange(-2000, 2000), round(rng.uniform(0, 100), 2))
              for i in range(24_000)]

    def produce() -> None:  # a steady stream, so that kills land while batches are in flight
        with reliable_producer(kafka_bootstrap) as producer:
            for i, e in enumerate(events):
                producer.produce(topic, key=e.entity[0].encode(),
                                 value=orjson.dumps({"user_id": e.entity[0], "amount": e.value, "ts": e.ts_ms}))
                if i % 400 == 399:
                    producer.flush()
                    time.sleep(0.1)

    producer_thread = threading.Thread(target=produce)
    worker = _start_worker(kafka_bootstrap, workspace, tmp_path)
    producer_thread.start()
    try:
        for _ in range(3):
            time.sleep(rng.uniform(1.0, 2.5))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = _start_worker(kafka_bootstrap, workspace, tmp_path)
        producer_thread.join()
        _wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        # Random kills rarely land between processing and Faust's offset commit, so also force
        # the worst case: rewind the group to the start (a crash before any commit) and restart.
        # Every record is delivered again and must be recognised as already applied.
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        _rewind(kafka_bootstrap, worker_group(workspace), topic)
        worker = _start_worker(kafka_bootstrap, workspace, tmp_path)
        _wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
    finally:
        worker.kill()
        worker.wait()

    view = compile_views(spec)["user_spending"]
    tiles: dict[bytes, list[tuple[int, list[object]]]] = {}
    for key, value in read_compacted(kafka_bootstrap, feature_topic(workspace, "user_spending")).items():
        entity, start = split_tile_key(key)
        tiles.setdefault(entity, []).append((start, decode_partials(value)))
    t_ms = base + len(events) * 300 + 5_000
    for user in users:
        got = compute_values(view, tiles.get(view.entity_key([user]), []), t_ms)
        for agg, value in zip(view.spec.aggregations, got, strict=True):
            want = feature_value(events, (user,), t_ms, agg.function, agg.window_ms, None)
            assert close(value, want), (user, agg.name, value, want)
