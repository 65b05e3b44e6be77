"""The exact numeric aggregators: count, sum, mean, min, max and the variance family.

Each computes every group of a micro-batch at once with numpy (no per-event Python); integers
stay int64 end to end, float sums are exact double-doubles (``streams.exact_sum``). See ``streams.aggregations`` for the interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from featurebus.streams.exact_sum import DoubleDouble, dd_add, dd_sum, dd_value, group_sums, two_sum
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

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[int]:
        counts: list[int] = _counts(valid, group_ids, n_groups).tolist()
        return counts

    def merge(self, a: int, b: int) -> int:
        return a + b

    def merge_many(self, partials: Sequence[int]) -> int:
        return sum(partials)

    def result(self, partial: int) -> int:
        return partial


def _dd(partial: Any) -> DoubleDouble:
    """A float sum partial as a double-double: ``[hi, lo]`` since value format 2, a plain float before."""
    if isinstance(partial, list):
        return partial[0], partial[1]
    return float(partial), 0.0


class Sum:
    """Integer sums are int64 partials (exact). Float sums are ``[hi, lo]`` double-doubles holding
    the exact sum of the tile's values (``streams.exact_sum``), so merging tiles loses nothing:
    a window's sum is the exact sum of its values, correctly rounded once."""

    function = AggregationFunction.SUM

    def initialize(self) -> None:
        return None  # null, not 0: a window without events has no sum (docs/design.md §4)

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[Any]:
        counts = _counts(valid, group_ids, n_groups).tolist()
        if values.dtype.kind in "iu":
            sums = _sums(values, group_ids, n_groups).tolist()
            return [total if count else None for total, count in zip(sums, counts, strict=True)]
        hi, lo = group_sums(values, group_ids, n_groups)
        return [
            [high, low] if count else None for high, low, count in zip(hi.tolist(), lo.tolist(), counts, strict=True)
        ]

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        if type(a) is list and type(b) is list:  # the usual float case, inlined (this runs per tile)
            a0, a1 = a
            b0, b1 = b
            s = a0 + b0
            bb = s - a0
            e = (a0 - (s - bb)) + (b0 - bb) + a1 + b1
            hi = s + e
            return [hi, e - (hi - s)]
        if type(a) is int and type(b) is int:
            return a + b
        return list(dd_add(_dd(a), _dd(b)))

    def merge_many(self, partials: Sequence[Any]) -> Any:
        present = [p for p in partials if p is not None]
        if not present:
            return None
        if all(type(p) is int for p in present):
            return sum(present)
        return list(dd_sum(map(_dd, present)))

    def result(self, partial: Any) -> int | float | None:
        if partial is None or type(partial) is int:
            return partial
        return dd_value(_dd(partial))

    def value_of(self, partials: Sequence[Any]) -> int | float | None:
        """``result(merge_many(partials))``, bit for bit, without building the merged partial."""
        present = [p for p in partials if p is not None]
        if not present:
            return None
        if type(present[0]) is list:
            try:
                return _dd_sum_value(list(chain.from_iterable(present)))
            except TypeError:  # value format 1's plain floats among them: the general path
                pass
        return self.result(self.merge_many(present))


def _dd_sum_value(flat: list[float]) -> float:
    """``dd_value(dd_sum(pairs))`` of the pairs' flattened components, as the merged partial's
    ``result`` rounds it (``hi + lo``; the same value serving gave before this shortcut)."""
    hi = math.fsum(flat)
    if not math.isfinite(hi):
        return hi
    flat.append(-hi)
    return hi + math.fsum(flat)


_SUM_PARTS = itemgetter(0, 2)  # a Mean partial's double-double sum
_COUNT = itemgetter(1)


class Mean:
    """Partial is ``[sum hi, count, sum lo]`` (a double-double sum, as ``Sum``'s) so that means of
    tiles merge exactly; value format 1 wrote ``[sum, count]``, read with ``lo = 0``."""

    function = AggregationFunction.MEAN

    def initialize(self) -> list[float]:
        return [0.0, 0, 0.0]

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[list[float]]:
        hi, lo = group_sums(values, group_ids, n_groups)
        counts = _counts(valid, group_ids, n_groups).tolist()
        return [[high, count, low] for high, count, low in zip(hi.tolist(), counts, lo.tolist(), strict=True)]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        hi, lo = dd_add((a[0], a[2] if len(a) > 2 else 0.0), (b[0], b[2] if len(b) > 2 else 0.0))
        return [hi, a[1] + b[1], lo]

    def merge_many(self, partials: Sequence[list[float]]) -> list[float]:
        hi, lo = dd_sum((p[0], p[2] if len(p) > 2 else 0.0) for p in partials)
        return [hi, sum(p[1] for p in partials), lo]

    def result(self, partial: list[float]) -> float | None:
        count = partial[1]
        if not count:
            return None
        total = partial[0] + (partial[2] if len(partial) > 2 else 0.0)
        mean = total / count
        return mean if math.isfinite(mean) else None

    def value_of(self, partials: Sequence[list[float]]) -> float | None:
        """``result(merge_many(partials))``, bit for bit, without building the merged partial."""
        try:
            total = _dd_sum_value(list(chain.from_iterable(map(_SUM_PARTS, partials))))
        except IndexError:  # value format 1's ``[sum, count]``: the general path
            return self.result(self.merge_many(partials))
        count = sum(map(_COUNT, partials))
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

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[Any]:
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
    """var_pop / var_samp / stddev_pop / stddev_samp. The partial is ``[count, mean hi, M2, mean
    lo]`` (M2: sum of squared deviations from the mean; value format 1 wrote ``[count, mean, M2]``,
    read with ``lo = 0``), merged with Chan et al.'s pairwise formula.

    On values like 1e9 +- 0.003 a float64 mean rounds by ~1e-7, which is large against the
    deviations: merging two tiles would square that rounding into the spread. So the mean is a
    double-double (exact sum / count, then corrected by the mean of the residuals: the
    "corrected two-pass" algorithm), and merges take the difference of means in double-double.
    """

    def __init__(self, function: AggregationFunction) -> None:
        self.function = function
        self._ddof = 1 if function in (AggregationFunction.VAR_SAMP, AggregationFunction.STDDEV_SAMP) else 0
        self._sqrt = function in (AggregationFunction.STDDEV_POP, AggregationFunction.STDDEV_SAMP)

    def initialize(self) -> list[float]:
        return [0, 0.0, 0.0, 0.0]

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[list[float]]:
        x = values.astype(np.float64)
        counts = _counts(valid, group_ids, n_groups)
        sum_hi, sum_lo = group_sums(x, group_ids, n_groups)  # nulls are 0 already
        per = np.maximum(counts, 1)
        rough = (sum_hi + sum_lo) / per
        residuals = np.where(valid, x - rough[group_ids], 0.0)
        correction = np.bincount(group_ids, weights=residuals, minlength=n_groups) / per
        mean_hi, mean_lo = two_sum(rough, correction)
        deviations = residuals - np.where(valid, correction[group_ids], 0.0)
        m2 = np.bincount(group_ids, weights=deviations * deviations, minlength=n_groups)
        return [
            [c, hi, q, lo]
            for c, hi, q, lo in zip(counts.tolist(), mean_hi.tolist(), m2.tolist(), mean_lo.tolist(), strict=True)
        ]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        na, nb = a[0], b[0]
        if not na:
            return list(b)
        if not nb:
            return list(a)
        n = na + nb
        delta = (b[1] - a[1]) + (_lo(b) - _lo(a))
        hi, lo = dd_add((a[1], _lo(a)), (delta * nb / n, 0.0))
        return [n, hi, a[2] + b[2] + delta * delta * na * nb / n, lo]

    def merge_many(self, partials: Sequence[list[float]]) -> list[float]:
        present = [p for p in partials if p[0]]
        if len(present) <= 2:
            state = self.initialize()
            for p in present:
                state = self.merge(state, p)
            return state
        # The k-way form of Chan's formula, relative to a pivot mean so that the differences of
        # nearby means are exact: M2 = sum M2_i + sum n_i (d_i - d)^2 with d_i = mean_i - pivot.
        pivot = (present[0][1], _lo(present[0]))
        counts = np.array([p[0] for p in present], dtype=np.float64)
        d = np.array([(p[1] - pivot[0]) + (_lo(p) - pivot[1]) for p in present])
        m2 = math.fsum(p[2] for p in present)
        n = int(sum(int(p[0]) for p in present))
        shift = float(np.dot(counts, d) / n)
        hi, lo = dd_add(pivot, (shift, 0.0))
        return [n, hi, m2 + float(np.dot(counts, (d - shift) ** 2)), lo]

    def result(self, partial: list[float]) -> float | None:
        n, m2 = partial[0], partial[2]
        if n <= self._ddof:
            return None  # no spread from one value for a sample variance (SQL's NULL)
        variance = max(m2, 0.0) / (n - self._ddof)
        value = math.sqrt(variance) if self._sqrt else variance
        return value if math.isfinite(value) else None


def _lo(partial: list[float]) -> float:
    """The low part of a variance partial's double-double mean (0 in value format 1)."""
    return partial[3] if len(partial) > 3 else 0.0
