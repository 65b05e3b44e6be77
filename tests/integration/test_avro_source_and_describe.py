"""A source in the Confluent Avro wire format, end to end over the real broker: the stream worker
decodes it, publishes features, dead-letters a malformed record with its reason; then
`featurebus describe` reports the feature topic's end offsets and the worker's lag."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, group_lag
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import dead_letter_topic, worker_group
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.streams.avro import confluent_frame
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka

SCHEMA = {
    "type": "record",
    "name": "Tx",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def _avro(record: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    return confluent_frame(42, out.getvalue())


def _dead_letters(bootstrap: str, topic: str) -> list[dict[str, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **client_settings(bootstrap),
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        found: list[dict[str, bytes]] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10, timeout=0.5):
                if msg.error() is None:
                    found.append({k: v for k, v in (msg.headers() or [])})
        return found
    finally:
        consumer.close()


def test_confluent_avro_source_through_the_worker_then_describe(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic, workspace = f"avro_{uuid.uuid4().hex[:6]}", f"avro_{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, 1)])
    base = spending_workspace(topic=topic, name=workspace)
    source = base.stream_sources[0]
    avro_source = dataclasses.replace(
        source, kafka=dataclasses.replace(source.kafka, value_format="confluent_avro", avro_schema=json.dumps(SCHEMA))
    )
    apply_workspace(KafkaRegistry(kafka_bootstrap), dataclasses.replace(base, stream_sources=(avro_source,)))
    with reliable_producer(kafka_bootstrap) as producer:
        for i in range(20):
            producer.produce(topic, value=_avro({"user_id": f"u{i % 3}", "amount": 1.5, "ts": 1_000 + i}), key=b"k")
        producer.produce(topic, value=b'{"user_id": "json-by-mistake"}', key=b"k")

    args = [
        sys.executable,
        "-m",
        "featurebus",
        "worker",
        "--workspace",
        workspace,
        "--bootstrap",
        kafka_bootstrap,
        "--home",
        str(tmp_path / "home"),
    ]
    worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while group_lag(kafka_bootstrap, worker_group(workspace), [topic]) > 0:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.5)
    finally:
        worker.kill()
        worker.wait()

    letters = _dead_letters(kafka_bootstrap, dead_letter_topic(workspace))
    assert len(letters) == 1 and b"Confluent wire format" in letters[0]["featurebus.reason"]

    described = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "describe",
            "user_spending",
            "--workspace",
            workspace,
            "--json",
            "--bootstrap",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert described.returncode == 0, described.stderr
    state = json.loads(described.stdout)["materialization"]["state"]
    assert state["available"] is True and state["worker_lag"] == 0
    assert state["topics"][0]["records"] > 0  # tiles of u0, u1, u2 were published
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "describe",
            "transactions",
            "--workspace",
            workspace,
            "--bootstrap",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert text.returncode == 0, text.stderr
    assert f"{topic}: 21 records (end offsets p0=21)" in text.stdout and "stream worker lag: 0 records" in text.stdout
