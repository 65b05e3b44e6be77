"""Kafka credentials and rights as data: the 0600 credentials file, the FEATUREBUS_KAFKA_*
settings, and the split of topic rights between the platform's components."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin._acl import AclOperation
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from featurebus.platform.kafka.credentials import Component, load_or_create_credentials
from featurebus.platform.kafka.rights import component_rights
from featurebus.platform.kafka.security import ENV, KafkaSecurity
from featurebus.platform.kafka.topics import API_KEYS_TOPIC, REGISTRY_TOPIC
from featurebus.schemas.errors import KafkaAccessDeniedError, StoreFormatError


def test_credentials_file_is_private_stable_and_versioned(tmp_path: Path) -> None:
    first = load_or_create_credentials(tmp_path)
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert load_or_create_credentials(tmp_path) == first
    assert len({first.admin_password, first.controller_password, *first.components.values()}) == 2 + len(Component)
    (tmp_path / "credentials.json").write_text('{"format_version": 99}')
    with pytest.raises(StoreFormatError, match="delete"):
        load_or_create_credentials(tmp_path)


def test_settings_from_the_environment() -> None:
    assert KafkaSecurity.from_env({}).librdkafka() == {"security.protocol": "PLAINTEXT"}
    scram = KafkaSecurity.from_env({ENV.username: "svc", ENV.password: "pw"})
    assert scram.librdkafka() == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "pw",
    }
    tls = KafkaSecurity.from_env(
        {
            ENV.security_protocol: "sasl_ssl",
            ENV.sasl_mechanism: "PLAIN",
            ENV.username: "u",
            ENV.password: "p",
            ENV.ssl_ca_location: "/ca.pem",
        }
    )
    assert tls.librdkafka()["security.protocol"] == "SASL_SSL"
    assert tls.librdkafka()["sasl.mechanism"] == "PLAIN"
    assert tls.librdkafka()["ssl.ca.location"] == "/ca.pem"
    assert KafkaSecurity.from_env(tls.as_env()) == tls  # what a supervised child reads back
    java = scram.java_client()  # the Flink connector's clients
    assert java["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="pw";'
    )
    assert tls.java_client()["ssl.truststore.location"] == "/ca.pem"
    with pytest.raises(KafkaAccessDeniedError, match=ENV.password):
        KafkaSecurity.from_env({ENV.security_protocol: "SASL_PLAINTEXT", ENV.username: "u"}).librdkafka()


def _writes(component: Component) -> set[tuple[str, ResourcePatternType]]:
    return {
        (r.name, r.pattern)
        for r in component_rights(component, ["ws"])
        if r.resource == ResourceType.TOPIC and r.allow and r.operation in (AclOperation.WRITE, AclOperation.ALL)
    }


def test_only_the_control_plane_may_write_the_platforms_own_topics() -> None:
    assert _writes(Component.CONTROL) == {("featurebus.", ResourcePatternType.PREFIXED)}
    assert _writes(Component.SERVING) == {("featurebus.ws.push.", ResourcePatternType.PREFIXED)}
    assert _writes(Component.WORKER) == {
        ("featurebus.ws.features.", ResourcePatternType.PREFIXED),
        ("featurebus.ws.dead-letter", ResourcePatternType.LITERAL),
    }
    assert _writes(Component.JOBS) == {
        ("featurebus.ws.jobs", ResourcePatternType.LITERAL),
        ("featurebus.ws.features.", ResourcePatternType.PREFIXED),
    }
    assert _writes(Component.OFFLINE) == set()
    for component in Component:
        for name, pattern in _writes(component):
            covers_registry = (
                REGISTRY_TOPIC.startswith(name) if pattern == ResourcePatternType.PREFIXED else name == REGISTRY_TOPIC
            )
            assert covers_registry == (component is Component.CONTROL)


def test_principal_keys_are_read_only_by_the_control_plane_and_serving() -> None:
    for component in Component:
        denied = {
            r.name for r in component_rights(component, ["ws"]) if not r.allow and r.operation == AclOperation.READ
        }
        assert (API_KEYS_TOPIC in denied) == (component not in (Component.CONTROL, Component.SERVING))
