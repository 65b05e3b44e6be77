"""Data-quality statistics computed as the offline materializer writes a flush, and the
expectations checked on them, exported as ``featurebus_data_quality_failed_expectations``.

For each view with ``data_quality_enabled`` fed by the flushed source, the decoded records go
through the view's transformation (the code the stream worker and training sets run), and the
columns its aggregations read are folded per hour of event time (``quality.bucket_statistics``)
and stored (``quality_store``). A transformation that fails on a flush is logged and counted; the
records are in the offline store already, and statistics must never stop the materializer.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from prometheus_client import Counter, Gauge

from featurebus.platform.monitoring.quality import FeatureStatistics, Granularity, bucket_statistics
from featurebus.platform.monitoring.quality_report import DEFAULT_HISTORY_BUCKETS, evaluate_view, failed_count
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.specs import StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.aggregations import NUMERIC_DTYPES
from featurebus.streams.transform import Transformation, view_input_frame

__all__ = ["FAILED_EXPECTATIONS", "QualityRecorder"]

FAILED_EXPECTATIONS = Gauge(
    "featurebus_data_quality_failed_expectations",
    "Data-quality expectations failed in the newest checked buckets of a feature view",
    ["workspace", "feature_view"],
)
_SKIPPED = Counter(
    "featurebus_data_quality_skipped_flushes_total",
    "Flushes whose statistics could not be computed (the view's transformation failed)",
    ["workspace", "feature_view"],
)

_log = logging.getLogger(__name__)


class QualityRecorder:
    def __init__(self, store: QualityStore, spec: WorkspaceSpec, *, check_interval_s: float = 10.0) -> None:
        """``check_interval_s``: how often a view's expectations are re-checked at most."""
        self._store = store
        self._spec = spec
        self._check_interval_s = check_interval_s
        # Per view: its merged hourly statistics, read from the store once and then kept up to
        # date in memory, so a check does not re-read every flush's file.
        self._hours: dict[str, dict[int, dict[str, FeatureStatistics]]] = {}
        self._checked_at: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._views: dict[str, list[tuple[StreamFeatureViewSpec, Transformation]]] = {}
        for view in spec.stream_feature_views:
            if view.data_quality_enabled and view.offline and not view.feature_table:
                self._views.setdefault(view.source, []).append((view, Transformation(view.transformation)))
        for views in self._views.values():
            for view, _ in views:
                FAILED_EXPECTATIONS.labels(spec.name, view.name).set(0)

    @property
    def enabled(self) -> bool:
        return bool(self._views)

    def record(self, source: StreamSourceSpec, part: str, frame: pd.DataFrame) -> None:
        """Fold one flush's decoded records of ``source`` (``part`` names the flush, see
        ``quality_store``) into the statistics of every monitored view reading it."""
        if len(frame) == 0:
            return
        for view, transformation in self._views.get(source.name, []):
            try:
                inputs, times_ms = view_input_frame(view, transformation.apply(frame))
            except FeaturebusError as exc:
                _SKIPPED.labels(self._spec.name, view.name).inc()
                _log.warning("data quality of view %r: flush %s skipped: %s", view.name, part, exc)
                continue
            columns = {a.input_column: a.input_dtype in NUMERIC_DTYPES for a in view.aggregations}
            stats = bucket_statistics(
                np.asarray(times_ms, dtype=np.int64),
                {column: _values(inputs[column], numeric) for column, numeric in columns.items()},
                [c for c, numeric in columns.items() if numeric],
                Granularity.HOUR,
            )
            self._store.write(self._spec.name, view.name, part, stats)
            hours = self._hours_of(view)
            for (column, start), statistics in stats.items():
                bucket = hours.setdefault(start, {})
                if column in bucket:
                    bucket[column].merge(statistics)
                else:
                    bucket[column] = statistics
            horizon = max(hours) - (DEFAULT_HISTORY_BUCKETS + 2) * Granularity.HOUR.value
            for start in [s for s in hours if s < horizon]:  # older than any check looks back
                del hours[start]
            self._dirty.add(view.name)
        self.check_due()

    def check_due(self, *, force: bool = False) -> None:
        """Re-check the views that received statistics since their last check, at most once per
        ``check_interval_s`` each (``force``: now)."""
        now = time.monotonic()
        for views in self._views.values():
            for view, _ in views:
                due = now - self._checked_at.get(view.name, -float("inf")) >= self._check_interval_s
                if view.name in self._dirty and (force or due):
                    self.check(view)

    def check(self, view: StreamFeatureViewSpec) -> int:
        """Check the view's expectations now; returns (and exports) how many failed."""
        self._checked_at[view.name] = time.monotonic()
        self._dirty.discard(view.name)
        failed = failed_count(evaluate_view(view, self._hours_of(view)))
        FAILED_EXPECTATIONS.labels(self._spec.name, view.name).set(failed)
        return failed

    def _hours_of(self, view: StreamFeatureViewSpec) -> dict[int, dict[str, FeatureStatistics]]:
        if view.name not in self._hours:
            self._hours[view.name] = self._store.read(self._spec.name, view.name)
        return self._hours[view.name]


def _values(series: pd.Series, numeric: bool) -> np.ndarray:
    """A column as ``bucket_statistics`` takes it: floats with NaN for nulls, or objects with None."""
    if numeric:
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values: np.ndarray = series.astype(object).where(series.notna(), None).to_numpy()
    return values
