"""Shared fixtures: one Kafka broker per test session and a fresh topic per request.

The broker starts lazily, only when a test asks for ``kafka_bootstrap`` or ``topic_factory``,
so unit tests never launch Java. With ``FEATUREBUS_KAFKA_BOOTSTRAP`` set, those fixtures use
that cluster instead of starting one. Tests using them are marked ``kafka`` automatically, so
``pytest -m "not kafka"`` (``make test-fast``) runs everything that needs no broker. A fixture
that asks for the broker at run time (``request.getfixturevalue``) is invisible to that marking:
mark its Kafka case itself (``pytest.param("kafka", marks=pytest.mark.kafka)``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Protocol

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# NewTopic's defining module: confluent_kafka.admin re-exports it without listing it, which
# mypy's no_implicit_reexport rejects.
from confluent_kafka.cimpl import NewTopic

from featurebus.platform.kafka import LocalKafka, kafka_bootstrap_from_env, wait_for_kafka
from featurebus.platform.kafka.security import client_settings, export_to_environ

_BROKER_FIXTURES = frozenset({"kafka_bootstrap", "topic_factory"})
_ADMIN_TIMEOUT_S = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kafka: needs a Kafka broker (started locally unless FEATUREBUS_KAFKA_BOOTSTRAP is set)",
    )
    config.addinivalue_line("markers", "e2e: end-to-end over the real stack (Kafka, stream engine, serving)")
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (Debian's chromium) via Playwright")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker (``host:port``)."""
    external = kafka_bootstrap_from_env()
    if external is not None:
        wait_for_kafka(external, timeout_s=_ADMIN_TIMEOUT_S)
        yield external
        return
    # Secured as `featurebus up` runs it (SASL/SCRAM, ACLs): the tests use its admin, in this
    # process (LocalKafka registers it) and in every `featurebus` child they launch (environment).
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    restore_environ: Callable[[], None] | None = None
    try:
        # Generous: a loaded CI machine can take far longer than the usual few seconds.
        broker.start(timeout_s=120)
        if broker.credentials is not None:
            restore_environ = export_to_environ(broker.credentials.admin)
        yield broker.bootstrap
    finally:
        if restore_environ is not None:
            restore_environ()
        broker.stop()  # Also after a failed start: it may have left a JVM running.


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 1, compacted: bool = False, name: str | None = None) -> str: ...


@pytest.fixture
def topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Create topics that exist (with a leader per partition) when the call returns.

    Names default to ``<test name>-<random>`` so a topic in a broker log points at its test.
    The topics are deleted after the test, which matters on a shared external cluster.
    """
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, **client_settings(kafka_bootstrap)})
    prefix = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:60].strip("-")
    created: list[str] = []

    def create(partitions: int = 1, compacted: bool = False, name: str | None = None) -> str:
        topic = name or f"{prefix}-{uuid.uuid4().hex[:10]}"
        config = {"cleanup.policy": "compact"} if compacted else {}
        new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)
        futures = admin.create_topics([new_topic], operation_timeout=_ADMIN_TIMEOUT_S)
        futures[topic].result(timeout=_ADMIN_TIMEOUT_S)
        created.append(topic)
        _wait_until_topic_has_leaders(admin, topic, partitions)
        return topic

    yield create

    if created:
        for future in admin.delete_topics(created, operation_timeout=_ADMIN_TIMEOUT_S).values():
            with suppress(KafkaException):  # Cleanup must not turn a pass into an error.
                future.result(timeout=_ADMIN_TIMEOUT_S)


def _wait_until_topic_has_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    # create_topics returns when the controller accepted the topic; a producer that starts
    # before every partition has a leader gets transient "unknown topic or partition" errors.
    deadline = time.monotonic() + _ADMIN_TIMEOUT_S
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topic {topic} had no leader for every partition after {_ADMIN_TIMEOUT_S:g}s")
