"""``featurebus serve`` on SIGTERM: stops accepting, finishes the request in flight, flushes the
ingest producer, closes the online store and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.kv import RocksStore
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.serving.main import wait_until_ready
from tests.support.push_repo import push_workspace

pytestmark = [pytest.mark.kafka]

RECORDS = 500


def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "group.id": f"size-{uuid.uuid4().hex}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _request(port: int, body: bytes, key: str) -> bytes:
    head = (
        f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Tecton-key {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ")[1]), rest


def test_sigterm_finishes_the_request_in_flight_then_exits_0(kafka_bootstrap: str, tmp_path: Path) -> None:
    workspace = f"shutdown_{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(workspace))
    _, writer = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "writer")
    port = free_port_pair()[0]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurebus",
                "serve",
                "--port",
                str(port),
                "--bootstrap",
                kafka_bootstrap,
                "--home",
                str(tmp_path / "home"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=60)
        now_ms = int(time.time() * 1000)
        records = [
            {"record": {"user_id": f"u{i % 7}", "price": 1.0, "quantity": i, "ts": now_ms - i}} for i in range(RECORDS)
        ]
        body = orjson.dumps({"workspace_name": workspace, "records": {"clicks": records}})
        probe = orjson.dumps({"workspace_name": workspace, "dry_run": True, "records": {"clicks": records[:1]}})
        deadline = time.monotonic() + 30
        while True:  # the replica learns of the new workspace and key from the bus
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(_request(port, probe, writer))
                status, answer = _read_response(sock)
            if status == 200 or time.monotonic() > deadline:
                assert status == 200, answer
                break
            time.sleep(0.3)

        # The request in flight: headers and half the body sent, then SIGTERM.
        message = _request(port, body, writer)
        half = len(message) - len(body) // 2
        in_flight = socket.create_connection(("127.0.0.1", port))
        in_flight.sendall(message[:half])
        time.sleep(0.5)  # the server has parsed the headers and is reading the body
        process.send_signal(signal.SIGTERM)
        refused_by = time.monotonic() + 10
        while True:  # no new connections once shutdown began
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < refused_by, "the server still accepts connections after SIGTERM"
            time.sleep(0.05)
        in_flight.sendall(message[half:])
        status, answer = _read_response(in_flight)
        in_flight.close()
        assert status == 200, answer
        assert orjson.loads(answer)["ingestMetrics"]["featureViewIngestMetrics"][0]["onlineRecordIngestCount"] == str(
            RECORDS
        )
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _topic_size(kafka_bootstrap, push_topic(workspace, "clicks")) == RECORDS
    RocksStore(tmp_path / "home" / "serving" / "online").close()  # the store was closed: its lock is free
