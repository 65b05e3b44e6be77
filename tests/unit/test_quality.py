"""Data-quality statistics: exact moments, sketch accuracy, merge = one pass (any split),
serialization, empty buckets, and the default and declared expectations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.monitoring.expectations import (
    Expectation,
    ExpectationStatus,
    Statistic,
    check,
    check_defaults,
)
from featurebus.platform.monitoring.quality import (
    FeatureStatistics,
    FeatureSummary,
    Granularity,
    bucket_statistics,
)
from featurebus.schemas.errors import DefinitionError, StoreFormatError

values_strategy = st.lists(st.none() | st.floats(-1e6, 1e6, allow_nan=False), max_size=80)


def test_numeric_summary_is_exact_where_it_can_be() -> None:
    stats = FeatureStatistics(numeric=True)
    stats.add([1.0, None, 3.0, math.nan, 5.0])
    summary = stats.summary()
    assert (summary.row_count, summary.null_count, summary.null_rate) == (5, 2, 0.4)
    assert (summary.min, summary.max, summary.mean, summary.stddev) == (1.0, 5.0, 3.0, 2.0)
    assert summary.quantiles is not None and summary.quantiles[0.5] == 3.0
    assert summary.distinct_estimate == pytest.approx(3, abs=0.01)
    assert summary.histogram_counts is not None and sum(summary.histogram_counts) == pytest.approx(3)


def test_sketches_are_accurate_on_a_large_sample() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(50, 10, 200_000)
    stats = FeatureStatistics(numeric=True)
    for chunk in np.array_split(data, 20):
        stats.add(chunk)
    summary = stats.summary()
    assert summary.quantiles is not None
    for q, value in summary.quantiles.items():
        rank = float(np.mean(data <= value))
        assert abs(rank - q) < 0.02, (q, rank)  # KLL k=200: ~1.65% normalized rank error
    distinct = FeatureStatistics(numeric=True)
    distinct.add(np.floor(data * 10))
    true_distinct = len(np.unique(np.floor(data * 10)))
    assert distinct.summary().distinct_estimate == pytest.approx(true_distinct, rel=0.05)
    assert summary.histogram_counts is not None and sum(summary.histogram_counts) == pytest.approx(len(data))


@settings(max_examples=150, deadline=None)
@given(values=values_strategy, split=st.integers(0, 80))
def test_merging_two_halves_equals_one_pass(values: list[float | None], split: int) -> None:
    whole = FeatureStatistics(numeric=True)
    whole.add(values)
    left, right = FeatureStatistics(numeric=True), FeatureStatistics(numeric=True)
    left.add(values[:split])
    right.add(values[split:])
    left = FeatureStatistics.from_bytes(left.to_bytes())  # merging survives a round trip
    left.merge(FeatureStatistics.from_bytes(right.to_bytes()))
    a, b = whole.summary(), left.summary()
    assert (a.row_count, a.null_count, a.has_data, a.min, a.max) == (
        b.row_count,
        b.null_count,
        b.has_data,
        b.min,
        b.max,
    )
    if a.mean is not None:
        assert b.mean == pytest.approx(a.mean, rel=1e-9, abs=1e-6)
        assert b.stddev == pytest.approx(a.stddev, rel=1e-6, abs=1e-6)
        assert b.distinct_estimate == pytest.approx(a.distinct_estimate, rel=0.02)
        present = [v for v in values if v is not None]
        assert b.quantiles is not None and min(present) <= b.quantiles[0.5] <= max(present)


def test_categorical_statistics() -> None:
    stats = FeatureStatistics(numeric=False)
    stats.add(["visa", None, "amex", "visa"])
    other = FeatureStatistics(numeric=False)
    other.add(["mc"])
    stats.merge(other)
    summary = stats.summary()
    assert (summary.row_count, summary.null_count, summary.null_rate) == (5, 1, 0.2)
    assert summary.distinct_estimate == pytest.approx(3, abs=0.01)
    assert summary.mean is None and summary.quantiles is None
    with pytest.raises(DefinitionError, match="numeric feature with those of a categorical"):
        stats.merge(FeatureStatistics(numeric=True))


def test_a_bucket_without_rows_has_no_statistics_not_zeros() -> None:
    summary = FeatureStatistics(numeric=True).summary()
    assert summary.has_data is False
    assert summary.null_rate is None and summary.mean is None and summary.min is None
    only_nulls = FeatureStatistics(numeric=True)
    only_nulls.add([None, None])
    summary = only_nulls.summary()
    assert summary.null_rate == 1.0 and summary.mean is None and summary.quantiles is None


def test_another_format_is_refused_with_an_action() -> None:
    raw = FeatureStatistics(numeric=True).to_bytes().replace(b'"format":1', b'"format":7')
    with pytest.raises(StoreFormatError, match="recompute them"):
        FeatureStatistics.from_bytes(raw)


def test_bucket_statistics_split_rows_by_hour_and_day() -> None:
    hour = Granularity.HOUR.value
    times = np.array([0, 10, hour + 5, Granularity.DAY.value + 1])
    columns: dict[str, list[Any]] = {"amount": [1.0, None, 3.0, 4.0], "card": ["a", "b", None, "a"]}
    hourly = bucket_statistics(times, columns, numeric=["amount"], granularity=Granularity.HOUR)
    assert sorted(hourly) == sorted(
        [
            ("amount", 0),
            ("amount", hour),
            ("amount", Granularity.DAY.value),
            ("card", 0),
            ("card", hour),
            ("card", Granularity.DAY.value),
        ]
    )
    assert hourly[("amount", 0)].summary().null_count == 1
    assert hourly[("card", hour)].summary().null_rate == 1.0
    daily = bucket_statistics(times, columns, numeric=["amount"], granularity=Granularity.DAY)
    assert daily[("amount", 0)].summary().row_count == 3
    with pytest.raises(DefinitionError, match="'amount' has 1 values for 4 rows"):
        bucket_statistics(times, {"amount": [1.0]}, numeric=["amount"], granularity=Granularity.DAY)


def _summary(rows: int, null_rate: float) -> FeatureSummary:
    stats = FeatureStatistics(numeric=True)
    nulls = round(rows * null_rate)
    stats.add([None] * nulls + [1.0] * (rows - nulls))
    return stats.summary()


def test_default_expectations_against_recent_history() -> None:
    history = [_summary(1000, 0.01), _summary(1100, 0.02), _summary(900, 0.01), FeatureStatistics(True).summary()]
    ok = check_defaults("amount", history, _summary(1000, 0.03))
    assert [r.status for r in ok] == [ExpectationStatus.PASSED, ExpectationStatus.PASSED]
    nulls = check_defaults("amount", history, _summary(1000, 0.30))
    assert nulls[0].status is ExpectationStatus.FAILED and "null rate 0.3000 is above 0.0700" in nulls[0].message
    low = check_defaults("amount", history, _summary(100, 0.01))
    assert low[1].status is ExpectationStatus.FAILED and "100 rows is outside" in low[1].message
    thin = check_defaults("amount", history[:2], _summary(1000, 0.9))
    assert {r.status for r in thin} == {ExpectationStatus.NO_DATA}
    empty = check_defaults("amount", history, FeatureStatistics(True).summary())
    assert {r.status for r in empty} == {ExpectationStatus.NO_DATA}


def test_declared_bounds() -> None:
    summary = _summary(10, 0.5)
    assert check(Expectation("amount", Statistic.NULL_RATE, max_value=0.1), summary).status is ExpectationStatus.FAILED
    assert check(Expectation("amount", Statistic.MEAN, 0.5, 1.5), summary).status is ExpectationStatus.PASSED
    assert check(Expectation("amount", Statistic.MEDIAN, min_value=2), summary).status is ExpectationStatus.FAILED
    empty = FeatureStatistics(True).summary()
    assert check(Expectation("amount", Statistic.MEAN, 0, 1), empty).status is ExpectationStatus.NO_DATA


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give min_value, max_value or both"),
        ({"min_value": 2, "max_value": 1}, "is above max_value"),
        ({"min_value": math.inf}, "finite numbers"),
    ],
)
def test_bad_expectations_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        Expectation("amount", Statistic.MEAN, **kwargs)
