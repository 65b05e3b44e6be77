"""Serving and ingestion request metrics: every request, errors included, by endpoint, workspace,
feature service and status code; the online-store read and realtime-transform time of lookups
apart; and the recent error ratio and p99 latency the serving alert rules watch
(``featurebus_serving_error_ratio`` / ``featurebus_serving_latency_p99_ms``, KIND_INFO).

A request's workspace and service are only known once its body is parsed, deep inside the
handler; the access-log layer that sees the status opens a ``RequestTarget`` in a context
variable and the handler fills it in (``note_target``). Both run in the request's task, so
they share the context, and nothing is passed through the handlers' signatures.

The recent window (``RecentRequests``): 30 buckets of 10 s per (workspace, service), each with
a request count, an error count and latency counts in the histogram's buckets, so the ratio and
p99 cost a few integer additions per request and are computed only when scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from threading import Lock

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "ENDPOINTS",
    "RecentRequests",
    "RequestTarget",
    "begin_request",
    "current_target",
    "end_request",
    "note_target",
    "observe_lookup",
]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

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
_LABELS = ["endpoint", "workspace", "feature_service", "status"]

REQUESTS = Counter("featurebus_serving_requests", "Requests answered, by status code", _LABELS)
ERRORS = Counter("featurebus_serving_errors", "Requests answered with a 4xx or 5xx status", _LABELS)
REQUEST_DURATION = Histogram(
    "featurebus_serving_request_duration_seconds",
    "Time from a request's arrival to its answer, by status code",
    _LABELS,
    buckets=_LATENCY_BUCKETS,
)
ONLINE_READ = Histogram(
    "featurebus_serving_online_read_seconds",
    "Time a lookup spent reading the online store (realtime transformations excluded)",
    ["workspace", "feature_service"],
    buckets=_LATENCY_BUCKETS,
)
REALTIME_TRANSFORM = Histogram(
    "featurebus_serving_realtime_transform_seconds",
    "Time a lookup spent in realtime transformations",
    ["workspace", "feature_service"],
    buckets=_LATENCY_BUCKETS,
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


def observe_lookup(workspace: str, service: str, total_s: float, realtime_s: float, has_realtime: bool) -> None:
    ONLINE_READ.labels(workspace, service).observe(total_s - realtime_s)
    if has_realtime:
        REALTIME_TRANSFORM.labels(workspace, service).observe(realtime_s)


_BUCKET_S = 10
_WINDOW_BUCKETS = 30  # 5 minutes


@dataclass
class _Bucket:
    epoch: int = -1  # which 10-second interval it holds
    requests: int = 0
    errors: int = 0
    latencies: list[int] = field(default_factory=lambda: [0] * (len(_LATENCY_BUCKETS) + 1))


class RecentRequests(Collector):
    """Requests, errors and latencies of the last five minutes per (workspace, service)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], list[_Bucket]] = {}
        self._lock = Lock()  # uvicorn may run handlers on several threads (the FastAPI routes' pool)

    def add(self, workspace: str, service: str, duration_s: float, error: bool, now_s: float) -> None:
        epoch = int(now_s) // _BUCKET_S
        with self._lock:
            window = self._windows.get((workspace, service))
            if window is None:
                window = self._windows[(workspace, service)] = [_Bucket() for _ in range(_WINDOW_BUCKETS)]
            bucket = window[epoch % _WINDOW_BUCKETS]
            if bucket.epoch != epoch:
                bucket.epoch, bucket.requests, bucket.errors = epoch, 0, 0
                bucket.latencies = [0] * (len(_LATENCY_BUCKETS) + 1)
            bucket.requests += 1
            bucket.errors += error
            bucket.latencies[bisect_left(_LATENCY_BUCKETS, duration_s)] += 1

    def snapshot(self, now_s: float) -> dict[tuple[str, str], tuple[int, int, list[int]]]:
        oldest = int(now_s) // _BUCKET_S - _WINDOW_BUCKETS + 1
        found = {}
        with self._lock:
            for key, window in self._windows.items():
                live = [b for b in window if b.epoch >= oldest]
                if live:
                    latencies = [sum(counts) for counts in zip(*(b.latencies for b in live), strict=True)]
                    found[key] = (sum(b.requests for b in live), sum(b.errors for b in live), latencies)
        return found

    def collect(self) -> Iterator[Metric]:
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
        for (workspace, service), (requests, errors, latencies) in sorted(self.snapshot(time.time()).items()):
            ratio.add_metric([workspace, service], errors / requests)
            p99.add_metric([workspace, service], _quantile_ms(latencies, requests, 0.99))
        yield ratio
        yield p99


def _quantile_ms(counts: list[int], total: int, q: float) -> float:
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return (_LATENCY_BUCKETS[index] if index < len(_LATENCY_BUCKETS) else float("inf")) * 1000
    return float("inf")


RECENT = RecentRequests()
REGISTRY.register(RECENT)


def end_request(path: str, target: RequestTarget | None, status: int, duration_s: float) -> None:
    endpoint = path if path in ENDPOINTS else "other"
    workspace, service = (target.workspace, target.feature_service) if target is not None else ("", "")
    labels = (endpoint, workspace, service, str(status))
    REQUESTS.labels(*labels).inc()
    REQUEST_DURATION.labels(*labels).observe(duration_s)
    error = status >= 400
    if error:
        ERRORS.labels(*labels).inc()
    if workspace and endpoint.startswith("/api/"):
        RECENT.add(workspace, service, duration_s, error, time.time())
