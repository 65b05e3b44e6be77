"""Drift statistics: known values, invariants over any samples, shifted vs unshifted data, and
empty buckets reported as such."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.monitoring.drift import (
    DriftMethod,
    DriftStatus,
    DriftThresholds,
    categorical_drift,
    drift_by_bucket,
    jensen_shannon_distance,
    ks_p_value,
    ks_statistic,
    numeric_drift,
    population_stability_index,
)
from featurebus.schemas.errors import DefinitionError

samples = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200).map(
    lambda xs: np.asarray(xs, dtype=np.float64)
)
counts = st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 1000)).filter(lambda d: sum(d.values()) > 0)


def test_ks_statistic_known_values() -> None:
    assert ks_statistic(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == 0.0
    assert ks_statistic(np.array([1.0, 2]), np.array([3.0, 4])) == 1.0
    assert ks_statistic(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6])) == 0.5


@pytest.mark.parametrize(("critical", "alpha"), [(1.3581, 0.05), (1.6276, 0.01), (1.2238, 0.10)])
def test_ks_p_value_matches_the_kolmogorov_critical_values(critical: float, alpha: float) -> None:
    n = 10**8  # large samples: Stephens' correction vanishes and λ = √(n/2) · D
    d = critical / math.sqrt(n / 2)
    assert ks_p_value(d, n, n) == pytest.approx(alpha, abs=2e-4)
    assert ks_p_value(0.0, 10, 10) == 1.0


def test_psi_known_value() -> None:
    # Two bins (edge at the median 1.5): reference 50/50, current 90/10.
    reference = np.array([1.0] * 50 + [2.0] * 50)
    current = np.array([1.0] * 90 + [2.0] * 10)
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert population_stability_index(reference, current, bins=2) == pytest.approx(expected)


def test_js_known_values() -> None:
    assert jensen_shannon_distance({"a": 5}, {"a": 9}) == 0.0
    assert jensen_shannon_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(a=samples, b=samples)
def test_numeric_invariants(a: np.ndarray, b: np.ndarray) -> None:
    d = ks_statistic(a, b)
    assert 0.0 <= d <= 1.0 and d == ks_statistic(b, a)
    assert ks_statistic(a, a) == 0.0
    assert population_stability_index(a, b) >= 0.0
    assert population_stability_index(a, a) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= ks_p_value(d, len(a), len(b)) <= 1.0


@settings(max_examples=200, deadline=None)
@given(p=counts, q=counts)
def test_js_is_a_bounded_symmetric_distance(p: dict[str, int], q: dict[str, int]) -> None:
    js = jensen_shannon_distance(p, q)
    assert 0.0 <= js <= 1.0 + 1e-12
    assert js == pytest.approx(jensen_shannon_distance(q, p))
    scaled = {k: 3 * v for k, v in p.items()}
    assert jensen_shannon_distance(p, scaled) == pytest.approx(0.0, abs=1e-7)


def test_a_distribution_scaled_by_three_drifts_and_a_fresh_sample_does_not() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(100, 20, 5000)
    unshifted = rng.normal(100, 20, 2000)
    shifted = unshifted * 3
    calm = numeric_drift(reference, unshifted)
    assert {r.status for r in calm.values()} == {DriftStatus.OK}
    moved = numeric_drift(reference, shifted)
    assert {r.status for r in moved.values()} == {DriftStatus.DRIFTED}
    p_value = moved[DriftMethod.KOLMOGOROV_SMIRNOV].p_value
    assert p_value is not None and p_value < 1e-6


def test_a_large_sample_with_a_tiny_shift_is_not_called_drift() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, 200_000)
    current = rng.normal(0.03, 1, 200_000)  # "significant" at this size, harmless in practice
    result = numeric_drift(reference, current)[DriftMethod.KOLMOGOROV_SMIRNOV]
    assert result.p_value is not None and result.p_value < 0.01
    assert result.status is DriftStatus.OK


def test_categorical_drift() -> None:
    reference = ["visa"] * 60 + ["amex"] * 30 + ["mc"] * 10
    assert {r.status for r in categorical_drift(reference, ["visa"] * 6 + ["amex"] * 3 + ["mc"]).values()} == {
        DriftStatus.OK
    }
    moved = categorical_drift(reference, ["mc"] * 80 + ["visa"] * 20)
    assert {r.status for r in moved.values()} == {DriftStatus.DRIFTED}


def test_nulls_are_dropped_and_an_empty_side_is_no_data_not_zero() -> None:
    result = numeric_drift([1.0, 2.0, None, math.nan], [None, None])
    for method in (DriftMethod.PSI, DriftMethod.KOLMOGOROV_SMIRNOV):
        assert result[method].status is DriftStatus.NO_DATA
        assert result[method].statistic is None
        assert (result[method].reference_count, result[method].current_count) == (2, 0)
    assert {r.status for r in categorical_drift([], ["a"]).values()} == {DriftStatus.NO_DATA}


def test_every_bucket_is_reported_and_an_empty_one_says_so() -> None:
    rng = np.random.default_rng(1)
    reference = list(rng.normal(0, 1, 1000))
    hour = 3_600_000
    current = [(0 + i, float(v)) for i, v in enumerate(rng.normal(0, 1, 500))]
    current += [(2 * hour + i, float(v) * 3 + 5) for i, v in enumerate(rng.normal(0, 1, 500))]
    result = drift_by_bucket(reference, current, start_ms=0, end_ms=3 * hour, bucket_ms=hour)
    assert sorted(result) == [0, hour, 2 * hour]
    assert result[0][DriftMethod.PSI].status is DriftStatus.OK
    assert result[hour][DriftMethod.PSI].status is DriftStatus.NO_DATA
    assert result[2 * hour][DriftMethod.PSI].status is DriftStatus.DRIFTED


def test_categorical_buckets() -> None:
    result = drift_by_bucket(
        ["a", "b"] * 50, [(0, "a"), (1, "b"), (10, "c")], start_ms=0, end_ms=20, bucket_ms=10, categorical=True
    )
    assert result[0][DriftMethod.JENSEN_SHANNON].status is DriftStatus.OK
    assert result[10][DriftMethod.JENSEN_SHANNON].status is DriftStatus.DRIFTED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket_ms": 0}, "positive number of milliseconds"),
        ({"start_ms": 5}, "whole buckets"),
        ({"end_ms": -10}, "whole buckets"),
    ],
)
def test_bad_bucket_ranges_are_refused(kwargs: dict[str, int], message: str) -> None:
    arguments = {"start_ms": 0, "end_ms": 20, "bucket_ms": 10, **kwargs}
    with pytest.raises(DefinitionError, match=message):
        drift_by_bucket(
            [1.0], [], start_ms=arguments["start_ms"], end_ms=arguments["end_ms"], bucket_ms=arguments["bucket_ms"]
        )


@pytest.mark.parametrize("changes", [{"psi": -1.0}, {"ks_p_value": 2.0}, {"js_distance": math.nan}])
def test_bad_thresholds_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(DefinitionError, match="drift threshold"):
        DriftThresholds(**changes)
