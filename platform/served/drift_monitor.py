"""Drift of each feature of a view: its served distribution (the logged requests of every
service with logging that selects the view) against a reference, per time bucket.

The reference is a saved dataset (``platform.offline.datasets``; a training set has the same
``<view>__<feature>`` columns as logged features) or a reference window of the logged features
themselves. Without either given, the window of the same length just before the current one is
used. Numerics: PSI and Kolmogorov–Smirnov; categoricals (strings, bools): Jensen–Shannon and
PSI (``drift``). Array features are not compared (reported as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurebus.platform.monitoring.drift import DriftMethod, DriftResult, DriftStatus, DriftThresholds, drift_by_bucket
from featurebus.platform.offline.datasets import read_dataset
from featurebus.platform.offline.logged_features import TIMESTAMP, read_logged_features
from featurebus.platform.training.training_sets import feature_column
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import StreamFeatureViewSpec, WorkspaceSpec

__all__ = ["DriftReference", "logged_view_frame", "view_drift", "drift_view_spec"]

HOUR_MS = 3_600_000
_NUMERIC = frozenset({"int64", "int32", "float64", "float32"})
_CATEGORICAL = frozenset({"string", "bool"})


@dataclass(frozen=True)
class DriftReference:
    """A saved dataset's name, or a window ``[start_ms, end_ms)`` of the logged features."""

    dataset: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        window = (self.start_ms, self.end_ms)
        if self.dataset is not None and window != (None, None):
            raise InvalidRequestError("give a reference dataset or a reference window, not both")
        if (self.start_ms is None) != (self.end_ms is None):
            raise InvalidRequestError("a reference window needs both its start and its end")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise InvalidRequestError("the reference window's end must be after its start")

    def describe(self) -> dict[str, Any]:
        if self.dataset is not None:
            return {"kind": "dataset", "dataset": self.dataset}
        return {"kind": "window", "startMs": self.start_ms, "endMs": self.end_ms}


def drift_view_spec(spec: WorkspaceSpec, view: str) -> StreamFeatureViewSpec:
    """The stream or batch view ``view`` as aggregations (its features and their dtypes)."""
    if spec.is_batch(view):
        return spec.batch_view(view).as_view_spec()
    return spec.view(view)


def logged_view_frame(root: Path, spec: WorkspaceSpec, view: str) -> pd.DataFrame:
    """``timestamp`` + the view's feature columns (``<view>__<feature>``) of every logged request of
    every service with logging that serves the view, under whatever namespace it serves it."""
    frames = []
    for service in spec.feature_services:
        selections = [s for s in service.selections if s.view == view]
        if service.logging is None or not selections:
            continue
        try:
            logged = read_logged_features(root, spec.name, service.name)
        except InvalidRequestError:
            continue  # nothing logged yet
        for selection in selections:  # a view referenced twice (with_name) gives rows twice
            names = {feature_column(selection.namespace, f): feature_column(view, f) for f in selection.features}
            present = [c for c in names if c in logged.columns]
            frames.append(logged[[TIMESTAMP, *present]].rename(columns=names))
    if not frames:
        raise InvalidRequestError(
            f"no logged features of view {view!r} in workspace {spec.name!r}: give a feature service that "
            "serves it logging=LoggingConfig(...), serve requests, and run the offline materializer"
        )
    return pd.concat(frames, ignore_index=True)


def _times_ms(frame: pd.DataFrame) -> np.ndarray:
    times: np.ndarray = frame[TIMESTAMP].array.as_unit("ms").asi8
    return times


def _result_json(result: DriftResult) -> dict[str, Any]:
    return {
        "status": result.status.value,
        "statistic": result.statistic,
        "threshold": result.threshold,
        "pValue": result.p_value,
        "referenceCount": result.reference_count,
        "currentCount": result.current_count,
    }


def view_drift(
    root: Path,
    spec: WorkspaceSpec,
    view_name: str,
    *,
    reference: DriftReference | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    bucket_ms: int = HOUR_MS,
    thresholds: DriftThresholds = DriftThresholds(),
) -> dict[str, Any]:
    """The drift report of every feature of the view, per bucket of ``[start_ms, end_ms)``
    (default: the 24 buckets up to the newest logged request), JSON-ready."""
    view = drift_view_spec(spec, view_name)
    served = logged_view_frame(root, spec, view_name)
    times = _times_ms(served)
    if end_ms is None:
        end_ms = int(times.max()) + 1 if len(times) else bucket_ms
    end_ms = -(-end_ms // bucket_ms) * bucket_ms  # up to a whole bucket
    if start_ms is None:
        start_ms = end_ms - 24 * bucket_ms
    start_ms -= start_ms % bucket_ms
    if reference is None:
        reference = DriftReference(start_ms=2 * start_ms - end_ms, end_ms=start_ms)
    if reference.dataset is not None:
        reference_frame = read_dataset(root, spec.name, reference.dataset)
    else:
        assert reference.start_ms is not None and reference.end_ms is not None  # DriftReference checks
        in_window = (times >= reference.start_ms) & (times < reference.end_ms)
        reference_frame = served[in_window]
    features = []
    for aggregation in view.aggregations:
        column = feature_column(view.name, aggregation.name)
        dtype = aggregation.output_dtype
        entry: dict[str, Any] = {"feature": aggregation.name, "dtype": dtype}
        if dtype not in _NUMERIC and dtype not in _CATEGORICAL:
            features.append({**entry, "comparable": False, "buckets": []})
            continue
        if column not in reference_frame.columns:
            raise InvalidRequestError(
                f"the reference has no column {column!r} (feature {aggregation.name!r} of view {view.name!r}); "
                f"it has {list(reference_frame.columns)}"
            )
        categorical = dtype in _CATEGORICAL
        current = served[column] if column in served.columns else pd.Series([None] * len(served), dtype=object)
        reference_values = _values(reference_frame[column], categorical)
        pairs = list(zip(times.tolist(), _values(current, categorical), strict=True))
        per_bucket = drift_by_bucket(
            reference_values,
            pairs,
            start_ms=start_ms,
            end_ms=end_ms,
            bucket_ms=bucket_ms,
            categorical=categorical,
            thresholds=thresholds,
        )
        buckets: list[dict[str, Any]] = [
            {
                "bucketStartMs": start,
                "status": _overall(results).value,
                "methods": {method.value: _result_json(result) for method, result in results.items()},
            }
            for start, results in per_bucket.items()
        ]
        with_data = [b for b in buckets if b["status"] != DriftStatus.NO_DATA.value]
        latest = with_data[-1] if with_data else None
        features.append(
            {
                **entry,
                "comparable": True,
                "categorical": categorical,
                "latest": latest,
                "psi": None if latest is None else latest["methods"][DriftMethod.PSI.value]["statistic"],
                "buckets": buckets,
            }
        )
    return {
        "workspace": spec.name,
        "featureView": view.name,
        "reference": reference.describe(),
        "startMs": start_ms,
        "endMs": end_ms,
        "bucketMs": bucket_ms,
        "features": features,
    }


def _overall(results: dict[DriftMethod, DriftResult]) -> DriftStatus:
    statuses = {r.status for r in results.values()}
    if DriftStatus.DRIFTED in statuses:
        return DriftStatus.DRIFTED
    return DriftStatus.NO_DATA if statuses == {DriftStatus.NO_DATA} else DriftStatus.OK


def _values(series: pd.Series, categorical: bool) -> list[Any]:
    if categorical:
        return [None if pd.isna(v) else v for v in series.astype(object)]
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return [None if np.isnan(v) else float(v) for v in numbers]
