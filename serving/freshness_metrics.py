"""What a serving replica knows about the features it answers with: freshness per view and per
partition, and its online materializer's progress (lag in records and seconds, records written).

Freshness of a feature view (``featurebus_feature_freshness_seconds{workspace,feature_view}``,
the series the freshness alert rules watch, ``platform/monitoring/rules.py``): now minus the
write time of the newest update of the view this replica applied, i.e. how old the newest
materialized event it serves is (its event time plus the stream engine's processing delay,
which is what a user of the served value waits for). Per partition the same from that
partition's newest update; overall, from the newest of all. A view none of whose updates
reached this replica yet has no series: unknown, not fresh.

Everything is computed when scraped from snapshots the materializer replaces (never mutates),
so scrapes take no lock and cost the consumer thread nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.serving.online_materializer import OnlineMaterializer

__all__ = ["OnlineCollector", "ViewFreshness", "view_freshness"]


@dataclass(frozen=True)
class ViewFreshness:
    workspace: str
    feature_view: str
    overall_s: float
    partitions_s: dict[int, float]


def view_freshness(materializer: OnlineMaterializer, now_ms: float) -> list[ViewFreshness]:
    """Freshness of every served view with at least one applied update, by (workspace, view)."""
    topics = materializer.feature_topics()
    newest = materializer.newest_ms()
    per_view: dict[str, dict[int, int]] = {}
    for (topic, partition), ms in newest.items():
        view = topics.get(topic)
        if view is not None:
            per_view.setdefault(view, {})[partition] = ms
    found = []
    for view, partitions in sorted(per_view.items()):
        workspace, _, name = view.partition("/")
        found.append(
            ViewFreshness(
                workspace,
                name,
                max(now_ms - max(partitions.values()), 0.0) / 1000,
                {p: max(now_ms - ms, 0.0) / 1000 for p, ms in sorted(partitions.items())},
            )
        )
    return found


class OnlineCollector(Collector):
    def __init__(self, materializer: OnlineMaterializer, clock: Callable[[], float] = time.time) -> None:
        self._materializer = materializer
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now_ms = self._clock() * 1000
        overall = GaugeMetricFamily(
            "featurebus_feature_freshness_seconds",
            "Age of the newest update of the feature view this replica serves",
            labels=["workspace", "feature_view"],
        )
        per_partition = GaugeMetricFamily(
            "featurebus_feature_partition_freshness_seconds",
            "Age of the newest update of one partition of the feature view this replica serves",
            labels=["workspace", "feature_view", "partition"],
        )
        for view in view_freshness(self._materializer, now_ms):
            overall.add_metric([view.workspace, view.feature_view], view.overall_s)
            for partition, age_s in view.partitions_s.items():
                per_partition.add_metric([view.workspace, view.feature_view, str(partition)], age_s)
        yield overall
        yield per_partition
        topics = self._materializer.feature_topics()
        written = CounterMetricFamily(
            "featurebus_online_materializer_records_written",
            "Feature records applied to the online store",
            labels=["workspace", "feature_view"],
        )
        for topic, n in sorted(self._materializer.records_written().items()):
            online_name = topics.get(topic)
            if online_name is not None:
                workspace, _, name = online_name.partition("/")
                written.add_metric([workspace, name], n)
        yield written
        newest = self._materializer.newest_ms()
        lag_s = GaugeMetricFamily(
            "featurebus_online_materializer_lag_seconds",
            "Age of the newest applied record of a partition with unread records (0 when caught up)",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._materializer.lag().items()):
            if topic not in topics:
                continue  # registry and API keys: their records carry no feature time
            ms = newest.get((topic, partition))
            age = 0.0 if behind == 0 else (float("nan") if ms is None else max(now_ms - ms, 0.0) / 1000)
            lag_s.add_metric([topic, str(partition)], age)
        yield lag_s
