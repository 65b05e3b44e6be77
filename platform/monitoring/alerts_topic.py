"""The alerts topic channel: every notification as a JSON record on ``kafka.topics.ALERTS_TOPIC``
(key = notification id), for `featurebus alerts list`, dashboards and anyone who consumes it.
A repeated delivery has the same key, so a reader keyed by id sees it once."""

from __future__ import annotations

import orjson

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import DeliveryTracker, producer
from featurebus.platform.kafka.topics import ALERTS_TOPIC
from featurebus.platform.monitoring.alerts import Notification
from featurebus.platform.monitoring.channels import AlertDeliveryError, describe
from featurebus.platform.monitoring.rules import AlertRule
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = ["AlertsTopicChannel"]


class AlertsTopicChannel:
    """Not thread-safe: the dispatcher's delivery thread is its one user."""

    def __init__(self, bootstrap: str, topic: str = ALERTS_TOPIC, timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout_s = timeout_s
        ensure_topics(bootstrap, [TopicConfig(topic, 1)], timeout_s)
        self._tracker = DeliveryTracker(producer(bootstrap, **{"linger.ms": 0}), bootstrap)

    def send(self, rule: AlertRule, notification: Notification) -> None:
        record = {
            **notification.to_dict(),
            "summary": describe(rule, notification),
            "target": rule.target,
            "rule_kind": rule.kind.value,
        }
        try:
            self._tracker.produce(self._topic, orjson.dumps(record), key=notification.id.encode())
            self._tracker.flush(self._timeout_s)
        except KafkaUnavailableError as exc:
            raise AlertDeliveryError(f"writing {notification.id} to {self._topic} failed: {exc}") from exc
