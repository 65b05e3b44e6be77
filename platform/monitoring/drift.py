"""Drift of a feature's served distribution against a reference, per time bucket (pure).

Numerics: the population stability index (PSI) over the reference's decile bins, and the
two-sample Kolmogorov–Smirnov statistic D with its asymptotic p-value. Categoricals: the
Jensen–Shannon distance (base 2, within [0, 1]) and PSI over the union of categories.

Nulls are not part of a distribution (the null rate is a data-quality statistic) and are
dropped. A side left without values is reported as ``NO_DATA`` with no statistic, never as a
zero (which would read as "no drift"). numpy is enough: D and its p-value are a sort and a
short series, so scipy is not needed (and not a dependency).

Conventional thresholds are the defaults: PSI > 0.2 is a significant shift (0.1–0.2 moderate),
KS drifts when its p-value is below 0.01 *and* D exceeds 0.1 (with large samples a tiny,
harmless D is already "significant"), JS distance > 0.1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from featurebus.schemas.errors import DefinitionError

__all__ = [
    "DriftMethod",
    "DriftResult",
    "DriftStatus",
    "DriftThresholds",
    "categorical_drift",
    "drift_by_bucket",
    "jensen_shannon_distance",
    "ks_statistic",
    "ks_p_value",
    "numeric_drift",
    "population_stability_index",
]

# A bin empty on one side would make PSI infinite; the usual floor on its share keeps one empty
# bin a large, finite contribution.
_MIN_SHARE = 1e-4
_PSI_BINS = 10

FloatArray = npt.NDArray[np.float64]


class DriftMethod(Enum):
    PSI = "psi"
    KOLMOGOROV_SMIRNOV = "ks"
    JENSEN_SHANNON = "js"


class DriftStatus(Enum):
    OK = "ok"
    DRIFTED = "drifted"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    ks_statistic: float = 0.1
    ks_p_value: float = 0.01
    js_distance: float = 0.1

    def __post_init__(self) -> None:
        for name in ("psi", "ks_statistic", "ks_p_value", "js_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise DefinitionError(f"drift threshold {name} must be a finite number >= 0, got {value!r}")
        for name in ("ks_statistic", "ks_p_value", "js_distance"):
            if getattr(self, name) > 1:
                raise DefinitionError(f"drift threshold {name} must be within [0, 1], got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DriftResult:
    method: DriftMethod
    status: DriftStatus
    statistic: float | None  # None with NO_DATA
    threshold: float
    reference_count: int
    current_count: int
    p_value: float | None = None  # Kolmogorov–Smirnov only


def _finite(values: Iterable[float | None]) -> FloatArray:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def population_stability_index(reference: FloatArray, current: FloatArray, bins: int = _PSI_BINS) -> float:
    """PSI = Σ (c − r) · ln(c / r) over bins cut at the reference's quantiles (both non-empty)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    # Bin i holds edges[i-1] < x <= edges[i]: the same rule on both sides, open at the ends.
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=len(edges) + 1)
    return _psi_from_counts(ref_counts.astype(np.float64), cur_counts.astype(np.float64))


def _psi_from_counts(ref_counts: FloatArray, cur_counts: FloatArray) -> float:
    ref = np.maximum(ref_counts / ref_counts.sum(), _MIN_SHARE)
    cur = np.maximum(cur_counts / cur_counts.sum(), _MIN_SHARE)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_statistic(reference: FloatArray, current: FloatArray) -> float:
    """The largest gap between the two empirical CDFs (both non-empty)."""
    ref, cur = np.sort(reference), np.sort(current)
    points = np.concatenate([ref, cur])
    gaps = np.abs(
        np.searchsorted(ref, points, side="right") / len(ref) - np.searchsorted(cur, points, side="right") / len(cur)
    )
    return float(gaps.max())


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic p-value of D for samples of sizes n and m: the Kolmogorov distribution's tail
    Q(λ) = 2 Σ (−1)^(k−1) exp(−2 k² λ²) at Stephens' λ = (√e + 0.12 + 0.11/√e) · D, e = nm/(n+m)."""
    effective = n * m / (n + m)
    lam = (math.sqrt(effective) + 0.12 + 0.11 / math.sqrt(effective)) * statistic
    if lam < 0.2:  # the series converges slowly there and its value is 1 to double precision
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def jensen_shannon_distance(reference: Mapping[Any, int], current: Mapping[Any, int]) -> float:
    """√JS divergence in base 2 of two category count tables (both with a positive total)."""
    categories = list(set(reference) | set(current))
    p = np.asarray([reference.get(c, 0) for c in categories], dtype=np.float64)
    q = np.asarray([current.get(c, 0) for c in categories], dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    mixture = (p + q) / 2

    def kl(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / mixture[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _no_data(method: DriftMethod, threshold: float, n: int, m: int) -> DriftResult:
    return DriftResult(method, DriftStatus.NO_DATA, None, threshold, n, m)


def numeric_drift(
    reference: Iterable[float | None], current: Iterable[float | None], thresholds: DriftThresholds = DriftThresholds()
) -> dict[DriftMethod, DriftResult]:
    """PSI and Kolmogorov–Smirnov of ``current`` against ``reference`` (nulls and NaN dropped)."""
    ref, cur = _finite(reference), _finite(current)
    n, m = len(ref), len(cur)
    if n == 0 or m == 0:
        return {
            DriftMethod.PSI: _no_data(DriftMethod.PSI, thresholds.psi, n, m),
            DriftMethod.KOLMOGOROV_SMIRNOV: _no_data(DriftMethod.KOLMOGOROV_SMIRNOV, thresholds.ks_statistic, n, m),
        }
    psi = population_stability_index(ref, cur)
    d = ks_statistic(ref, cur)
    p = ks_p_value(d, n, m)
    ks_drifted = d > thresholds.ks_statistic and p < thresholds.ks_p_value
    return {
        DriftMethod.PSI: DriftResult(
            DriftMethod.PSI, DriftStatus.DRIFTED if psi > thresholds.psi else DriftStatus.OK, psi, thresholds.psi, n, m
        ),
        DriftMethod.KOLMOGOROV_SMIRNOV: DriftResult(
            DriftMethod.KOLMOGOROV_SMIRNOV,
            DriftStatus.DRIFTED if ks_drifted else DriftStatus.OK,
            d,
            thresholds.ks_statistic,
            n,
            m,
            p_value=p,
        ),
    }


def categorical_drift(
    reference: Iterable[Hashable | None],
    current: Iterable[Hashable | None],
    thresholds: DriftThresholds = DriftThresholds(),
) -> dict[DriftMethod, DriftResult]:
    """Jensen–Shannon distance and PSI over categories (nulls dropped)."""
    ref = Counter(v for v in reference if v is not None)
    cur = Counter(v for v in current if v is not None)
    n, m = sum(ref.values()), sum(cur.values())
    if n == 0 or m == 0:
        return {
            DriftMethod.JENSEN_SHANNON: _no_data(DriftMethod.JENSEN_SHANNON, thresholds.js_distance, n, m),
            DriftMethod.PSI: _no_data(DriftMethod.PSI, thresholds.psi, n, m),
        }
    js = jensen_shannon_distance(ref, cur)
    categories = list(set(ref) | set(cur))
    psi = _psi_from_counts(
        np.asarray([ref.get(c, 0) for c in categories], dtype=np.float64),
        np.asarray([cur.get(c, 0) for c in categories], dtype=np.float64),
    )
    return {
        DriftMethod.JENSEN_SHANNON: DriftResult(
            DriftMethod.JENSEN_SHANNON,
            DriftStatus.DRIFTED if js > thresholds.js_distance else DriftStatus.OK,
            js,
            thresholds.js_distance,
            n,
            m,
        ),
        DriftMethod.PSI: DriftResult(
            DriftMethod.PSI, DriftStatus.DRIFTED if psi > thresholds.psi else DriftStatus.OK, psi, thresholds.psi, n, m
        ),
    }


def drift_by_bucket(
    reference: Sequence[Any],
    current: Sequence[tuple[int, Any]],
    *,
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
    categorical: bool = False,
    thresholds: DriftThresholds = DriftThresholds(),
) -> dict[int, dict[DriftMethod, DriftResult]]:
    """Drift of each bucket ``[b, b + bucket_ms)`` of ``current`` (``(time_ms, value)`` pairs)
        within ``[start_ms, end_ms)`` against the whole ``reference``; every bucket appears, an empty
        one as ``NO_DATA``. Values are floats (numeric) or any hashable (``categorical``); the range
    must be whole buckets of the epoch grid, as the data-quality buckets are."""
    if bucket_ms <= 0:
        raise DefinitionError(f"a drift bucket must be a positive number of milliseconds, got {bucket_ms!r}")
    if start_ms % bucket_ms or end_ms % bucket_ms or end_ms < start_ms:
        raise DefinitionError(f"drift range [{start_ms}, {end_ms}) must be whole buckets of {bucket_ms} ms")
    buckets: dict[int, list[Any]] = {b: [] for b in range(start_ms, end_ms, bucket_ms)}
    for time_ms, value in current:
        if start_ms <= time_ms < end_ms:
            buckets[time_ms - time_ms % bucket_ms].append(value)
    compare = categorical_drift if categorical else numeric_drift
    return {b: compare(reference, values, thresholds) for b, values in buckets.items()}
