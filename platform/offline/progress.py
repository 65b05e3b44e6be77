"""How far a consumer group has read: the bookkeeping behind ``run_until_caught_up``.

"Caught up" means: every partition reached the high watermark it had when the run started. A
partition this consumer owns has reached it when its position (or the end-of-partition event)
says so; a partition another member of the group owns, when that member's commit says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from featurebus.platform.kafka.admin import unreachable_hint
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = ["TopicKey", "high_watermarks", "reached_by_position", "reached_by_commits"]

TopicKey = tuple[str, int]

_log = logging.getLogger(__name__)


def high_watermarks(consumer: Any, topics: Iterable[str], bootstrap: str, timeout_s: float) -> dict[TopicKey, int]:
    """The high watermark of every non-empty partition of ``topics`` (missing topics: none)."""
    targets: dict[TopicKey, int] = {}
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        for topic in topics:
            topic_meta = metadata.topics.get(topic)
            if topic_meta is None or topic_meta.error is not None:
                _log.warning("source topic %r does not exist (yet); nothing to read from it", topic)
                continue
            for partition in topic_meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                if high > low:
                    targets[(topic, partition)] = high
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"reading the source topics' offsets failed: {exc}. {unreachable_hint(bootstrap)}"
        ) from exc
    return targets


def reached_by_position(
    consumer: Any, pending: Mapping[TopicKey, int], assigned: set[TopicKey], eof: Mapping[TopicKey, int]
) -> set[TopicKey]:
    """Pending partitions this consumer owns and has read to their target."""
    mine = [key for key in pending if key in assigned]
    if not mine:
        return set()
    # The position also steps over transaction markers, which no delivered record reaches.
    positions = consumer.position([TopicPartition(t, p) for t, p in mine])
    reached = {(tp.topic, tp.partition) for tp in positions if tp.offset >= pending[(tp.topic, tp.partition)]}
    return reached | {key for key in mine if eof.get(key, -1) >= pending[key]}


def reached_by_commits(
    consumer: Any, pending: Mapping[TopicKey, int], assigned: set[TopicKey], timeout_s: float
) -> set[TopicKey]:
    """Pending partitions owned by other group members whose commits reached the target.

    Raises ``KafkaException`` when the group coordinator does not answer.
    """
    others = [TopicPartition(t, p) for t, p in pending if (t, p) not in assigned]
    if not others:
        return set()
    committed = consumer.committed(others, timeout=timeout_s)
    return {(tp.topic, tp.partition) for tp in committed if tp.offset >= pending[(tp.topic, tp.partition)]}
