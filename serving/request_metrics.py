"""Serving and ingestion request metrics: every request, errors included, by endpoint, workspace,
feature service and status code; the online-store read and realtime-transform time of lookups
apart; and the recent error ratio and p99 latency the serving alert rules watch
(``featurebus_serving_error_ratio`` / ``featurebus_serving_latency_p99_ms``, KIND_INFO).

A request's workspace and service are only known once its body is parsed, deep inside the
handler; the access-log layer that sees the status opens a ``RequestTarget`` in a context
variable and the handler fills it in (``note_target``). Both run in the request's task, so
they share the context, and nothing is passed through the handlers' signatures.

Cost: a lookup takes a fraction of a millisecond, and ``prometheus_client``'s own metric objects
(a labels lookup and a lock per update) cost tens of microseconds per request for the five
series. So requests are counted in plain dicts of small lists (``_Histograms``: a few additions
and one bisect per request, on the event loop thread that answers the request) and turned into
Prometheus families only when scraped; the errors, the error ratio and the p99 are derived from
those at scrape time too (``_Recent``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "ENDPOINTS",
    "RequestTarget",
    "begin_request",
    "current_target",
    "end_request",
    "note_target",
    "observe_lookup",
]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BUCKET_LABELS = [*(repr(b) for b in _LATENCY_BUCKETS), "+Inf"]

# A bounded endpoint label: any other path (a scanner's guesses) is counted as "other".
ENDPOINTS = frozenset(
    {
        "/api/v1/feature-service/get-features",
        "/api/v1/feature-service/get-features-batch",
        "/api/v1/feature-service/metadata",
        "/ingest",
        "/metrics",
        "/health",
        "/ready",
        "/openapi.json",
    }
)


@dataclass
class RequestTarget:
    workspace: str = ""
    feature_service: str = ""


_TARGET: ContextVar[RequestTarget | None] = ContextVar("featurebus_request_target", default=None)


def begin_request() -> RequestTarget:
    target = RequestTarget()
    _TARGET.set(target)
    return target


def current_target() -> RequestTarget | None:
    return _TARGET.get()


def note_target(workspace: str, feature_service: str = "") -> None:
    """The workspace and service of the request being answered (a no-op outside one)."""
    target = _TARGET.get()
    if target is not None:
        target.workspace, target.feature_service = workspace, feature_service


class _Histograms:
    """Per label tuple: [count, sum of seconds, one count per latency bucket (+Inf last)].
    Written by the event loop thread; a scrape copies the dict (atomic under the GIL)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        values = self.series.get(labels)
        if values is None:
            values = self.series[labels] = [0.0] * (2 + len(_BUCKET_LABELS))
        values[0] += 1
        values[1] += seconds
        values[2 + bisect_left(_LATENCY_BUCKETS, seconds)] += 1

    def family(self, name: str, documentation: str, label_names: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=label_names)
        for labels, values in sorted(list(self.series.items())):
            cumulative, buckets = 0.0, []
            for bound, count in zip(_BUCKET_LABELS, values[2:], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, values[1])
        return family


_WINDOW_S = 300.0  # the recent window of the error ratio and p99


class _Recent:
    """The error ratio and p99 of the last five minutes, from the cumulative request histograms:
    each scrape keeps a snapshot of the per-(workspace, service) totals, and reports the
    difference from the oldest snapshot within the window (since start, until one is that old).
    Nothing per request."""

    def __init__(self) -> None:
        self._snapshots: deque[tuple[float, dict[tuple[str, str], list[float]]]] = deque()

    def window(
        self, series: dict[tuple[str, ...], list[float]], now_s: float
    ) -> dict[tuple[str, str], tuple[float, float, list[float]]]:
        totals: dict[tuple[str, str], list[float]] = {}
        for (endpoint, workspace, service, status), values in series.items():
            if not workspace or not endpoint.startswith("/api/"):
                continue
            total = totals.setdefault((workspace, service), [0.0] * (1 + len(values)))
            total[0] += values[0] if int(status) >= 400 else 0.0  # errors
            for i, value in enumerate(values):
                total[1 + i] += value
        while self._snapshots and self._snapshots[0][0] < now_s - _WINDOW_S:
            self._snapshots.popleft()
        base = self._snapshots[0][1] if self._snapshots else {}
        self._snapshots.append((now_s, totals))
        found = {}
        for key, total in totals.items():
            before = base.get(key, [0.0] * len(total))
            delta = [a - b for a, b in zip(total, before, strict=True)]
            if delta[1] > 0:  # requests in the window
                found[key] = (delta[1], delta[0], delta[3:])
        return found


def _quantile_ms(counts: list[float], total: float, q: float) -> float:
    rank, seen = q * total, 0.0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return (_LATENCY_BUCKETS[index] if index < len(_LATENCY_BUCKETS) else float("inf")) * 1000
    return float("inf")


_LABELS = ["endpoint", "workspace", "feature_service", "status"]


class RequestStats(Collector):
    def __init__(self) -> None:
        self.requests = _Histograms()  # the count of each series is the request count
        self.online_read = _Histograms()
        self.realtime = _Histograms()
        self.recent = _Recent()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the families depend on the traffic: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "featurebus_serving_requests", "Requests answered, by status code", labels=_LABELS
        )
        for labels, values in sorted(list(self.requests.series.items())):
            requests.add_metric(list(labels), values[0])
        yield requests
        errors = CounterMetricFamily(
            "featurebus_serving_errors", "Requests answered with a 4xx or 5xx status", labels=_LABELS
        )
        for labels, values in sorted(list(self.requests.series.items())):
            if int(labels[3]) >= 400:
                errors.add_metric(list(labels), values[0])
        yield errors
        yield self.requests.family(
            "featurebus_serving_request_duration_seconds", "Time from a request's arrival to its answer", _LABELS
        )
        yield self.online_read.family(
            "featurebus_serving_online_read_seconds",
            "Time a lookup spent reading the online store (realtime transformations excluded)",
            ["workspace", "feature_service"],
        )
        yield self.realtime.family(
            "featurebus_serving_realtime_transform_seconds",
            "Time a lookup spent in realtime transformations",
            ["workspace", "feature_service"],
        )
        ratio = GaugeMetricFamily(
            "featurebus_serving_error_ratio",
            "Errors / requests over the last 5 minutes",
            labels=["workspace", "feature_service"],
        )
        p99 = GaugeMetricFamily(
            "featurebus_serving_latency_p99_ms",
            "99th percentile request latency over the last 5 minutes (histogram bucket upper bound)",
            labels=["workspace", "feature_service"],
        )
        recent = self.recent.window(dict(self.requests.series), time.time())
        for (workspace, service), (total, failed, latencies) in sorted(recent.items()):
            ratio.add_metric([workspace, service], failed / total)
            p99.add_metric([workspace, service], _quantile_ms(latencies, total, 0.99))
        yield ratio
        yield p99


STATS = RequestStats()
REGISTRY.register(STATS)


def observe_lookup(workspace: str, service: str, total_s: float, realtime_s: float, has_realtime: bool) -> None:
    STATS.online_read.observe((workspace, service), total_s - realtime_s)
    if has_realtime:
        STATS.realtime.observe((workspace, service), realtime_s)


def end_request(path: str, target: RequestTarget | None, status: int, duration_s: float) -> None:
    endpoint = path if path in ENDPOINTS else "other"
    workspace, service = (target.workspace, target.feature_service) if target is not None else ("", "")
    labels = (endpoint, workspace, service, str(status))
    STATS.requests.observe(labels, duration_s)
