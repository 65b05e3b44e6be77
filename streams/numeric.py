"""The exact numeric aggregators: count, sum, mean, min, max and the variance family.

Each computes every group of a micro-batch at once with numpy (no per-event Python); integers
stay int64 end to end. See ``streams.aggregations`` for the interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurebus.streams.functions import AggregationFunction

__all__ = ["Count", "Extreme", "Mean", "Sum", "Variance"]


def _counts(valid: np.ndarray, group_ids: np.ndarray, n_groups: int) -> np.ndarray:
    counts: np.ndarray = np.bincount(group_ids, weights=valid, minlength=n_groups).astype(np.int64)
    return counts


def _sums(values: np.ndarray, group_ids: np.ndarray, n_groups: int) -> np.ndarray:
    if values.dtype.kind in "iu":  # exact integer sums: never through float64 weights
        sums = np.zeros(n_groups, dtype=np.int64)
        np.add.at(sums, group_ids, values)
        return sums
    result: np.ndarray = np.bincount(group_ids, weights=values, minlength=n_groups)
    return result


class Count:
    function = AggregationFunction.COUNT

    def initialize(self) -> int:
        return 0

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[int]:
        counts: list[int] = _counts(valid, group_ids, n_groups).tolist()
        return counts

    def merge(self, a: int, b: int) -> int:
        return a + b

    def merge_many(self, partials: Sequence[int]) -> int:
        return sum(partials)

    def result(self, partial: int) -> int:
        return partial


class Sum:
    function = AggregationFunction.SUM

    def initialize(self) -> None:
        return None  # null, not 0: a window without events has no sum (docs/design.md §4)

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[int | float | None]:
        counts = _counts(valid, group_ids, n_groups).tolist()
        sums = _sums(values, group_ids, n_groups).tolist()
        return [total if count else None for total, count in zip(sums, counts, strict=True)]

    def merge(self, a: int | float | None, b: int | float | None) -> int | float | None:
        if a is None:
            return b
        if b is None:
            return a
        return a + b

    def merge_many(self, partials: Sequence[int | float | None]) -> int | float | None:
        present = [p for p in partials if p is not None]
        return sum(present) if present else None

    def result(self, partial: int | float | None) -> int | float | None:
        return partial


class Mean:
    """Partial is ``[sum, count]`` so that means of tiles merge exactly."""

    function = AggregationFunction.MEAN

    def initialize(self) -> list[float]:
        return [0.0, 0]

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[list[float]]:
        sums = _sums(values.astype(np.float64), group_ids, n_groups).tolist()
        counts = _counts(valid, group_ids, n_groups).tolist()
        return [[total, count] for total, count in zip(sums, counts, strict=True)]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def merge_many(self, partials: Sequence[list[float]]) -> list[float]:
        return [sum(p[0] for p in partials), sum(p[1] for p in partials)]

    def result(self, partial: list[float]) -> float | None:
        total, count = partial
        if not count:
            return None
        mean = total / count
        return mean if math.isfinite(mean) else None


class Extreme:
    """min or max; the partial is the extreme value itself (null: no value yet). Exact for
    integers (int64 all the way) and strings (code-point order, as SQL's binary collation)."""

    def __init__(self, function: AggregationFunction) -> None:
        self.function = function
        self._max = function is AggregationFunction.MAX

    def initialize(self) -> None:
        return None

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[Any]:
        out: list[Any] = [None] * n_groups
        if not valid.any():
            return out
        rows = np.flatnonzero(valid)
        if values.dtype == object:  # strings: numpy cannot sort objects with lexsort
            grouped = pd.Series(values[rows]).groupby(group_ids[rows], sort=False)
            extremes = grouped.max() if self._max else grouped.min()
            for group, value in zip(extremes.index.tolist(), extremes.tolist(), strict=True):
                out[group] = value
            return out
        order = rows[np.lexsort((values[rows], group_ids[rows]))]  # by group, then value
        groups = group_ids[order]
        picks = np.flatnonzero(np.diff(groups, append=-1)) if self._max else np.flatnonzero(np.diff(groups, prepend=-1))
        for group, value in zip(groups[picks].tolist(), values[order[picks]].tolist(), strict=True):
            out[group] = value
        return out

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        return max(a, b) if self._max else min(a, b)

    def merge_many(self, partials: Sequence[Any]) -> Any:
        present = [p for p in partials if p is not None]
        if not present:
            return None
        return max(present) if self._max else min(present)

    def result(self, partial: Any) -> Any:
        return partial


class Variance:
    """var_pop / var_samp / stddev_pop / stddev_samp. The partial is ``[count, mean, M2]`` (M2: sum
    of squared deviations from the mean), computed two-pass per batch and merged with Chan et al.'s
    pairwise formula: numerically stable where sum-of-squares would cancel catastrophically."""

    def __init__(self, function: AggregationFunction) -> None:
        self.function = function
        self._ddof = 1 if function in (AggregationFunction.VAR_SAMP, AggregationFunction.STDDEV_SAMP) else 0
        self._sqrt = function in (AggregationFunction.STDDEV_POP, AggregationFunction.STDDEV_SAMP)

    def initialize(self) -> list[float]:
        return [0, 0.0, 0.0]

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[list[float]]:
        x = values.astype(np.float64)
        counts = _counts(valid, group_ids, n_groups)
        sums = np.bincount(group_ids, weights=x, minlength=n_groups)  # nulls are 0 already
        means = sums / np.maximum(counts, 1)
        deviations = np.where(valid, x - means[group_ids], 0.0)
        m2 = np.bincount(group_ids, weights=deviations * deviations, minlength=n_groups)
        return [[c, mu, s] for c, mu, s in zip(counts.tolist(), means.tolist(), m2.tolist(), strict=True)]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        na, ma, qa = a
        nb, mb, qb = b
        if not na:
            return list(b)
        if not nb:
            return list(a)
        n = na + nb
        delta = mb - ma
        return [n, ma + delta * nb / n, qa + qb + delta * delta * na * nb / n]

    def merge_many(self, partials: Sequence[list[float]]) -> list[float]:
        present = [p for p in partials if p[0]]
        if len(present) <= 2:
            state = self.initialize()
            for p in present:
                state = self.merge(state, p)
            return state
        # The k-way form of Chan's formula: M2 = sum M2_i + sum n_i (mean_i - mean)^2.
        arr = np.asarray(present, dtype=np.float64)
        counts, means, m2 = arr[:, 0], arr[:, 1], arr[:, 2]
        n = int(sum(int(p[0]) for p in present))
        mean = float(np.dot(counts, means) / n)
        return [n, mean, float(m2.sum() + np.dot(counts, (means - mean) ** 2))]

    def result(self, partial: list[float]) -> float | None:
        n, _, m2 = partial
        if n <= self._ddof:
            return None  # no spread from one value for a sample variance (SQL's NULL)
        variance = max(m2, 0.0) / (n - self._ddof)
        value = math.sqrt(variance) if self._sqrt else variance
        return value if math.isfinite(value) else None
