"""The bus enforces the platform's split of rights (issue 15, item 4).

The session broker runs as `featurebus up` runs its own: SASL/SCRAM-SHA-512 with Kafka's KRaft
ACL authorizer. Here each component's principal gets exactly the rights `featurebus up` grants
(``grant_component_rights``), and raw confluent-kafka clients using those credentials try what
they must not do: the refusals come from the broker, not from featurebus.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.credentials import PASSWORD_ENV_PREFIX, BusCredentials, Component
from featurebus.platform.kafka.rights import grant_component_rights
from featurebus.platform.kafka.security import KafkaSecurity, register_credentials, security_for
from featurebus.platform.kafka.topics import API_KEYS_TOPIC, REGISTRY_TOPIC, feature_topic, push_topic
from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.registry.kafka import registry_topics
from featurebus.schemas.errors import KafkaAccessDeniedError

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def granted(kafka_bootstrap: str) -> tuple[str, BusCredentials]:
    """A workspace whose components hold exactly the rights `featurebus up` grants."""
    if security_for(kafka_bootstrap).username is None:
        pytest.skip("the session broker is not secured (an external FEATUREBUS_KAFKA_BOOTSTRAP without SASL)")
    workspace = f"acl_{uuid.uuid4().hex[:8]}"
    credentials = BusCredentials()
    ensure_topics(kafka_bootstrap, [*registry_topics(), TopicConfig(API_KEYS_TOPIC, compacted=True)])
    grant_component_rights(kafka_bootstrap, credentials, [workspace])
    return workspace, credentials


def _write(
    bootstrap: str, security: KafkaSecurity | None, topic: str, value: bytes | None = b"must not land"
) -> KafkaError | None:
    """Produce one record as ``security`` (None: no credentials); the delivery's error, if any."""
    config = {"bootstrap.servers": bootstrap, "message.timeout.ms": 10_000, "enable.idempotence": False}
    if security is not None:
        config |= security.librdkafka()
    producer = Producer(config)
    outcome: list[KafkaError | None] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        outcome.append(error)

    producer.produce(topic, key=b"acl-test", value=value, on_delivery=delivered)
    producer.flush(15)
    assert outcome, f"no delivery report for {topic} within 15 s"
    return outcome[0]


def _ensure(bootstrap: str, *topics: str) -> None:
    ensure_topics(bootstrap, [TopicConfig(topic) for topic in topics])


@pytest.mark.parametrize("component", [Component.SERVING, Component.WORKER, Component.JOBS, Component.OFFLINE])
def test_no_component_but_the_control_plane_can_write_the_registry(
    kafka_bootstrap: str, granted: tuple[str, BusCredentials], component: Component
) -> None:
    _, credentials = granted
    error = _write(kafka_bootstrap, credentials.component(component), REGISTRY_TOPIC)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    # The control plane may (a tombstone of a key no workspace has: the registry stays intact).
    assert _write(kafka_bootstrap, credentials.component(Component.CONTROL), REGISTRY_TOPIC, value=None) is None


def test_serving_writes_only_push_topics_and_the_worker_only_feature_topics(
    kafka_bootstrap: str, granted: tuple[str, BusCredentials]
) -> None:
    workspace, credentials = granted
    push, features = push_topic(workspace, "clicks"), feature_topic(workspace, "spend")
    _ensure(kafka_bootstrap, push, features)
    serving, worker = credentials.component(Component.SERVING), credentials.component(Component.WORKER)
    outcomes = {
        "serving -> push": _write(kafka_bootstrap, serving, push),
        "serving -> features": _write(kafka_bootstrap, serving, features),
        "serving -> api keys": _write(kafka_bootstrap, serving, API_KEYS_TOPIC),
        "worker -> features": _write(kafka_bootstrap, worker, features),
        "worker -> push": _write(kafka_bootstrap, worker, push),
        "worker -> other workspace's features": _write(kafka_bootstrap, worker, feature_topic("elsewhere", "x")),
    }
    refused = {name for name, error in outcomes.items() if error is not None}
    assert refused == {
        "serving -> features",
        "serving -> api keys",
        "worker -> push",
        "worker -> other workspace's features",
    }, outcomes


def test_nothing_connects_without_credentials_or_with_a_wrong_password(
    kafka_bootstrap: str, granted: tuple[str, BusCredentials]
) -> None:
    anonymous = AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    wrong = KafkaSecurity.scram(Component.SERVING.username, "not-the-password")
    impostor = AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0, **wrong.librdkafka()})
    with pytest.raises(KafkaException):
        impostor.list_topics(timeout=5)


@contextmanager
def _running_as(bootstrap: str, security: KafkaSecurity) -> Iterator[None]:
    previous = security_for(bootstrap)
    register_credentials(bootstrap, security)
    try:
        yield
    finally:
        register_credentials(bootstrap, previous)


def test_a_component_without_a_right_fails_naming_the_topic_and_the_operation(
    kafka_bootstrap: str, granted: tuple[str, BusCredentials]
) -> None:
    workspace, credentials = granted
    serving = credentials.component(Component.SERVING)
    with _running_as(kafka_bootstrap, serving):
        registry = KafkaRegistry(kafka_bootstrap)
        with pytest.raises(KafkaAccessDeniedError) as denied_key:
            registry.put_api_key(b"acl-test", b"{}")
        with pytest.raises(KafkaAccessDeniedError) as denied_apply:
            registry.apply(workspace, [(REGISTRY_TOPIC, workspace.encode(), b"{}")], "apply")
    assert "User:featurebus-serving" in str(denied_key.value)
    assert f"write topic {API_KEYS_TOPIC!r}" in str(denied_key.value)
    assert "User:featurebus-serving" in str(denied_apply.value)
    assert f"featurebus.registry.{workspace}" in str(denied_apply.value)  # its transactional id, refused first


def test_kafka_setup_creates_the_principals_with_the_deployments_passwords(
    kafka_bootstrap: str, granted: tuple[str, BusCredentials], tmp_path: Path
) -> None:
    """`featurebus kafka setup` (docker/compose.yaml's setup service), run as the cluster admin.
    Last in this module: it gives the component principals new passwords."""
    workspace = f"setup_{uuid.uuid4().hex[:8]}"
    passwords = {c: f"pw-{c.value}-{uuid.uuid4().hex}" for c in Component}
    environ = {**os.environ, **{f"{PASSWORD_ENV_PREFIX}{c.value.upper()}": p for c, p in passwords.items()}}
    command = ["kafka", "setup", "-w", workspace, "--bootstrap", kafka_bootstrap, "--home", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "featurebus", *command], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    spec = KafkaRegistry(kafka_bootstrap).get(workspace)
    assert spec is not None and spec.live
    push = push_topic(workspace, "clicks")
    _ensure(kafka_bootstrap, push)
    serving = KafkaSecurity.scram(Component.SERVING.username, passwords[Component.SERVING])
    assert _write(kafka_bootstrap, serving, push) is None
    refused = _write(kafka_bootstrap, serving, REGISTRY_TOPIC)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
