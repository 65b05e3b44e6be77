"""Where alert states live: a small Protocol, an in-memory twin and the Kafka backend.

The Kafka backend keeps one record per alert rule (key = rule name, value = ``AlertState``
JSON carrying its format version) on a compacted topic (``kafka.topics.ALERT_STATE_TOPIC``, one
partition). A handle reads the topic to its end before every read, so it sees every earlier
write, its own or a previous evaluator's. ``put`` refuses a state whose version is not newer
than the stored one: two evaluators writing at once (or a stale one) fail loudly instead of
interleaving. ``tests/contract/test_alert_state_contract.py`` runs one suite over both.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, partition_bounds, unreachable_hint
from featurebus.platform.kafka.clients import DeliveryTracker, consumer, producer
from featurebus.platform.kafka.topics import ALERT_STATE_TOPIC
from featurebus.platform.monitoring.alerts import AlertState
from featurebus.schemas.errors import KafkaUnavailableError, StaleAlertStateError

__all__ = [
    "AlertStateStore",
    "KafkaAlertStateStore",
    "MemoryAlertBus",
    "MemoryAlertStateStore",
    "alert_state_topic_config",
]


class AlertStateStore(Protocol):
    def get(self, rule: str) -> AlertState | None: ...

    def list(self) -> list[AlertState]:
        """Every stored state, by rule name."""
        ...

    def put(self, state: AlertState) -> None:
        """Store ``state`` as the rule's latest; raises ``StaleAlertStateError`` unless its version
        is newer than the stored one."""
        ...

    def delete(self, rule: str) -> None:
        """Forget a rule's state (the rule was removed)."""
        ...

    def close(self) -> None: ...


def _check_newer(stored: AlertState | None, state: AlertState) -> None:
    if stored is not None and state.version <= stored.version:
        raise StaleAlertStateError(
            f"alert {state.rule!r}: version {state.version} is not newer than the stored {stored.version}; "
            "another alert evaluator is running — run exactly one"
        )


class MemoryAlertBus:
    """The in-memory twin of the alert state topic: latest value per rule. Stores opened over one
    bus share it, as evaluators before and after a restart share the Kafka topic."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}


class MemoryAlertStateStore:
    def __init__(self, bus: MemoryAlertBus | None = None) -> None:
        self._bus = bus if bus is not None else MemoryAlertBus()

    def get(self, rule: str) -> AlertState | None:
        raw = self._bus.records.get(rule)
        return None if raw is None else AlertState.from_json(raw)

    def list(self) -> list[AlertState]:
        return [AlertState.from_json(self._bus.records[rule]) for rule in sorted(self._bus.records)]

    def put(self, state: AlertState) -> None:
        _check_newer(self.get(state.rule), state)
        self._bus.records[state.rule] = state.to_json()

    def delete(self, rule: str) -> None:
        self._bus.records.pop(rule, None)

    def close(self) -> None:
        """Nothing to release: the in-memory twin holds no connection."""


def alert_state_topic_config(topic: str = ALERT_STATE_TOPIC) -> TopicConfig:
    return TopicConfig(topic, 1, compacted=True)


class KafkaAlertStateStore:
    """Not thread-safe: one handle per thread (the evaluator owns one)."""

    def __init__(self, bootstrap: str, topic: str = ALERT_STATE_TOPIC, timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout_s = timeout_s
        self._records: dict[str, AlertState] = {}
        ensure_topics(bootstrap, [alert_state_topic_config(topic)], timeout_s)
        self._consumer: Any = consumer(
            bootstrap,
            **{  # assigned, never joins or commits
                "isolation.level": "read_committed",
                "socket.connection.setup.timeout.ms": 5000,
            },
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        # The end offset is asked on a client of its own, never assigned: a broker answers one
        # connection's requests in order, so on the assigned consumer's connection the question
        # waited behind its long-polling fetch (fetch.wait.max.ms, 500 ms). py-spy showed a round
        # of ~15 rules spend 7 s there, the evaluator falling far behind its interval.
        self._bounds: Any = consumer(
            bootstrap, **{"isolation.level": "read_committed", "socket.connection.setup.timeout.ms": 5000}
        )
        # linger 0: a state write is a promise to notify; it must be on the broker before delivery.
        self._producer = producer(bootstrap, **{"linger.ms": 0})

    def _write(self, key: str, value: bytes | None) -> None:
        tracker = DeliveryTracker(self._producer, self._bootstrap)
        tracker.produce(self._topic, value, key=key.encode())
        tracker.flush(self._timeout_s)

    def put(self, state: AlertState) -> None:
        _check_newer(self._catch_up().get(state.rule), state)
        self._write(state.rule, state.to_json())

    def delete(self, rule: str) -> None:
        self._write(rule, None)

    def get(self, rule: str) -> AlertState | None:
        return self._catch_up().get(rule)

    def list(self) -> list[AlertState]:
        records = self._catch_up()
        return [records[rule] for rule in sorted(records)]

    def _catch_up(self) -> dict[str, AlertState]:
        partition = TopicPartition(self._topic, 0)
        # read_committed: the end offset is the last stable offset, past committed transactions.
        low, high = partition_bounds(self._bounds, self._bootstrap, self._topic, 0, self._timeout_s)
        deadline = time.monotonic() + self._timeout_s
        if high <= low:
            return self._records
        while (position := self._consumer.position([partition])[0].offset) < high:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading {self._topic} did not reach offset {high} within "
                    f"{self._timeout_s:g} s. {unreachable_hint(self._bootstrap)}"
                )
            # consume() returns early only once it has num_messages: ask for what is missing (a
            # fixed 500 made every read after a write wait out the whole timeout).
            missing = high - position if position >= 0 else high - low
            for message in self._consumer.consume(num_messages=max(1, min(500, missing)), timeout=0.1):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaUnavailableError(f"reading {self._topic} failed: {message.error()}")
                key = message.key()
                if key is None:
                    continue
                value = message.value()
                if value is None:
                    self._records.pop(key.decode(), None)
                else:
                    self._records[key.decode()] = AlertState.from_json(value)
        return self._records

    def close(self) -> None:
        self._consumer.close()
        self._bounds.close()
        self._producer.flush(self._timeout_s)
