"""Acknowledgements of firing alerts: one record per rule (key = rule name) on a compacted topic,
naming the firing episode it acknowledges (``AlertState.since_ms``), who, and when. An ack
belongs to an episode: once the alert resolves and fires again, it is unacknowledged again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.kafka.clients import DeliveryTracker, producer
from featurebus.platform.kafka.topics import ALERT_ACKS_TOPIC

__all__ = ["AlertAck", "AlertAcks", "KafkaAlertAcks", "MemoryAlertAcks"]


@dataclass(frozen=True)
class AlertAck:
    rule: str
    episode_ms: int
    by: str
    at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "episode_ms": self.episode_ms, "by": self.by, "at_ms": self.at_ms}


class AlertAcks(Protocol):
    def put(self, ack: AlertAck) -> None: ...

    def all(self) -> dict[str, AlertAck]: ...


class MemoryAlertAcks:
    def __init__(self) -> None:
        self._acks: dict[str, AlertAck] = {}

    def put(self, ack: AlertAck) -> None:
        self._acks[ack.rule] = ack

    def all(self) -> dict[str, AlertAck]:
        return dict(self._acks)


class KafkaAlertAcks:
    def __init__(self, bootstrap: str, topic: str = ALERT_ACKS_TOPIC, timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout_s = timeout_s
        ensure_topics(bootstrap, [TopicConfig(topic, 1, compacted=True)], timeout_s)
        self._producer: Any = None

    def put(self, ack: AlertAck) -> None:
        if self._producer is None:
            self._producer = producer(self._bootstrap, **{"linger.ms": 0})
        tracker = DeliveryTracker(self._producer, self._bootstrap)
        tracker.produce(self._topic, orjson.dumps(ack.to_dict()), key=ack.rule.encode())
        tracker.flush(self._timeout_s)

    def all(self) -> dict[str, AlertAck]:
        found = {}
        for key, value in read_compacted(self._bootstrap, self._topic, self._timeout_s).items():
            data = orjson.loads(value)
            found[key.decode()] = AlertAck(data["rule"], int(data["episode_ms"]), str(data["by"]), int(data["at_ms"]))
        return found
