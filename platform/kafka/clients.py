"""Every Kafka client featurebus opens is built here: producers configured the one way featurebus
writes (idempotent, ``acks=all``, every delivery checked, so a failed write raises instead of
vanishing), consumers and admin clients from one base configuration, and librdkafka's own log
lines routed through Python logging instead of raw ``%4|...`` lines on stderr.

Credentials (SASL / TLS) are added here too, from ``security`` (the process's ``FEATUREBUS_KAFKA_*``
environment, or the admin credentials of a local broker the process started), so no call site
knows whether the bus is secured.

Call sites pass only what they tune (a group, ``read_committed``, fetch sizes, a transactional
id ...), with a comment saying why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from featurebus.platform.kafka.security import access_denied, client_settings, is_access_denied
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "DeliveryTracker",
    "admin_client",
    "consumer",
    "consumer_config",
    "producer",
    "producer_config",
    "reader_group",
    "reliable_producer",
]

LIBRDKAFKA_LOGGER = "featurebus.kafka.librdkafka"

# librdkafka logs every failed connection attempt and every retried request (``GETPID ...
# retrying`` while a broker starts or restarts) at warning or error level. featurebus reports an
# unreachable broker itself, with a hint (``BrokerHealth``, ``unreachable_hint``), so these
# transient facilities go to INFO: visible with ``-v``, not in the user's terminal.
_TRANSIENT_FACILITIES = frozenset({"FAIL", "GETPID", "REQTMOUT", "BROKERFAIL", "DISCONNECT", "CONNECT", "ERROR"})


class _LibrdkafkaLog:
    """What confluent-kafka's ``logger`` setting calls: ``log(level, "%s [%s] %s", facility,
    client name, message)``, served from the client's poll (never from librdkafka's threads)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(LIBRDKAFKA_LOGGER)

    def log(self, level: int, msg: str, *args: Any) -> None:
        facility = str(args[0]) if args else ""
        if facility in _TRANSIENT_FACILITIES and level > logging.INFO:
            level = logging.INFO
        self._logger.log(level, msg, *args)


_LOG = _LibrdkafkaLog()


def reader_group() -> str:
    """A group id for a consumer that is assigned partitions and never joins or commits."""
    return f"featurebus.reader.{uuid.uuid4().hex}"


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **client_settings(bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
        "logger": _LOG,
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap: str, group_id: str | None = None, /, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only when told to (``group_id`` None: a fresh reader group)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **client_settings(bootstrap),
        "group.id": group_id or reader_group(),
        "enable.auto.commit": False,
        "logger": _LOG,
    }
    config.update(overrides)
    return config


def producer(bootstrap: str, **overrides: Any) -> Producer:
    return Producer(producer_config(bootstrap, **overrides))


def consumer(bootstrap: str, group_id: str | None = None, /, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(bootstrap, group_id, **overrides))


def admin_client(bootstrap: str, **overrides: Any) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "logger": _LOG, **overrides}
    return AdminClient(config)


class DeliveryTracker:
    """Wraps a Producer: remembers the first delivery error and raises it on ``flush``."""

    def __init__(self, producer: Producer, bootstrap: str) -> None:
        self._producer = producer
        self._bootstrap = bootstrap
        self._error: KafkaError | None = None
        self._failed_topic = ""

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and self._error is None:
            self._error = error
            self._failed_topic = message.topic() or ""

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int = -1,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, partition=partition, headers=headers, on_delivery=self._on_delivery
                )
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if self._error is not None:
            error, self._error = self._error, None
            if is_access_denied(error):
                raise access_denied(self._bootstrap, error, "write", self._failed_topic)
            raise KafkaUnavailableError(f"writing to Kafka at {self._bootstrap} failed: {error}")
        if remaining:
            raise KafkaUnavailableError(
                f"{remaining} records were not acknowledged by Kafka at {self._bootstrap} within {timeout_s}s"
            )


@contextmanager
def reliable_producer(bootstrap: str, **overrides: Any) -> Iterator[DeliveryTracker]:
    """A tracked producer that is flushed (and checked) when the block ends without error."""
    tracker = DeliveryTracker(producer(bootstrap, **overrides), bootstrap)
    yield tracker
    tracker.flush()
