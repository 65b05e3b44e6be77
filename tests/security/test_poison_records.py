"""No record can stop the pipeline (issue #13, item 2), against the real broker and worker.

The issue's case first: an int64 of 2**63 was accepted by ``POST /ingest`` and then crashed the
worker on every restart, and the same value on a Kafka source crashed the worker instead of
going to the dead-letter topic. Then hypothesis feeds arbitrary good and bad records, JSON and
Avro, for every schema type, to one running worker: it keeps running, every bad record lands in
the dead-letter topic with a reason, and every good one is counted in the tiles.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.platform.kafka.admin import group_lag, read_compacted
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import dead_letter_topic, feature_topic, worker_group
from featurebus.platform.kv import MemoryStore
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import decode_partials
from featurebus.serving.app import create_app
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.serving.service import FeatureServer
from tests.support.poison import avro_batch, json_batch, poison_workspace
from tests.support.workers import start_worker
from tests.unit.test_serving_http import WRITER, _auth, _keys

POISON = 2**63  # one past the largest int64
GOOD = {"user_id": "u1", "n": 1, "ts": "2026-11-26T10:00:00.000Z"}


def test_ingest_refuses_an_int64_of_2_pow_63_and_writes_nothing() -> None:
    sink = MemoryRecordSink()
    spec = poison_workspace("test", push=True)
    app = create_app(
        FeatureServer(lambda: {"test": spec}, MemoryStore(), lambda: 0),
        _keys(),
        ingest=IngestService(lambda: {"test": spec}, sink),
    )
    body = {"workspace_name": "test", "records": {"events": [{"record": GOOD}, {"record": {**GOOD, "n": POISON}}]}}
    with TestClient(app) as client:
        response = client.post("/ingest", content=orjson.dumps(body), headers=_auth(WRITER))
    assert response.status_code == 400, response.text
    assert [
        (e["recordIndex"], "field 'n'" in e["errorMessage"] and "out of range" in e["errorMessage"])
        for e in response.json()["recordErrors"]
    ] == [(1, True)]
    assert sink.records == []


# -- against the broker ------------------------------------------------------------------------
class _Pipeline:
    """One workspace, its two source topics and one running worker."""

    def __init__(self, bootstrap: str, topic_factory: object, home: Path) -> None:
        self.bootstrap = bootstrap
        self.workspace = f"poison_{uuid.uuid4().hex[:8]}"
        self.json_topic = topic_factory(partitions=2)  # type: ignore[operator]
        self.avro_topic = topic_factory(partitions=1)  # type: ignore[operator]
        apply_workspace(KafkaRegistry(bootstrap), poison_workspace(self.workspace, self.json_topic, self.avro_topic))
        self.home = home
        self.worker: subprocess.Popen[bytes] = start_worker(bootstrap, self.workspace, home)
        self.sent: dict[tuple[str, int], int] = {}  # next offset per partition

    def produce(self, topic: str, payloads: list[bytes]) -> list[tuple[str, int, int]]:
        """Write ``payloads`` round-robin over the topic's partitions; where each went."""
        partitions = 2 if topic == self.json_topic else 1
        where = []
        with reliable_producer(self.bootstrap) as producer:
            for i, payload in enumerate(payloads):
                partition = i % partitions
                producer.produce(topic, value=payload, partition=partition)
                offset = self.sent.get((topic, partition), 0)
                self.sent[(topic, partition)] = offset + 1
                where.append((topic, partition, offset))
        return where

    def wait_processed(self) -> None:
        deadline = time.monotonic() + 120
        while group_lag(self.bootstrap, worker_group(self.workspace), [self.json_topic, self.avro_topic]) > 0:
            assert self.worker.poll() is None, f"the worker exited:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"the worker did not catch up:\n{self.log()[-4000:]}"
            time.sleep(0.3)
        assert self.worker.poll() is None, f"the worker exited:\n{self.log()[-4000:]}"

    def dead_letters(self) -> dict[tuple[str, int, int], str]:
        """(source topic, partition, offset) -> reason, of every committed dead letter."""
        topic = dead_letter_topic(self.workspace)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                **client_settings(self.bootstrap),
                "group.id": f"dlq-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions
            }
            consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
            found: dict[tuple[str, int, int], str] = {}
            reading = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
            deadline = time.monotonic() + 30

            def behind() -> bool:
                # The consumer's position, not the last message's offset + 1: it also steps over
                # the transactions' commit markers, which take offsets no message has.
                return any(tp.offset < ends[tp.partition] for tp in consumer.position(reading))

            while behind() and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None or message.error():
                    continue
                headers = {k: (v or b"").decode() for k, v in message.headers() or []}
                found[
                    (
                        headers["featurebus.topic"],
                        int(headers["featurebus.partition"]),
                        int(headers["featurebus.offset"]),
                    )
                ] = headers["featurebus.reason"]
            return found
        finally:
            consumer.close()

    def counted(self, view: str) -> int:
        """Events folded into the view's tiles: the sum of the latest tiles' counts."""
        tiles = read_compacted(self.bootstrap, feature_topic(self.workspace, view))
        return sum(int(decode_partials(value)[0]) for value in tiles.values())

    def log(self) -> str:
        path = self.home / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(10)


@pytest.fixture
def pipeline(kafka_bootstrap: str, topic_factory: object, tmp_path: Path) -> Iterator[_Pipeline]:
    running = _Pipeline(kafka_bootstrap, topic_factory, tmp_path / "home")
    try:
        yield running
    finally:
        running.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.kafka
def test_an_int64_of_2_pow_63_on_a_kafka_source_is_dead_lettered_and_the_worker_keeps_running(
    pipeline: _Pipeline,
) -> None:
    now = _now_ms()
    good = [orjson.dumps({**GOOD, "user_id": f"u{i}", "ts": now + i}) for i in range(4)]
    poison = orjson.dumps({**GOOD, "n": POISON, "ts": now})  # orjson writes it: it is a valid uint64
    where = pipeline.produce(pipeline.json_topic, [good[0], poison, good[1], good[2], poison, good[3]])
    pipeline.wait_processed()
    dead = pipeline.dead_letters()
    assert set(dead) == {where[1], where[4]}
    assert all("field 'n'" in reason and "out of range for int64" in reason for reason in dead.values()), dead
    assert pipeline.counted("user_events") == 4
    # A restart reads on from the committed offsets: nothing left to crash on.
    pipeline.stop()
    pipeline.worker = start_worker(pipeline.bootstrap, pipeline.workspace, pipeline.home)
    pipeline.produce(pipeline.json_topic, [orjson.dumps({**GOOD, "user_id": "u9", "ts": now + 9})])
    pipeline.wait_processed()
    assert pipeline.counted("user_events") == 5 and len(pipeline.dead_letters()) == 2


@pytest.mark.kafka
def test_arbitrary_records_never_stop_the_worker(pipeline: _Pipeline) -> None:
    """Every example is a batch of JSON and Avro records (good, one field broken, whole payload
    broken, refused by the transformation) written while the same worker runs."""
    start_ms = _now_ms()
    expected_dead: set[tuple[str, int, int]] = set()
    expected_good = {"user_events": 0, "account_events": 0}
    examples = 0

    @settings(
        max_examples=4,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(st.data())
    def feed(data: st.DataObject) -> None:
        nonlocal start_ms, examples
        json_payloads, json_good = json_batch(data.draw, start_ms, data.draw(st.integers(30, 90), label="json records"))
        avro_payloads, avro_good = avro_batch(data.draw, start_ms, data.draw(st.integers(15, 50), label="avro records"))
        start_ms += 100  # timestamps only grow: no good record is ever late
        for topic, payloads, good, view in (
            (pipeline.json_topic, json_payloads, json_good, "user_events"),
            (pipeline.avro_topic, avro_payloads, avro_good, "account_events"),
        ):
            where = pipeline.produce(topic, payloads)
            expected_dead.update(w for w, ok in zip(where, good, strict=True) if not ok)
            expected_good[view] += sum(good)
        examples += 1
        pipeline.wait_processed()
        dead = pipeline.dead_letters()
        assert set(dead) == expected_dead, {k: v for k, v in dead.items() if k not in expected_dead}
        assert all(dead.values())
        assert {view: pipeline.counted(view) for view in expected_good} == expected_good

    feed()
    assert examples >= 3 and pipeline.worker.poll() is None
