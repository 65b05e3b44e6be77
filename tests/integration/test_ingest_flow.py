"""Ingestion against the real broker: pushed records flow through the stream worker into the
online store and are served; rejected and dry-run requests leave the push topic untouched."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.credentials import Component
from featurebus.platform.kafka.security import ENV, client_settings, security_for
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.time import format_iso_ms
from featurebus.streams.records import parse_timestamp_ms
from tests.support.oracle import Event, close, feature_value
from tests.support.push_repo import push_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]
HOUR = 3_600_000


def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "group.id": f"size-{uuid.uuid4().hex}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _assert_each_component_runs_as_its_own_principal(platform: LocalPlatform) -> None:
    pids = platform.pids()
    for component in Component:
        environ = Path(f"/proc/{pids[component.value]}/environ").read_bytes().split(b"\0")
        assert f"{ENV.username}={component.username}".encode() in environ, component


def test_ingested_records_are_served_and_rejected_ones_never_written(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    workspace = f"push_{uuid.uuid4().hex[:8]}"
    topic = push_topic(workspace, "clicks")
    # Each component with its own Kafka principal and rights, as `featurebus up` runs them.
    with LocalPlatform(tmp_path / "home", workspace, bootstrap=kafka_bootstrap, kafka_principals=True) as platform:
        if security_for(kafka_bootstrap).username is not None:  # the session broker is secured
            _assert_each_component_runs_as_its_own_principal(platform)
        apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(workspace))
        _, writer = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "writer")
        _, reader = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
        _, foreign_writer = create_api_key(KafkaRegistry(kafka_bootstrap), f"{workspace}_other", "writer")
        now = int(time.time() * 1000)
        events = [
            Event((f"u{rng.randrange(5)}",), now - rng.randrange(50 * 60_000), rng.randrange(1, 9)) for _ in range(60)
        ]
        records = [
            {"record": {"user_id": e.entity[0], "price": 1.0, "quantity": e.value, "ts": format_iso_ms(e.ts_ms)}}
            for e in events
        ]
        with httpx.Client(base_url=platform.serving_url, timeout=30.0) as client:

            def ingest(body: dict[str, Any], key: str = writer) -> httpx.Response:
                deadline = time.monotonic() + 30
                while True:  # the replica learns of the new workspace and key within a second or so
                    response = client.post("/ingest", json=body, headers={"Authorization": f"Tecton-key {key}"})
                    if response.status_code not in (401, 404) or time.monotonic() > deadline:
                        return response
                    time.sleep(0.3)

            dry = ingest({"workspace_name": workspace, "dry_run": True, "records": {"clicks": records}})
            assert dry.status_code == 200, dry.text
            body = {"workspace_name": workspace, "records": {"clicks": records}}
            refused = {
                "no key": client.post("/ingest", json=body),
                "wrong key": client.post("/ingest", json=body, headers={"Authorization": "Tecton-key fbk_wrong"}),
                "reader key": client.post("/ingest", json=body, headers={"Authorization": f"Bearer {reader}"}),
                "other workspace's writer": ingest(body, foreign_writer),
            }
            assert {name: r.status_code for name, r in refused.items()} == {
                "no key": 401,
                "wrong key": 401,
                "reader key": 403,
                "other workspace's writer": 403,
            }
            assert all("message" in r.json() for r in refused.values())
            rejected = ingest(
                {"workspace_name": workspace, "records": {"clicks": [*records, {"record": {"user_id": "u1"}}]}}
            )
            assert rejected.status_code == 400 and rejected.json()["recordErrors"][0]["recordIndex"] == len(records)
            assert _topic_size(kafka_bootstrap, topic) == 0
            # read_after_write: once answered, this replica already serves the records' effect,
            # so the reads below are made once each, never retried.
            started = time.monotonic()
            accepted = ingest({"workspace_name": workspace, "read_after_write": True, "records": {"clicks": records}})
            assert accepted.status_code == 200, accepted.text
            assert time.monotonic() - started < 15
            assert _topic_size(kafka_bootstrap, topic) == len(records)
            for user in [f"u{i}" for i in range(5)]:
                response = client.post(
                    "/api/v1/feature-service/get-features",
                    headers={"Authorization": f"Bearer {reader}"},
                    json={
                        "params": {
                            "workspaceName": workspace,
                            "featureServiceName": "clicks",
                            "joinKeyMap": {"user_id": user},
                            "metadataOptions": {"includeEffectiveTimes": True},
                        }
                    },
                )
                assert response.status_code == 200, response.text
                body = response.json()
                t_ms = parse_timestamp_ms(body["metadata"]["features"][0]["effectiveTime"])
                got = [int(v) if isinstance(v, str) else v for v in body["result"]["features"]]
                want = [feature_value(events, (user,), t_ms, fn, HOUR, None) for fn in ("count", "sum")]
                assert all(close(g, w) for g, w in zip(got, want, strict=True)), (user, got, want)


def test_concurrent_writes_each_wait_for_their_own_acknowledgements(kafka_bootstrap: str, topic_factory: Any) -> None:
    import asyncio
    import threading

    from featurebus.serving.ingest import KafkaRecordSink

    topic = topic_factory(partitions=3)
    sink = KafkaRecordSink(kafka_bootstrap)
    requests = [[(topic, f"k{r % 5}".encode(), f"{r}:{i}".encode()) for i in range(50)] for r in range(20)]

    async def all_async() -> list[dict[tuple[str, int], int]]:
        return await asyncio.gather(*(sink.send(records) for records in requests[:16]))

    from_threads: list[dict[tuple[str, int], int]] = []
    threads = [
        threading.Thread(target=lambda r=records: from_threads.append(sink.send_all(r))) for records in requests[16:]
    ]
    for thread in threads:
        thread.start()
    written = asyncio.run(all_async())
    for thread in threads:
        thread.join(30)
    assert sink.close() == 0
    assert _topic_size(kafka_bootstrap, topic) == 20 * 50
    for offsets in [*written, *from_threads]:  # each answer names where its own last records went
        assert offsets and all(tp[0] == topic and offset >= 0 for tp, offset in offsets.items())
    highest = {}
    for offsets in [*written, *from_threads]:
        for tp, offset in offsets.items():
            highest[tp] = max(highest.get(tp, -1), offset)
    assert sum(offset + 1 for offset in highest.values()) == 20 * 50  # the last write of each partition is its end
