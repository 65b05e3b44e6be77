"""What the stored data-quality statistics say about a view: buckets per feature, and the
expectations checked on them.

A feature's statistics are those of the values it is computed from: its input column after the
view's transformation (an ``Attribute``'s values are its input column), so features that share
an input column share statistics. Every bucket of the asked range is reported, an empty one with
``has_data: false`` and no statistic, never zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from featurebus.platform.monitoring.expectations import (
    Expectation,
    ExpectationResult,
    ExpectationStatus,
    Statistic,
    check,
    check_defaults,
)
from featurebus.platform.monitoring.quality import FeatureStatistics, FeatureSummary, Granularity
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import StreamFeatureViewSpec, WorkspaceSpec

__all__ = [
    "DEFAULT_HISTORY_BUCKETS",
    "evaluate_view",
    "failed_count",
    "monitored_view",
    "feature_columns",
    "results_json",
    "view_statistics",
]

DEFAULT_HISTORY_BUCKETS = 24  # the default expectations compare an hour with the 24 before it
_EMPTY = FeatureStatistics(numeric=False).summary()


def monitored_view(spec: WorkspaceSpec, name: str) -> StreamFeatureViewSpec:
    """The stream view ``name`` of ``spec``, which must have data quality enabled."""
    view = spec.view(name)  # NotFoundError listing the views
    if not view.data_quality_enabled or not view.offline:
        raise InvalidRequestError(
            f"feature view {name!r} has no data-quality statistics: it needs offline=True and "
            "data_quality_enabled (the default for offline views)"
        )
    return view


def feature_columns(view: StreamFeatureViewSpec, feature: str | None = None) -> dict[str, str]:
    """Feature name -> its input column (all features, or the one asked for)."""
    columns = {a.name: a.input_column for a in view.aggregations}
    if feature is None:
        return columns
    if feature not in columns:
        raise InvalidRequestError(f"feature view {view.name!r} has no feature {feature!r}; it has {', '.join(columns)}")
    return {feature: columns[feature]}


def _summary_json(summary: FeatureSummary) -> dict[str, Any]:
    document = asdict(summary)
    if summary.quantiles is not None:
        document["quantiles"] = {f"{q:g}": v for q, v in summary.quantiles.items()}
    return document


def view_statistics(
    store: QualityStore,
    workspace: str,
    view: StreamFeatureViewSpec,
    *,
    feature: str | None,
    granularity: Granularity,
    since_ms: int,
    until_ms: int,
) -> list[dict[str, Any]]:
    """One JSON-ready row per feature and bucket of ``[since_ms, until_ms)`` (bucket-aligned),
    oldest first: ``{"feature", "input_column", "granularity", "bucket_start_ms", **summary}``."""
    if until_ms <= since_ms:
        raise InvalidRequestError(f"since ({since_ms}) must be before until ({until_ms})")
    size = granularity.value
    first = since_ms - since_ms % size
    if (until_ms - first) // size > 24 * 400:
        raise InvalidRequestError("at most 9600 buckets per request: give a later --since or --granularity day")
    buckets = store.by_granularity(store.read(workspace, view.name, first, until_ms), granularity)
    rows = []
    for name, column in feature_columns(view, feature).items():
        for start in range(first, until_ms, size):
            statistics = buckets.get(start, {}).get(column)
            summary = _EMPTY if statistics is None else statistics.summary()
            rows.append(
                {
                    "feature": name,
                    "input_column": column,
                    "granularity": granularity.name.lower(),
                    "bucket_start_ms": start,
                    **_summary_json(summary),
                }
            )
    return rows


def _expectation(view: StreamFeatureViewSpec, index: int) -> Expectation:
    declared = view.data_quality_expectations[index]
    return Expectation(declared.feature, Statistic(declared.statistic), declared.min_value, declared.max_value)


def evaluate_view(
    view: StreamFeatureViewSpec, hours: Mapping[int, Mapping[str, FeatureStatistics]]
) -> list[tuple[int, ExpectationResult]]:
    """``(bucket start, result)`` of every expectation of the view over its hourly statistics
    (``QualityStore.read``): the declared ones and the default null-rate one on the newest hour
    with data, the default row-volume one on the hour before it (the newest one is still
    filling, so its volume would read as a drop)."""
    if not hours:
        return []
    newest = max(hours)
    summaries: dict[str, dict[int, FeatureSummary]] = {}

    def summary(column: str, start: int) -> FeatureSummary:
        per_column = summaries.setdefault(column, {})
        if start not in per_column:
            statistics = hours.get(start, {}).get(column)
            per_column[start] = _EMPTY if statistics is None else statistics.summary()
        return per_column[start]

    results: list[tuple[int, ExpectationResult]] = []
    columns = feature_columns(view)
    for index, declared in enumerate(view.data_quality_expectations):
        results.append((newest, check(_expectation(view, index), summary(columns[declared.feature], newest))))
    if view.skip_default_expectations:
        return results
    hour = Granularity.HOUR.value
    closed = newest - hour
    for column in dict.fromkeys(columns.values()):
        null_check, _ = check_defaults(
            column,
            [summary(column, newest - k * hour) for k in range(1, DEFAULT_HISTORY_BUCKETS + 1)],
            summary(column, newest),
        )
        _, volume_check = check_defaults(
            column,
            [summary(column, closed - k * hour) for k in range(1, DEFAULT_HISTORY_BUCKETS + 1)],
            summary(column, closed),
        )
        results += [(newest, null_check), (closed, volume_check)]
    return results


def failed_count(results: list[tuple[int, ExpectationResult]]) -> int:
    return sum(1 for _, r in results if r.status is ExpectationStatus.FAILED)


def results_json(results: list[tuple[int, ExpectationResult]]) -> list[dict[str, Any]]:
    return [
        {
            "bucket_start_ms": start,
            "expectation": r.name,
            "status": r.status.value,
            "observed": None if r.observed is None or not math.isfinite(r.observed) else r.observed,
            "message": r.message,
        }
        for start, r in results
    ]
