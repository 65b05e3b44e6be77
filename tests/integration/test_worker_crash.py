"""SIGKILL stream workers mid-stream and the feature topics still equal the brute-force oracle:
nothing lost, nothing counted twice (each batch's tiles and its consumer offsets are committed in
one Kafka transaction; a worker whose local state does not match the committed offsets rebuilds
the partition's shard from the feature topic), also when a partition moves to another worker."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.kafka_admin import TopicConfig, ensure_topics, group_lag, read_compacted
from featurebus.platform.producer import reliable_producer
from featurebus.platform.registry import apply_workspace
from featurebus.platform.topics import feature_topic, worker_group
from featurebus.schemas.encoding import decode_partials, split_tile_key
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.oracle import Event, close, feature_value
from tests.support.specs import HOUR, spending_workspace

pytestmark = pytest.mark.kafka


def _start_worker(bootstrap: str, workspace: str, home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
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


def _committed(bootstrap: str, workspace: str, topic: str) -> int:
    """How many records the worker group has committed over all partitions of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": worker_group(workspace)})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def _wait_processing(bootstrap: str, workspace: str, topic: str, home: Path, worker: subprocess.Popen[bytes],
                     producer: threading.Thread) -> None:
    """Until the worker group committed more than before (the worker is past start-up and consuming),
    or has nothing left to do."""
    before = _committed(bootstrap, workspace, topic)
    deadline = time.monotonic() + 60

    def done() -> bool:
        return not producer.is_alive() and group_lag(bootstrap, worker_group(workspace), [topic]) == 0

    while _committed(bootstrap, workspace, topic) <= before and not done():
        assert worker.poll() is None and time.monotonic() < deadline, (home / "worker.log").read_text()[-3000:]
        time.sleep(0.2)


def _history(topic: str, seed: int, n: int) -> tuple[list[Event], list[str], int]:
    rng = random.Random(seed)
    base = (int(time.time() * 1000) // HOUR) * HOUR - 2 * HOUR
    users = [f"u{i}" for i in range(15)]
    events = [Event((rng.choice(users),), base + i * 300 + rng.randrange(-2000, 2000), round(rng.uniform(0, 100), 2))
              for i in range(n)]
    return events, users, base + n * 300 + 5_000


def _produce_steadily(bootstrap: str, topic: str, events: list[Event]) -> threading.Thread:
    def produce() -> None:  # a steady stream, so that kills land while batches are in flight
        with reliable_producer(bootstrap) as producer:
            for i, e in enumerate(events):
                producer.produce(topic, key=e.entity[0].encode(),
                                 value=orjson.dumps({"user_id": e.entity[0], "amount": e.value, "ts": e.ts_ms}))
                if i % 400 == 399:
                    producer.flush()
                    time.sleep(0.2)

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def _assert_feature_topic_equals_oracle(bootstrap: str, spec: WorkspaceSpec, events: list[Event], users: list[str],
                                        t_ms: int) -> None:
    """Readers merge every shard of a tile: the merged windows must equal the brute force."""
    view = compile_views(spec)["user_spending"]
    tiles: dict[bytes, list[tuple[int, list[object]]]] = {}
    for key, value in read_compacted(bootstrap, feature_topic(spec.name, "user_spending")).items():
        entity, start, _ = split_tile_key(key)
        tiles.setdefault(entity, []).append((start, decode_partials(value)))
    for user in users:
        got = compute_values(view, tiles.get(view.entity_key([user]), []), t_ms)
        for agg, value in zip(view.spec.aggregations, got, strict=True):
            want = feature_value(events, (user,), t_ms, agg.function, agg.window_ms, None)
            assert close(value, want), (user, agg.name, value, want)


def test_worker_killed_three_times_serves_exactly_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(4)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"crash_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    spec = apply_workspace(kafka_bootstrap, spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = _history(topic, 4, 24_000)
    producer_thread = _produce_steadily(kafka_bootstrap, topic, events)
    worker = _start_worker(kafka_bootstrap, workspace, tmp_path)
    try:
        for kill in range(3):
            _wait_processing(kafka_bootstrap, workspace, topic, tmp_path, worker, producer_thread)
            time.sleep(rng.uniform(0.2, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            if kill == 1:
                # The worst case of a crash between the commit and the local write, and a lost
                # disk: no local state at all. The shards must come back from the feature topic.
                shutil.rmtree(tmp_path / "worker")
            worker = _start_worker(kafka_bootstrap, workspace, tmp_path)
        producer_thread.join()
        _wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        # The worker after the lost disk (or, if that one was killed before its assignment, a
        # later one) rebuilds its shards from the feature topic once it is assigned.
        deadline = time.monotonic() + 60
        while "restored" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        worker.kill()
        worker.wait()
    _assert_feature_topic_equals_oracle(kafka_bootstrap, spec, events, users, t_ms)


def test_when_one_of_two_workers_dies_the_survivor_takes_over_its_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"pair_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=4)])
    spec = apply_workspace(kafka_bootstrap, spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = _history(topic, 7, 16_000)
    first, second = _start_worker(kafka_bootstrap, workspace, tmp_path / "a"), _start_worker(kafka_bootstrap, workspace, tmp_path / "b")
    producer_thread = _produce_steadily(kafka_bootstrap, topic, events)
    try:
        deadline = time.monotonic() + 60
        while f"assigned {topic}" not in (tmp_path / "b" / "worker.log").read_text():  # the group is split in two
            assert second.poll() is None and time.monotonic() < deadline, (tmp_path / "b" / "worker.log").read_text()
            time.sleep(0.2)
        _wait_processing(kafka_bootstrap, workspace, topic, tmp_path / "b", second, producer_thread)
        time.sleep(1.0)
        assert first.poll() is None and second.poll() is None
        second.send_signal(signal.SIGKILL)
        second.wait()
        producer_thread.join()
        _wait_caught_up(kafka_bootstrap, workspace, topic, first, tmp_path / "a")
    finally:
        for worker in (first, second):
            worker.kill()
            worker.wait()
    survivor_log = (tmp_path / "a" / "worker.log").read_text()
    assert "restored" in survivor_log, survivor_log[-2000:]  # it rebuilt the shards it inherited
    _assert_feature_topic_equals_oracle(kafka_bootstrap, spec, events, users, t_ms)
