"""Kafka producers configured the one way featurebus writes: idempotent, ``acks=all``, and every
delivery checked, so a failed write raises instead of vanishing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from featurebus.schemas.errors import KafkaUnavailableError

__all__ = ["DeliveryTracker", "reliable_producer", "producer_config"]


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
    }
    config.update(overrides)
    return config


class DeliveryTracker:
    """Wraps a Producer: remembers the first delivery error and raises it on ``flush``."""

    def __init__(self, producer: Producer, bootstrap: str) -> None:
        self._producer = producer
        self._bootstrap = bootstrap
        self._error: KafkaError | None = None

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and self._error is None:
            self._error = error

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None,
                partition: int = -1, headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition,
                                       headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if self._error is not None:
            error, self._error = self._error, None
            raise KafkaUnavailableError(f"writing to Kafka at {self._bootstrap} failed: {error}")
        if remaining:
            raise KafkaUnavailableError(
                f"{remaining} records were not acknowledged by Kafka at {self._bootstrap} within {timeout_s}s"
            )


@contextmanager
def reliable_producer(bootstrap: str, **overrides: Any) -> Iterator[DeliveryTracker]:
    """A tracked producer that is flushed (and checked) when the block ends without error."""
    tracker = DeliveryTracker(Producer(producer_config(bootstrap, **overrides)), bootstrap)
    yield tracker
    tracker.flush()
