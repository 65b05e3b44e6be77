"""Watching a stream processor catch up, from the outside, the same way for every engine.

An engine is "done" with a pre-produced topic when (1) its consumer group's committed offsets
reached the topic's end offsets and (2) its output topics stopped growing for ``quiet_s`` (and,
optionally, (3) a caller's check holds, e.g. "the value is visible over HTTP"). Done-time is the
moment the last of those happened, not the moment the quiet period ran out, so the quiet period
costs no throughput. Nothing here joins a group: committed offsets are read with a
non-subscribed consumer, end offsets from watermarks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from featurebus.platform.kafka.security import client_settings

__all__ = ["CatchUp", "OffsetReader", "watch_catch_up"]

log = logging.getLogger(__name__)

_ELECTING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


class OffsetReader:
    """End offsets of topics and committed offsets of groups, via one plain consumer."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                **client_settings(bootstrap),
                "group.id": f"bench.offsets.{uuid.uuid4().hex}",  # never subscribes, never commits
                "enable.auto.commit": False,
            }
        )
        self._group_consumers: dict[str, Any] = {}
        self._partitions: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic``; [] while it does not exist (cached once seen)."""
        if topic not in self._partitions:
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return []
            self._partitions[topic] = sorted(meta.partitions)
        return self._partitions[topic]

    def end_offsets(self, topic: str, retry_s: float = 15.0) -> dict[int, int]:
        """High watermarks; retried for a while, since a topic created a moment ago may still
        be electing its partition leaders (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return {
                    p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in self.partitions(topic)
                }
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and error.code() in _ELECTING
                if not retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """``{partition: committed offset}``; -1001 (OFFSET_INVALID) where nothing is committed."""
        consumer = self._group_consumers.get(group)
        if consumer is None:
            # committed() asks the group coordinator for *this* group.id without joining it.
            consumer = Consumer(
                {
                    "bootstrap.servers": self._bootstrap,
                    **client_settings(self._bootstrap),
                    "group.id": group,
                    "enable.auto.commit": False,
                }
            )
            self._group_consumers[group] = consumer
        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}

    def close(self) -> None:
        for consumer in [self._consumer, *self._group_consumers.values()]:
            consumer.close()
        self._group_consumers.clear()


@dataclass
class CatchUp:
    """When an engine got through a pre-produced topic, on ``time.monotonic()``."""

    started_at: float  # the engine's process was launched
    first_output_at: float | None = None
    committed_at: float | None = None  # committed offsets reached the ends
    last_output_at: float | None = None  # output topics last grew
    check_at: float | None = None  # the caller's extra condition first held
    consumed: int = 0  # committed records (at the end, or when the timeout hit)
    output_records: int = 0
    finished: bool = False
    gave_up_at: float | None = None  # the timeout hit first
    notes: list[str] = field(default_factory=list)

    @property
    def done_at(self) -> float | None:
        marks = [self.committed_at, self.last_output_at, self.check_at]
        return None if not self.finished or any(m is None for m in marks) else max(m for m in marks if m is not None)

    def events_per_s(self, include_startup: bool) -> float | None:
        """Records per second, from launch (``include_startup``) or from the first output."""
        end = self.done_at if self.finished else self.gave_up_at
        start = self.started_at if include_startup else self.first_output_at
        if end is None or start is None or end <= start:
            return None
        return self.consumed / (end - start)


def watch_catch_up(
    reader: OffsetReader,
    *,
    group: str,
    source_topic: str,
    source_ends: dict[int, int],
    output_topics: list[str],
    started_at: float,
    timeout_s: float,
    quiet_s: float = 3.0,
    interval_s: float = 0.1,
    check: Callable[[], bool] | None = None,
    alive: Callable[[], None] | None = None,
) -> CatchUp:
    """Sample offsets every ``interval_s`` until done or ``timeout_s`` after ``started_at``.

    ``check`` is only called once the offsets are committed (it may be costly, e.g. HTTP);
    ``alive`` raises if the engine died. On timeout the result has ``finished=False`` and
    ``consumed`` holds what was committed by then, so a rate can still be given.
    """
    result = CatchUp(started_at)
    total = sum(source_ends.values())
    last_output = -1
    while True:
        now = time.monotonic()
        if alive is not None:
            alive()
        try:
            output = sum(sum(reader.end_offsets(t).values()) for t in output_topics)
            committed = reader.committed(group, source_topic)
        except KafkaException as exc:  # a coordinator moving during a rebalance: sample again
            log.debug("offset sample failed: %s", exc)
            time.sleep(interval_s)
            continue
        if output != last_output:
            last_output = output
            result.last_output_at = now
            if result.first_output_at is None and output > 0:
                result.first_output_at = now
        result.output_records = max(output, 0)
        result.consumed = sum(min(max(committed.get(p, 0), 0), end) for p, end in source_ends.items())
        if result.committed_at is None and result.consumed >= total:
            result.committed_at = now
        if result.committed_at is not None and result.check_at is None and (check is None or check()):
            result.check_at = now
        if (
            result.committed_at is not None
            and result.check_at is not None
            and result.last_output_at is not None
            and now - result.last_output_at >= quiet_s
        ):
            result.finished = True
            return result
        if now - started_at > timeout_s:
            result.gave_up_at = now
            result.notes.append(f"not finished within {timeout_s:g}s: {result.consumed}/{total} committed")
            return result
        time.sleep(max(0.0, interval_s - (time.monotonic() - now)))
