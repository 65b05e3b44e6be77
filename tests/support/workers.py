"""Stream worker processes for integration tests: start one, wait for it, feed it, check it."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.kafka.admin import group_lag, read_compacted
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import feature_topic, worker_group
from featurebus.schemas.encoding import decode_partials, split_tile_key
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import compute_values
from tests.support.oracle import Event, close, feature_value
from tests.support.specs import HOUR


def start_worker(bootstrap: str, workspace: str, home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "worker.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurebus",
                "worker",
                "--workspace",
                workspace,
                "--bootstrap",
                bootstrap,
                "--home",
                str(home),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def wait_caught_up(bootstrap: str, workspace: str, topic: str, worker: subprocess.Popen[bytes], home: Path) -> None:
    deadline = time.monotonic() + 180
    while group_lag(bootstrap, worker_group(workspace), [topic]) > 0:
        assert worker.poll() is None, (home / "worker.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the restarted worker did not catch up"
        time.sleep(0.5)


def committed(bootstrap: str, workspace: str, topic: str) -> int:
    """How many records the worker group has committed over all partitions of ``topic``."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "group.id": worker_group(workspace)}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def wait_processing(
    bootstrap: str, workspace: str, topic: str, home: Path, worker: subprocess.Popen[bytes], producer: threading.Thread
) -> None:
    """Until the worker group committed more than before (the worker is past start-up and consuming),
    or has nothing left to do."""
    before = committed(bootstrap, workspace, topic)
    deadline = time.monotonic() + 60

    def done() -> bool:
        return not producer.is_alive() and group_lag(bootstrap, worker_group(workspace), [topic]) == 0

    while committed(bootstrap, workspace, topic) <= before and not done():
        assert worker.poll() is None and time.monotonic() < deadline, (home / "worker.log").read_text()[-3000:]
        time.sleep(0.2)


def history(topic: str, seed: int, n: int) -> tuple[list[Event], list[str], int]:
    rng = random.Random(seed)
    base = (int(time.time() * 1000) // HOUR) * HOUR - 2 * HOUR
    users = [f"u{i}" for i in range(15)]
    events = [
        Event((rng.choice(users),), base + i * 300 + rng.randrange(-2000, 2000), round(rng.uniform(0, 100), 2))
        for i in range(n)
    ]
    return events, users, base + n * 300 + 5_000


def produce_steadily(bootstrap: str, topic: str, events: list[Event]) -> threading.Thread:
    def produce() -> None:  # a steady stream, so that kills land while batches are in flight
        with reliable_producer(bootstrap) as producer:
            for i, e in enumerate(events):
                producer.produce(
                    topic,
                    key=e.entity[0].encode(),
                    value=orjson.dumps({"user_id": e.entity[0], "amount": e.value, "ts": e.ts_ms}),
                )
                if i % 400 == 399:
                    producer.flush()
                    time.sleep(0.2)

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def wait_transactions_settled(bootstrap: str, topic: str, timeout_s: float = 60.0) -> None:
    """Until no transaction is open on ``topic``: a killed worker's open transaction holds back
    read_committed readers (at the last stable offset) until the broker aborts it, so records
    committed after it would not be read yet."""

    def ends(isolation: str) -> list[int]:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                **client_settings(bootstrap),
                "group.id": "featurebus.test.settle",
                "isolation.level": isolation,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in sorted(partitions)]
        finally:
            consumer.close()

    deadline = time.monotonic() + timeout_s
    while ends("read_committed") != ends("read_uncommitted"):
        assert time.monotonic() < deadline, f"a transaction on {topic} stayed open for {timeout_s:g} s"
        time.sleep(0.5)


def assert_feature_topic_equals_oracle(
    bootstrap: str,
    spec: WorkspaceSpec,
    events: list[Event],
    users: list[str],
    t_ms: int,
    view_name: str = "user_spending",
) -> None:
    """Readers merge every shard of a tile: the merged windows must equal the brute force."""
    wait_transactions_settled(bootstrap, feature_topic(spec.name, view_name))
    view = compile_views(spec)[view_name]
    tiles: dict[bytes, list[tuple[int, list[object]]]] = {}
    for key, value in read_compacted(bootstrap, feature_topic(spec.name, view_name)).items():
        entity, start, _ = split_tile_key(key)
        tiles.setdefault(entity, []).append((start, decode_partials(value)))
    for user in users:
        got = compute_values(view, tiles.get(view.entity_key([user]), []), t_ms)
        for agg, value in zip(view.spec.aggregations, got, strict=True):
            want = feature_value(events, (user,), t_ms, agg.function, agg.window_ms, None)
            assert close(value, want), (user, agg.name, value, want)
