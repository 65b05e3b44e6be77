"""The object page's data-quality, drift and parity panels, read from the answers of the control
plane's monitoring routes (``featurebus.serving.control.routes_quality``; the shapes are built by
``platform.monitoring.quality_report.view_statistics``, ``platform.served.drift_monitor.view_drift``
and ``platform.served.parity.parity_report``).

Statistics are kept per input column (features aggregating one column share them), as series
over the buckets of event time plus the newest bucket's summary and histogram. An answer that
does not have the documented shape raises ``PanelShapeError`` so the page says so instead of
drawing empty charts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from markupsafe import Markup

from featurebus.schemas.errors import FeaturebusError
from featurebus.serving.control.ui.charts import bar_chart, line_chart

__all__ = [
    "ColumnQuality",
    "FeatureDrift",
    "PanelShapeError",
    "ParityPanel",
    "drift_panel",
    "parity_panel",
    "stats_panel",
]

# The quantiles the page draws over time (the route returns QUANTILES of platform.monitoring.quality).
_CHARTED_QUANTILES = ("0.5", "0.95", "0.99")


class PanelShapeError(FeaturebusError):
    """A monitoring route answered with a document the UI does not know how to read."""


@dataclasses.dataclass(frozen=True)
class ColumnQuality:
    column: str
    features: tuple[str, ...]
    buckets_with_data: int
    latest: dict[str, Any] | None  # the newest bucket with data (the route's row)
    charts: tuple[Markup, ...]  # null rate, mean and quantiles over time
    histogram: Markup | None


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    feature: str
    dtype: str
    comparable: bool
    status: str  # the newest bucket with data: "ok", "drifted"; "no_data" without one
    psi: float | None
    methods: dict[str, Any]  # the newest bucket's per-method result
    chart: Markup | None  # PSI per bucket


@dataclasses.dataclass(frozen=True)
class ParityPanel:
    checked_requests: int
    relative_tolerance: float | None
    views: dict[str, dict[str, Any]]
    features: tuple[dict[str, Any], ...]


def _require(document: Any, key: str, kind: type | tuple[type, ...], route: str) -> Any:
    if not isinstance(document, dict) or not isinstance(document.get(key), kind):
        raise PanelShapeError(f"the {route} route answered without a {key!r} field of the expected type")
    return document[key]


def stats_panel(data: Any) -> list[ColumnQuality]:
    """One entry per input column, in the route's feature order; columns without any bucket with
    data are left out (the page then says there is no data yet)."""
    rows = _require(data, "buckets", list, "stats")
    by_column: dict[str, list[dict[str, Any]]] = {}
    features: dict[str, list[str]] = {}
    for row in rows:
        column = _require(row, "input_column", str, "stats")
        feature = _require(row, "feature", str, "stats")
        if feature not in features.setdefault(column, []):
            features[column].append(feature)
        if feature == features[column][0]:  # the same statistics repeat for each feature of a column
            by_column.setdefault(column, []).append(row)
    panels = []
    for column, buckets in by_column.items():
        with_data = sorted((b for b in buckets if b.get("has_data")), key=lambda b: b["bucket_start_ms"])
        if not with_data:
            continue
        latest = with_data[-1]
        charts = [_series(with_data, "null rate", lambda b: b.get("null_rate"))]
        charts.append(_series(with_data, "mean", lambda b: b.get("mean")))
        for q in _CHARTED_QUANTILES:
            charts.append(_series(with_data, f"p{float(q) * 100:g}", lambda b, q=q: (b.get("quantiles") or {}).get(q)))
        edges, counts = latest.get("histogram_edges"), latest.get("histogram_counts")
        histogram = bar_chart(edges, counts, f"{column} histogram") if edges and counts else None
        panels.append(
            ColumnQuality(
                column,
                tuple(features[column]),
                len(with_data),
                latest,
                tuple(c for c in charts if c is not None),
                histogram,
            )
        )
    return panels


def _series(buckets: list[dict[str, Any]], label: str, value: Any) -> Markup | None:
    points = [(float(b["bucket_start_ms"]), float(v)) for b in buckets if isinstance(v := value(b), int | float)]
    return line_chart(points, label) if points else None


def drift_panel(data: Any) -> list[FeatureDrift]:
    features = _require(data, "features", list, "drift")
    panels = []
    for feature in features:
        name = _require(feature, "feature", str, "drift")
        buckets = _require(feature, "buckets", list, "drift")
        latest = feature.get("latest") or {}
        psi_points = [
            (float(b["bucketStartMs"]), float(psi))
            for b in buckets
            if isinstance(psi := ((b.get("methods") or {}).get("psi") or {}).get("statistic"), int | float)
        ]
        panels.append(
            FeatureDrift(
                name,
                str(feature.get("dtype", "")),
                bool(feature.get("comparable")),
                str(latest.get("status", "no_data")),
                feature.get("psi"),
                dict(latest.get("methods") or {}),
                line_chart(psi_points, "PSI") if psi_points else None,
            )
        )
    return panels


def parity_panel(data: Any) -> ParityPanel:
    checked = _require(data, "checkedRequests", int, "parity")
    views = _require(data, "views", dict, "parity")
    features = _require(data, "features", list, "parity")
    return ParityPanel(checked, data.get("relativeTolerance"), views, tuple(features))
