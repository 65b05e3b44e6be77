"""The monitoring routes' answers read exactly as ``serving/control/routes_monitoring.py`` returns
them, into typed rows; an answer in another shape raises ``ShapeError`` (the panel then says the
component answered in an unexpected shape) instead of being guessed at.

Serving health is derived here from the series the serving process exports: requests/s and
ingested requests/s are rates between consecutive scrapes of the counter
``featurebus_serving_requests_total`` (ingestion is the ``/ingest`` endpoint), p99 latency and the
error ratio are the exported gauges. No p50: the metric history drops histogram buckets, so a
median cannot be computed from it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from itertools import pairwise
from typing import Any

__all__ = [
    "AlertRow",
    "FreshnessRow",
    "Series",
    "ShapeError",
    "alert_rows",
    "counter_rate",
    "freshness_rows",
    "history_series",
    "INGEST_ENDPOINT",
]

INGEST_ENDPOINT = "/ingest"


class ShapeError(ValueError):
    """A monitoring answer not in the shape its route documents."""


@dataclasses.dataclass(frozen=True)
class AlertRow:
    rule: str
    kind: str
    target: str
    threshold: float | None
    state: str  # ok | pending | firing | resolved
    since_ms: int | None
    value: float | None
    acked: bool
    acked_by: str | None


@dataclasses.dataclass(frozen=True)
class FreshnessRow:
    feature_view: str
    freshness_seconds: float | None  # None: nothing materialized yet
    partitions: dict[str, float | None]
    threshold_seconds: float | None
    monitored: bool

    @property
    def stale(self) -> bool:
        return (
            self.freshness_seconds is not None
            and self.threshold_seconds is not None
            and self.freshness_seconds > self.threshold_seconds
        )


@dataclasses.dataclass(frozen=True)
class Series:
    component: str
    metric: str
    labels: dict[str, str]
    points: list[tuple[int, float]]


_STATES = frozenset({"ok", "pending", "firing", "resolved"})


def _field(row: Any, name: str, where: str) -> Any:
    if not isinstance(row, dict) or name not in row:
        raise ShapeError(f"{where}: missing field {name!r}")
    return row[name]


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(f"{what} is not a number: {value!r}")
    return float(value)


def _list(data: Any, key: str, where: str) -> list[Any]:
    items = _field(data, key, where)
    if not isinstance(items, list):
        raise ShapeError(f"{where}: {key!r} is not a list")
    return items


def alert_rows(data: Any) -> list[AlertRow]:
    """``{"alerts": [{rule, kind, target, threshold, state, since_ms, value, acked, acked_by, ...}]}``."""
    rows = []
    for item in _list(data, "alerts", "alerts answer"):
        state = _field(item, "state", "alert")
        if state not in _STATES:
            raise ShapeError(f"alert state {state!r} is none of {sorted(_STATES)}")
        since = _field(item, "since_ms", "alert")
        rows.append(
            AlertRow(
                rule=str(_field(item, "rule", "alert")),
                kind=str(_field(item, "kind", "alert")),
                target=str(_field(item, "target", "alert")),
                threshold=_number(_field(item, "threshold", "alert"), "threshold"),
                state=state,
                since_ms=int(since) if isinstance(since, int | float) else None,
                value=_number(_field(item, "value", "alert"), "value"),
                acked=bool(_field(item, "acked", "alert")),
                acked_by=_field(item, "acked_by", "alert"),
            )
        )
    return rows


def freshness_rows(data: Any) -> list[FreshnessRow]:
    """``{"views": [{feature_view, freshness_seconds, partitions: {"0": s}, threshold_seconds, monitored}]}``."""
    rows = []
    for item in _list(data, "views", "freshness answer"):
        partitions = _field(item, "partitions", "freshness view")
        if not isinstance(partitions, dict):
            raise ShapeError("freshness view: 'partitions' is not an object")
        rows.append(
            FreshnessRow(
                feature_view=str(_field(item, "feature_view", "freshness view")),
                freshness_seconds=_number(_field(item, "freshness_seconds", "freshness view"), "freshness_seconds"),
                partitions={str(p): _number(s, "partition freshness") for p, s in partitions.items()},
                threshold_seconds=_number(_field(item, "threshold_seconds", "freshness view"), "threshold_seconds"),
                monitored=bool(_field(item, "monitored", "freshness view")),
            )
        )
    return rows


def history_series(data: Any) -> list[Series]:
    """``{"series": [{component, metric, labels, points: [[ms, v]]}], "points": [[ms, sum]]}``."""
    found = []
    for item in _list(data, "series", "history answer"):
        labels = _field(item, "labels", "history series")
        if not isinstance(labels, dict):
            raise ShapeError("history series: 'labels' is not an object")
        points = []
        for point in _list(item, "points", "history series"):
            if not (isinstance(point, list) and len(point) == 2):
                raise ShapeError(f"history point {point!r} is not [ms, value]")
            value = _number(point[1], "history value")
            points.append((int(point[0]), 0.0 if value is None else value))
        found.append(
            Series(
                str(_field(item, "component", "history series")),
                str(_field(item, "metric", "history series")),
                {str(k): str(v) for k, v in labels.items()},
                sorted(points),
            )
        )
    return found


def counter_rate(series: list[Series]) -> list[tuple[float, float]]:
    """Per second between consecutive scrapes, summed over the series at each scrape time. A value
    below the previous one is a restarted process: its counter restarted from zero, so the new
    value itself is the increase. A series first seen after the earliest scrape is a label set
    that appeared since the scrape before (an exporter shows a counter once it is incremented),
    so its first value is an increase too."""
    scrapes = sorted({at_ms for one in series for at_ms, _ in one.points})
    totals: dict[int, float] = defaultdict(float)
    for one in series:
        if not one.points:
            continue
        before = [at_ms for at_ms in scrapes if at_ms < one.points[0][0]]
        points = ([(before[-1], 0.0)] if before else []) + one.points
        for (t0, v0), (t1, v1) in pairwise(points):
            if t1 > t0:
                totals[t1] += (v1 - v0 if v1 >= v0 else v1) / ((t1 - t0) / 1000)
    return [(float(t), totals[t]) for t in sorted(totals)]
