"""The stream worker's ``/metrics``: what it consumed, processed, dead-lettered and dropped, how
long batches and their transactions take, and how far behind the source topics it is.

The per-event counts are the engine's plain ints (``EngineCounters``), read by a collector only
when scraped: the data path pays nothing per event for being observed. Lag is refreshed at most
once a second from the consumer's cached watermarks (fetch responses, no broker round trip).

Lag in seconds: see ``platform/monitoring/consumer_lag.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.platform.monitoring.consumer_lag import ConsumerLag, lag_families
from featurebus.streams.runtime.engine import EngineCounters, RawRecord

__all__ = ["BATCH_SECONDS", "TRANSACTION_SECONDS", "WorkerCollector", "WorkerLag"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BATCH_SECONDS = Histogram(
    "featurebus_worker_batch_seconds",
    "Time to process one micro-batch, its transaction included",
    ["workspace"],
    buckets=_LATENCY_BUCKETS,
)
TRANSACTION_SECONDS = Histogram(
    "featurebus_worker_transaction_seconds",
    "Time to commit one batch's Kafka transaction (offsets and tiles)",
    ["workspace"],
    buckets=_LATENCY_BUCKETS,
)


_TOPIC = itemgetter(0)


class WorkerLag(ConsumerLag):
    def observe(self, records: Sequence[RawRecord], topics: int, partitions: int) -> None:
        """Count a batch of the worker's ``topics`` source topics and ``partitions`` owned partitions
        without a Python step per event (this sees every event): one topic is counted by the batch's
        length, several at C speed by ``Counter``; the newest time per partition is found scanning
        back from the batch's end, stopping once every owned partition was seen."""
        if not records:
            return
        if topics == 1:
            topic = records[0].topic
            self.consumed[topic] = self.consumed.get(topic, 0) + len(records)
        else:
            for topic, n in Counter(map(_TOPIC, records)).items():
                self.consumed[topic] = self.consumed.get(topic, 0) + n
        seen: set[tuple[str, int]] = set()
        for record in reversed(records):
            key = (record.topic, record.partition)
            if key not in seen:
                seen.add(key)
                if record.timestamp_ms is not None and record.timestamp_ms > 0:
                    self.newest_ms[key] = record.timestamp_ms
                if len(seen) >= partitions:
                    break


class WorkerCollector(Collector):
    def __init__(self, workspace: str, counters: Callable[[], EngineCounters], lag: WorkerLag) -> None:
        self._workspace = workspace
        self._counters = counters
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        ws = self._workspace
        counters = self._counters()
        consumed = CounterMetricFamily(
            "featurebus_worker_events_consumed", "Source records read", labels=["workspace", "topic"]
        )
        for topic, n in sorted(self._lag.consumed.items()):
            consumed.add_metric([ws, topic], n)
        yield consumed
        per_view = (
            ("featurebus_worker_events_processed", "Events folded into a view's tiles", counters.processed_by_view),
            (
                "featurebus_worker_transform_failures",
                "Events a view's transformation failed on (dead-lettered)",
                counters.transform_failed_by_view,
            ),
        )
        # Every view that processed anything has every per-view series, zeros included.
        views = sorted(counters.processed_by_view)
        for name, documentation, values in per_view:
            family = CounterMetricFamily(name, documentation, labels=["workspace", "feature_view"])
            for view in sorted({*views, *values}):
                family.add_metric([ws, view], values.get(view, 0))
            yield family
        late: dict[str, int] = dict.fromkeys(views, 0)
        for (view, _, _), (late_n, _) in list(counters.dropped_by_partition.items()):
            late[view] = late.get(view, 0) + late_n
        dropped = CounterMetricFamily(
            "featurebus_worker_events_dropped_late",
            "Events behind the watermark by more than the source's delay",
            labels=["workspace", "feature_view"],
        )
        for view, n in sorted(late.items()):
            dropped.add_metric([ws, view], n)
        yield dropped
        dead = CounterMetricFamily(
            "featurebus_worker_events_dead_lettered",
            "Records sent to the dead-letter topic (undecodable, ahead of time, failed transformation)",
            labels=["workspace"],
        )
        dead.add_metric([ws], counters.dead_lettered)
        yield dead
        yield from lag_families("featurebus_worker_consumer", ws, self._lag)
