"""The local Kafka broker every Kafka test relies on.

It carries real traffic, a second one starts and stops cleanly next to the session broker, the
detached (CLI) mode keeps topics across restarts, and a missing cluster or tool fails fast with
a message that says what to do.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

# NewTopic's defining module: confluent_kafka.admin re-exports it without listing it, which
# mypy's no_implicit_reexport rejects.
from confluent_kafka.cimpl import NewTopic

from featurebus.exceptions import KafkaUnavailableError
from featurebus.platform.kafka import LocalKafka, ensure_kafka_jars, find_java, wait_for_kafka
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.security import client_settings


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Short-lived admin clients: one kept across a broker stop would log reconnect noise.
def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **client_settings(bootstrap)})
    new_topic = NewTopic(topic, num_partitions=1, replication_factor=1)
    admin.create_topics([new_topic])[topic].result(timeout=30)


def _topic_names(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **client_settings(bootstrap)})
    return set(admin.list_topics(timeout=10).topics)


def test_idempotent_producer_round_trips_through_the_session_broker(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)
    sent = [(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(5)]
    delivery_errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            delivery_errors.append(error)

    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            **client_settings(kafka_bootstrap),
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    for key, value in sent:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert delivery_errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            **client_settings(kafka_bootstrap),
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[bytes | None, bytes | None, int | None]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append((message.key(), message.value(), message.offset()))
    finally:
        consumer.close()

    # In order, once each: offsets 0..4 show the idempotent producer wrote no duplicates.
    assert received == [(key, value, offset) for offset, (key, value) in enumerate(sent)]


@pytest.mark.kafka
def test_second_broker_starts_and_stops_cleanly(kafka_bootstrap: str) -> None:
    broker = LocalKafka()  # Temporary directory, removed by stop().
    with broker:
        pid = broker.pid
        data_dir = broker.log_path.parent
        assert pid is not None and _pid_exists(pid)
        assert broker.bootstrap.startswith("127.0.0.1:")
        assert broker.bootstrap != kafka_bootstrap
        assert broker.started_in_s is not None and 0 < broker.started_in_s < 60
        wait_for_kafka(broker.bootstrap, timeout_s=5)

    assert not _pid_exists(pid)
    assert broker.pid is None
    assert not data_dir.exists()
    broker.stop()  # Idempotent.
    with pytest.raises(KafkaUnavailableError, match="not running"):
        _ = broker.bootstrap


@pytest.mark.kafka
def test_detached_broker_survives_restart_with_its_topics(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = LocalKafka.start_detached(state_dir)
    try:
        assert LocalKafka.start_detached(state_dir) == first  # Already running: no second JVM.
        assert LocalKafka.status_detached(state_dir) == first
        _create_topic(first.bootstrap, "kept")

        assert LocalKafka.stop_detached(state_dir) is True
        assert not _pid_exists(first.pid)
        assert LocalKafka.status_detached(state_dir) is None
        assert LocalKafka.stop_detached(state_dir) is False

        second = LocalKafka.start_detached(state_dir)
        assert second.pid != first.pid
        assert second.bootstrap == first.bootstrap  # Same ports again: clients keep working.
        assert "kept" in _topic_names(second.bootstrap)
    finally:
        LocalKafka.stop_detached(state_dir)


def test_wait_for_kafka_on_a_closed_port_fails_fast_with_a_hint() -> None:
    port, _ = free_port_pair()  # Nothing listens there.
    bootstrap = f"127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError) as raised:
        wait_for_kafka(bootstrap, timeout_s=1.0)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert bootstrap in message
    assert "featurebus kafka start" in message
    assert "FEATUREBUS_KAFKA_BOOTSTRAP" in message


def test_missing_java_or_maven_is_reported_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = find_java()
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(java)
    monkeypatch.delenv("JAVA_HOME", raising=False)

    monkeypatch.setenv("PATH", str(tmp_path))  # Neither java nor mvn.
    with pytest.raises(KafkaUnavailableError, match="`java` is not on PATH"):
        ensure_kafka_jars(tmp_path / "cache")

    monkeypatch.setenv("PATH", str(only_java))
    with pytest.raises(KafkaUnavailableError, match=r"Maven \(`mvn`\)"):
        ensure_kafka_jars(tmp_path / "cache")


_FAKE_MVN = """#!/bin/sh
# Stands in for Maven: records the call, then fails or "downloads" one jar.
echo call >> "$FAKE_MVN_CALLS"
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}" ;; esac
done
if [ -n "$FAKE_MVN_FAIL" ]; then echo "[ERROR] Could not resolve dependencies"; exit 1; fi
mkdir -p "$out" && touch "$out/kafka_2.13-4.4.0.jar"
"""


def test_jar_cache_is_trusted_only_after_maven_succeeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text(_FAKE_MVN)
    (bin_dir / "mvn").chmod(0o755)
    calls = tmp_path / "mvn-calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # Fake mvn first.
    monkeypatch.setenv("FAKE_MVN_CALLS", str(calls))
    monkeypatch.setenv("FEATUREBUS_CACHE_DIR", str(tmp_path / "cache"))

    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    with pytest.raises(KafkaUnavailableError, match="Could not resolve dependencies"):
        ensure_kafka_jars()
    assert not (tmp_path / "cache" / "kafka-4.4.0" / ".complete").exists()

    monkeypatch.delenv("FAKE_MVN_FAIL")
    libs = ensure_kafka_jars()  # The failed attempt is redone, not trusted.
    assert libs == tmp_path / "cache" / "kafka-4.4.0" / "libs"
    assert [jar.name for jar in libs.glob("*.jar")] == ["kafka_2.13-4.4.0.jar"]

    assert ensure_kafka_jars() == libs  # Cached: Maven is not run again.
    assert calls.read_text().count("call") == 2
