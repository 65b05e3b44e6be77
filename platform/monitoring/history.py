"""A short, bounded in-memory history of the scraped series, for the web UI's charts.

Per (component, series): the values at each scrape within the last ``window_s`` (older points
are dropped as new ones arrive). Bounded twice: by the window (points per series) and by
``max_series`` (series per evaluator; the first ``max_series`` seen are kept, the rest counted
in ``dropped_series``), so a component exporting ever new label values cannot exhaust memory.
Histogram buckets are left out: they multiply the series by the bucket count and the UI plots
their ``_sum`` and ``_count`` instead.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from featurebus.platform.monitoring.scrape import Sample

__all__ = ["MetricHistory", "SeriesHistory"]


@dataclass(frozen=True)
class SeriesHistory:
    component: str
    metric: str
    labels: dict[str, str]
    points: list[tuple[int, float]]  # (epoch ms, value)

    def to_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "metric": self.metric,
            "labels": self.labels,
            "points": [[ms, value] for ms, value in self.points],
        }


class MetricHistory:
    def __init__(self, window_s: float = 6 * 3600, max_series: int = 20_000) -> None:
        self._window_ms = int(window_s * 1000)
        self._max_series = max_series
        self._series: dict[tuple[str, str, tuple[tuple[str, str], ...]], deque[tuple[int, float]]] = {}
        self._lock = threading.Lock()  # written by the evaluation loop, read by HTTP threads
        self.dropped_series = 0

    def record(self, component: str, samples: Iterable[Sample], at_ms: int) -> None:
        oldest = at_ms - self._window_ms
        with self._lock:
            for sample in samples:
                if sample.name.endswith("_bucket"):
                    continue
                key = (component, sample.name, sample.labels)
                points = self._series.get(key)
                if points is None:
                    if len(self._series) >= self._max_series:
                        self.dropped_series += 1
                        continue
                    points = self._series[key] = deque()
                points.append((at_ms, sample.value))
                while points and points[0][0] < oldest:
                    points.popleft()

    def query(
        self, component: str | None = None, metric: str | None = None, since_ms: int | None = None
    ) -> list[SeriesHistory]:
        with self._lock:
            found = []
            for (series_component, name, labels), points in sorted(self._series.items()):
                if component is not None and series_component != component:
                    continue
                if metric is not None and name != metric:
                    continue
                kept = [p for p in points if since_ms is None or p[0] >= since_ms]
                if kept:
                    found.append(SeriesHistory(series_component, name, dict(labels), kept))
            return found
