"""How a featurebus process authenticates to Kafka, and what a refused right means.

A process's credentials come from its environment (``FEATUREBUS_KAFKA_*``, see ``ENV``) — that is
how ``featurebus up`` hands every supervised component its own principal, and how an operator
points featurebus at an existing SASL / TLS cluster. A process that starts a secured local broker
itself (``LocalKafka``, the test fixtures) registers the broker's admin credentials for that
broker's address with ``register_credentials``; those win for that address only, so one process
can talk to a secured test broker and a plaintext one side by side.

``clients`` is the only caller of ``client_settings``; everything else sees ``KafkaAccessDeniedError``
from ``access_denied``, which names the principal, the resource and the operation that was refused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError

from featurebus.schemas.errors import KafkaAccessDeniedError

__all__ = [
    "ENV",
    "KafkaSecurity",
    "SCRAM_MECHANISM",
    "access_denied",
    "client_settings",
    "export_to_environ",
    "is_access_denied",
    "register_credentials",
    "security_for",
    "unregister_credentials",
]

SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class _Env:
    security_protocol: str = "FEATUREBUS_KAFKA_SECURITY_PROTOCOL"
    sasl_mechanism: str = "FEATUREBUS_KAFKA_SASL_MECHANISM"
    username: str = "FEATUREBUS_KAFKA_SASL_USERNAME"
    password: str = "FEATUREBUS_KAFKA_SASL_PASSWORD"
    ssl_ca_location: str = "FEATUREBUS_KAFKA_SSL_CA_LOCATION"


ENV = _Env()
"""The environment variables a process's Kafka credentials are read from."""


@dataclass(frozen=True)
class KafkaSecurity:
    """librdkafka's security settings for one principal (all optional: plaintext by default)."""

    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN
    username: str | None = None
    password: str | None = None
    ssl_ca_location: str | None = None  # a PEM file of the CA that signed the brokers' certificates

    @classmethod
    def scram(cls, username: str, password: str) -> KafkaSecurity:
        """A SCRAM-SHA-512 principal over SASL_PLAINTEXT, as the local broker expects."""
        return cls("SASL_PLAINTEXT", SCRAM_MECHANISM, username, password)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        username = get(ENV.username)
        protocol = get(ENV.security_protocol) or ("SASL_PLAINTEXT" if username else "PLAINTEXT")
        mechanism = get(ENV.sasl_mechanism) or (SCRAM_MECHANISM if protocol.startswith("SASL") else None)
        return cls(protocol.upper(), mechanism, username, get(ENV.password), get(ENV.ssl_ca_location))

    @property
    def principal(self) -> str:
        return f"User:{self.username}" if self.username else "User:ANONYMOUS"

    def librdkafka(self) -> dict[str, str]:
        settings = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            if not self.username or self.password is None:
                raise KafkaAccessDeniedError(
                    f"Kafka security protocol {self.security_protocol} needs a SASL username and password: set "
                    f"{ENV.username} and {ENV.password}"
                )
            settings |= {
                "sasl.mechanism": self.sasl_mechanism or SCRAM_MECHANISM,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        if self.ssl_ca_location:
            settings["ssl.ca.location"] = self.ssl_ca_location
        return settings

    def java_client(self, kafka_package: str = "org.apache.kafka") -> dict[str, str]:
        """The same principal as Kafka's Java clients configure it; ``kafka_package``: where the
        client's classes live (a shading connector, as Flink's SQL connector, relocates them)."""
        settings = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            mechanism = self.sasl_mechanism or SCRAM_MECHANISM
            module = (
                f"{kafka_package}.common.security.plain.PlainLoginModule"
                if mechanism == "PLAIN"
                else f"{kafka_package}.common.security.scram.ScramLoginModule"
            )
            username, password = _jaas_quoted(self.username or ""), _jaas_quoted(self.password or "")
            settings |= {
                "sasl.mechanism": mechanism,
                "sasl.jaas.config": f'{module} required username="{username}" password="{password}";',
            }
        if self.ssl_ca_location:
            settings |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": self.ssl_ca_location}
        return settings

    def as_env(self) -> dict[str, str]:
        """The environment that makes a child process use this principal (every variable set, so
        nothing the parent inherited leaks through)."""
        return {
            ENV.security_protocol: self.security_protocol,
            ENV.sasl_mechanism: self.sasl_mechanism or "",
            ENV.username: self.username or "",
            ENV.password: self.password or "",
            ENV.ssl_ca_location: self.ssl_ca_location or "",
        }


def _jaas_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_registered: dict[str, KafkaSecurity] = {}
_lock = threading.Lock()


def register_credentials(bootstrap: str, security: KafkaSecurity) -> None:
    """Use ``security`` for every client this process opens to ``bootstrap`` (a broker it started)."""
    with _lock:
        _registered[bootstrap] = security


def unregister_credentials(bootstrap: str) -> None:
    with _lock:
        _registered.pop(bootstrap, None)


def security_for(bootstrap: str) -> KafkaSecurity:
    """The credentials this process uses for ``bootstrap``: registered ones, else the environment's."""
    with _lock:
        registered = _registered.get(bootstrap)
    return registered if registered is not None else KafkaSecurity.from_env()


def export_to_environ(security: KafkaSecurity) -> Callable[[], None]:
    """Put ``security`` into this process's environment, so the ``featurebus`` children it launches
    use it too (test fixtures and benchmarks that start a broker); returns the undo."""
    previous = {name: os.environ.get(name) for name in security.as_env()}
    os.environ.update(security.as_env())

    def restore() -> None:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    return restore


def client_settings(bootstrap: str) -> dict[str, str]:
    return security_for(bootstrap).librdkafka()


_DENIED_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)

_RESOURCE = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
}


def is_access_denied(error: object) -> bool:
    """True for a ``KafkaError`` (or a ``KafkaException`` holding one) that is an auth refusal."""
    if not isinstance(error, KafkaError) and isinstance(error, Exception) and error.args:
        error = error.args[0]
    return isinstance(error, KafkaError) and error.code() in _DENIED_CODES


def access_denied(
    bootstrap: str,
    error: object,
    operation: str,
    resource: str,
    *,
    transactional_id: str | None = None,
    group: str | None = None,
) -> KafkaAccessDeniedError:
    """The featurebus error for a refused ``operation`` (``write``, ``read``, ``create`` ...) on
    ``resource`` (a topic, or what the call was about), naming the principal and the fix. The
    refused resource follows Kafka's error code: the ``transactional_id`` or ``group`` the call
    used when Kafka refused one of those."""
    if not isinstance(error, KafkaError) and isinstance(error, Exception) and error.args:
        error = error.args[0]
    principal = security_for(bootstrap).principal
    code = error.code() if isinstance(error, KafkaError) else None
    if code in (KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._AUTHENTICATION):
        return KafkaAccessDeniedError(
            f"Kafka at {bootstrap} refused the credentials of {principal} ({error}); check "
            f"{ENV.username} / {ENV.password} (`featurebus up` keeps each component's in "
            "<home>/kafka/credentials.json)"
        )
    if code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED and transactional_id is not None:
        operation, resource = "write", transactional_id
    elif code == KafkaError.GROUP_AUTHORIZATION_FAILED and group is not None:
        operation, resource = "read", group
    kind = _RESOURCE.get(code, "resource") if code is not None else "resource"
    return KafkaAccessDeniedError(
        f"Kafka principal {principal} lacks the right to {operation} {kind} {resource!r} on {bootstrap} "
        f"({error}); grant it with a Kafka ACL (`featurebus up` grants each component only what it needs) "
        "or run this component with credentials that hold it"
    )
