"""Consumer lag in records and in seconds, from a consumer's own state (no broker round trip).

Records: the partition's high watermark (cached from fetch responses) minus the consumer's
position. Seconds: for a partition with unread records, the age of the newest record consumed
there (its Kafka timestamp): an upper bound of the next unread record's age, known without
reading ahead; zero once caught up; NaN while nothing was consumed yet (unknown, not zero).

``newest_ms`` and ``consumed`` are filled in by the consuming loop (plain dict writes: this runs
per record); ``refresh`` runs on the same thread, at most every ``refresh_s``; scrapes read
``lag``, which is replaced, never mutated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

__all__ = ["ConsumerLag", "lag_families"]


class ConsumerLag:
    def __init__(self, refresh_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self.consumed: dict[str, int] = {}
        self.newest_ms: dict[tuple[str, int], int] = {}
        self.lag: dict[tuple[str, int], tuple[int, float]] = {}  # (records, seconds)
        self._next_refresh = 0.0

    def note(self, topic: str, partition: int, timestamp_ms: int | None) -> None:
        self.consumed[topic] = self.consumed.get(topic, 0) + 1
        if timestamp_ms is not None and timestamp_ms > 0:
            self.newest_ms[(topic, partition)] = timestamp_ms

    def refresh(self, consumer: Any, partitions: Iterable[tuple[str, int]]) -> None:
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self._refresh_s
        wanted = [TopicPartition(topic, partition) for topic, partition in sorted(partitions)]
        lag: dict[tuple[str, int], tuple[int, float]] = {}
        now_ms = self._clock() * 1000
        for tp in consumer.position(wanted) if wanted else []:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or tp.offset < 0:
                continue  # nothing fetched yet: unknown, not zero
            behind = max(high - tp.offset, 0)
            newest = self.newest_ms.get((tp.topic, tp.partition))
            unknown = newest is None and behind > 0
            seconds = float("nan") if unknown else max(now_ms - (newest or 0), 0.0) / 1000 if behind else 0.0
            lag[(tp.topic, tp.partition)] = (behind, seconds)
        self.lag = lag


def lag_families(prefix: str, workspace: str, lag: ConsumerLag) -> Iterator[Metric]:
    """``{prefix}_lag_records`` and ``{prefix}_lag_seconds`` {workspace, topic, partition}."""
    records = GaugeMetricFamily(
        f"{prefix}_lag_records", "Records not yet consumed", labels=["workspace", "topic", "partition"]
    )
    seconds = GaugeMetricFamily(
        f"{prefix}_lag_seconds",
        "How far behind the partition the consumer is, in time",
        labels=["workspace", "topic", "partition"],
    )
    for (topic, partition), (behind, age_s) in sorted(lag.lag.items()):
        records.add_metric([workspace, topic, str(partition)], behind)
        seconds.add_metric([workspace, topic, str(partition)], age_s)
    yield records
    yield seconds
