"""The Flink job's ``/metrics``: its engine counters under the native worker's series names.

The job's operator counts in Flink metrics (group ``featurebus``: ``ShardBatches``' totals and
``FollowingShardBatches``' breakdowns per source topic and per view). The process that runs the
job (``featurebus flink run --metrics-port``, ``worker --engine flink --metrics-port``) reads
them, summed over the operator's subtasks, from the JobManager's REST API when scraped, and
exports them with ``prometheus_client`` as ``featurebus_worker_*`` (``worker_metrics.py``), so
the monitor's rules and dashboards work unchanged for a Flink workspace.

Why the REST API rather than Flink's ``PrometheusReporter``: the reporter is a jar Flink loads at
start from its own ``lib``/``plugins`` directories (for local execution, those of the installed
``apache-flink`` package), exports one endpoint per TaskManager with Flink's names and scope
labels (every subtask a series of its own), and would still need a renaming proxy. The REST API
is there in both modes (the in-process mini-cluster serves it on the port this process gives it;
a standalone cluster's JobManager on its own), aggregates the subtasks, and the mapping is a
few lines here.

Counters restart from zero when Flink restarts the job's tasks (a failover) or the runner
replaces the job (new definitions): ``MonotonicTotals`` carries the totals over, as Prometheus
counters must (a failover is noticed when a counter goes down between two scrapes). Flink's
counters are not checkpointed: after a failover, events processed again after the restored
checkpoint are counted again, and the runner reads the counters one last time before it stops
the job for new definitions (``read_before_restart``), so that only events processed during the
stop itself (none, when the job had caught up) can go uncounted. A job's counters that were
never read (it ran between two restarts without a scrape and died without that last read, say
the process was killed) are lost to the totals.
Consumer lag in records and seconds comes from the job's source offsets committed on each
checkpoint (group ``featurebus.<workspace>.flink``) against the partitions' ends; in seconds it
is the age of the newest record those offsets cover (``consumer_lag.py``'s definition).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.topics import flink_group
from featurebus.platform.monitoring.consumer_lag import ConsumerLag, lag_families

__all__ = ["FlinkJobCollector", "MonotonicTotals", "parse_metric_ids"]

log = logging.getLogger(__name__)

_GROUP = ".featurebus."
REST_TIMEOUT_S = 5.0
REFRESH_S = 1.0

# (kind, label) of a breakdown counter -> the native series it feeds (labels: workspace + kind)
_SERIES = {
    ("topic", "consumed"): ("featurebus_worker_events_consumed", "Source records read"),
    ("feature_view", "processed"): ("featurebus_worker_events_processed", "Events folded into a view's tiles"),
    ("feature_view", "transform_failed"): (
        "featurebus_worker_transform_failures",
        "Events a view's transformation failed on (dead-lettered)",
    ),
    ("feature_view", "dropped_late"): (
        "featurebus_worker_events_dropped_late",
        "Events behind the watermark by more than the source's delay",
    ),
}


def parse_metric_ids(ids: list[str]) -> dict[str, tuple[str, str, str] | str]:
    """Flink metric id -> ``(kind, label, name)`` for a breakdown counter, or the total's name.

    Ids are ``<operator>.featurebus.<name>`` (totals) or ``<operator>.featurebus.<kind>.<label>.<name>``
    (key-value groups); a label (a topic) may itself hold dots, the kind and name never do."""
    parsed: dict[str, tuple[str, str, str] | str] = {}
    for metric_id in ids:
        if _GROUP not in metric_id:
            continue
        rest = metric_id.split(_GROUP, 1)[1]
        kind, _, tail = rest.partition(".")
        if (kind, tail.rsplit(".", 1)[-1]) in _SERIES and "." in tail:
            label, name = tail.rsplit(".", 1)
            parsed[metric_id] = (kind, label, name)
        elif "." not in rest:
            parsed[metric_id] = rest
    return parsed


class MonotonicTotals:
    """Totals that never go down although their source restarts from zero: a value below the
    last one seen (or a series back after it was gone) adds the last one to a base."""

    def __init__(self) -> None:
        self._base: dict[Any, float] = {}
        self._last: dict[Any, float] = {}

    def restart(self) -> None:
        """The source starts over (a new job): whatever it reports next adds to the totals so far."""
        for key, last in self._last.items():
            self._base[key] = self._base.get(key, 0.0) + last
            self._last[key] = 0.0

    def update(self, current: dict[Any, float]) -> dict[Any, float]:
        for key, value in current.items():
            if value < self._last.get(key, 0.0):
                self._base[key] = self._base.get(key, 0.0) + self._last[key]
            self._last[key] = value
        for key in self._last.keys() - current.keys():  # gone (a restart without it): next value starts over
            self._base[key] = self._base.get(key, 0.0) + self._last[key]
            self._last[key] = 0.0
        return {key: self._base.get(key, 0.0) + last for key, last in self._last.items()}


class FlinkJobCollector(Collector):
    """Scrapes read the job's counters from ``rest_url`` (http://host:port of the JobManager)."""

    def __init__(self, workspace: str, bootstrap: str, rest_url: str) -> None:
        self._workspace = workspace
        self._bootstrap = bootstrap
        self._rest_url = rest_url.rstrip("/")
        self.job_id: str | None = None  # the job the runner runs now (changes on restarts)
        self._totals = MonotonicTotals()
        self._counted_job: str | None = None
        self._lock = threading.Lock()
        self._exported: dict[Any, float] = {}
        self._lag = ConsumerLag()
        self._next_refresh = 0.0
        self._offsets_reader: Any = None
        self.topics: list[str] = []

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() >= self._next_refresh:
            self._next_refresh = time.monotonic() + REFRESH_S
            self._refresh()
        ws = self._workspace
        by_series: dict[tuple[str, str], dict[str, float]] = {}
        dead_lettered = 0.0
        for key, value in self._exported.items():
            if key == "dead_lettered":
                dead_lettered = value
            elif isinstance(key, tuple):
                kind, label, name = key
                by_series.setdefault((kind, name), {})[label] = value
        # As natively: every view that processed anything has every per-view series, zeros included.
        views = dict.fromkeys(by_series.get(("feature_view", "processed"), {}), 0.0)
        for (kind, name), (series, documentation) in _SERIES.items():
            family = CounterMetricFamily(series, documentation, labels=["workspace", kind])
            values = by_series.get((kind, name), {})
            for label, value in sorted(({**views, **values} if kind == "feature_view" else values).items()):
                family.add_metric([ws, label], value)
            yield family
        dead = CounterMetricFamily(
            "featurebus_worker_events_dead_lettered",
            "Records sent to the dead-letter topic (undecodable, ahead of time, failed transformation)",
            labels=["workspace"],
        )
        dead.add_metric([ws], dead_lettered)
        yield dead
        yield from lag_families("featurebus_worker_consumer", ws, self._lag)

    def read_before_restart(self, attempts: int = 6) -> None:
        """The job is about to be replaced: its final counters. The JobManager answers from its
        metric store and refreshes that only when asked (at most every second), so the first
        answer after a quiet while is stale: read until two answers agree."""
        job_id = self.job_id
        if job_id is None:
            return
        previous: dict[Any, float] | None = None
        for _ in range(attempts):
            try:
                counters = self._read_counters(job_id)
            except (OSError, ValueError, KeyError) as exc:
                log.info("reading the Flink job's metrics from %s failed: %s", self._rest_url, exc)
                counters = None
            if counters and counters == previous:
                break
            previous = counters
            time.sleep(1.5 * REFRESH_S)
        if previous:
            with self._lock:
                self._count(job_id, previous)

    def _count(self, job_id: str, counters: dict[Any, float]) -> None:
        if job_id != self._counted_job:  # a new job's counters start from zero
            self._totals.restart()
            self._counted_job = job_id
        self._exported = self._totals.update(counters)

    def _refresh(self) -> None:
        with self._lock:  # scrapes and the runner's last read
            try:
                job_id = self.job_id
                if job_id is not None:
                    self._count(job_id, self._read_counters(job_id))
            except (OSError, ValueError, KeyError) as exc:  # the JobManager restarting, a job being replaced
                log.info("reading the Flink job's metrics from %s failed: %s", self._rest_url, exc)
            try:
                self._refresh_lag()
            except Exception as exc:  # confluent_kafka raises KafkaException; a scrape must not fail on it
                log.info("reading the Flink job's consumer lag failed: %s", exc)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self._rest_url + path, timeout=REST_TIMEOUT_S) as response:  # our JobManager
            return json.loads(response.read())

    def _read_counters(self, job_id: str) -> dict[Any, float]:
        values: dict[Any, float] = {}
        for vertex in self._get(f"/jobs/{job_id}").get("vertices", []):
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            parsed = parse_metric_ids([m["id"] for m in self._get(base)])
            if not parsed:
                continue
            query = urllib.parse.urlencode({"get": ",".join(parsed), "agg": "sum"})
            for metric in self._get(f"{base}?{query}"):
                key = parsed.get(metric["id"])
                if key is not None and (isinstance(key, tuple) or key == "dead_lettered"):
                    values[key] = values.get(key, 0.0) + float(metric["sum"])
        return values

    def _refresh_lag(self) -> None:
        if not self.topics:
            return
        if self._offsets_reader is None:
            self._offsets_reader = kafka_consumer(self._bootstrap, flink_group(self._workspace))
        reader = self._offsets_reader
        metadata = reader.list_topics(timeout=REST_TIMEOUT_S)
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            if topic in metadata.topics
            for p in metadata.topics[topic].partitions
        ]
        lag: dict[tuple[str, int], tuple[int, float]] = {}
        behind_at: list[TopicPartition] = []
        for tp in reader.committed(partitions, timeout=REST_TIMEOUT_S) if partitions else []:
            low, high = reader.get_watermark_offsets(tp, timeout=REST_TIMEOUT_S)
            position = tp.offset if tp.offset >= 0 else low
            behind = max(high - position, 0)
            lag[(tp.topic, tp.partition)] = (behind, 0.0 if behind == 0 else math.nan)
            if behind and tp.offset > 0:
                behind_at.append(TopicPartition(tp.topic, tp.partition, tp.offset - 1))
        now_ms = time.time() * 1000
        for (topic, partition), timestamp_ms in self._newest_covered(behind_at).items():
            lag[(topic, partition)] = (lag[(topic, partition)][0], max(now_ms - timestamp_ms, 0.0) / 1000)
        self._lag.lag = lag

    def _newest_covered(self, at: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The timestamps of the records at ``at`` (the newest each committed offset covers)."""
        if not at:
            return {}
        reader = kafka_consumer(self._bootstrap, **{"isolation.level": "read_committed"})
        found: dict[tuple[str, int], int] = {}
        try:
            reader.assign(at)
            deadline = time.monotonic() + 2.0
            while len(found) < len(at) and time.monotonic() < deadline:
                message = reader.poll(0.2)
                if message is not None and message.error() is None:
                    found.setdefault((message.topic(), message.partition()), message.timestamp()[1])  # type: ignore[arg-type]
        finally:
            reader.close()
        return found

    def close(self) -> None:
        if self._offsets_reader is not None:
            self._offsets_reader.close()
