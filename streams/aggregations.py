"""Aggregation functions as a tiny mergeable interface: initialize / from_groups / merge / result.

A *partial* is the state of one aggregation over one tile. The stream engine builds partials per
micro-batch (vectorized: ``from_groups`` computes every group of a batch at once), stores them in
tiles, and serving merges the tiles a window covers. The offline training set calls the very same
``from_groups`` / ``merge`` / ``result`` on the events of each spine row's window, which is how
online and offline agree by construction. Partials are plain JSON values so they can travel on
the feature topic; sketch partials carry their own format tag (see ``streams.sketches``).

This module holds the exact numeric aggregators (count, sum, mean, min, max, variance family)
and the dispatch; order-dependent ones live in ``streams.ordered``, sketches in
``streams.sketches``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from featurebus.exceptions import DefinitionError
from featurebus.schemas.specs import AggregationSpec
from featurebus.streams.ordered import OrderedAggregator
from featurebus.streams.sketches import (
    HLL_PRECISION_RANGE,
    PERCENTILE_PRECISION_RANGE,
    ApproxCountDistinct,
    ApproxPercentile,
)

__all__ = [
    "AggregationFunction",
    "Aggregator",
    "FUNCTION_ALIASES",
    "MAX_N",
    "NUMERIC_DTYPES",
    "aggregator_for",
    "aggregator_of",
    "input_column",
    "merge_all",
    "output_dtype",
    "result_over",
]

NUMERIC_DTYPES = frozenset({"int64", "int32", "float64", "float32"})
_ORDERABLE_DTYPES = NUMERIC_DTYPES | {"string"}
_SCALAR_DTYPES = _ORDERABLE_DTYPES | {"bool"}
MAX_N = 1000  # first/last(n): the arrays travel whole in every tile and response

Partial = Any


class AggregationFunction(enum.StrEnum):
    """The functions a spec can name (``AggregationSpec.function``)."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    FIRST_N = "first_n"
    LAST_N = "last_n"
    FIRST_DISTINCT_N = "first_distinct_n"
    LAST_DISTINCT_N = "last_distinct_n"
    VAR_POP = "var_pop"
    VAR_SAMP = "var_samp"
    STDDEV_POP = "stddev_pop"
    STDDEV_SAMP = "stddev_samp"
    APPROX_COUNT_DISTINCT = "approx_count_distinct"
    APPROX_PERCENTILE = "approx_percentile"


# Tecton's extra spellings of the same functions (the feature name keeps the spelling used).
FUNCTION_ALIASES = {"stddev": AggregationFunction.STDDEV_SAMP, "variance": AggregationFunction.VAR_SAMP}

_WITH_N = frozenset({AggregationFunction.FIRST_N, AggregationFunction.LAST_N, AggregationFunction.FIRST_DISTINCT_N,
                     AggregationFunction.LAST_DISTINCT_N})
_NEEDS_NUMERIC = frozenset({AggregationFunction.SUM, AggregationFunction.MEAN, AggregationFunction.VAR_POP,
                            AggregationFunction.VAR_SAMP, AggregationFunction.STDDEV_POP,
                            AggregationFunction.STDDEV_SAMP, AggregationFunction.APPROX_PERCENTILE})


class Aggregator(Protocol):
    function: AggregationFunction

    def initialize(self) -> Partial: ...

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int,
                    ts_ms: np.ndarray) -> list[Partial]:
        """The partial of every group at once (vectorized over a whole micro-batch).

        ``values`` come from ``input_column`` (nulls replaced by a placeholder), ``valid`` marks
        non-null values, ``group_ids`` numbers each row's group in ``[0, n_groups)``, ``ts_ms``
        are event times. Rows are in arrival order (order-dependent functions break event-time
        ties by it).
        """
        ...

    def merge(self, a: Partial, b: Partial) -> Partial:
        """``a`` then ``b``: where order matters, ``b`` arrived later."""
        ...

    def merge_many(self, partials: Sequence[Partial]) -> Partial:
        """All of ``partials`` merged, in arrival order (the serving hot path: one call per window)."""
        ...

    def result(self, partial: Partial) -> Any: ...


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


class _Count:
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


class _Sum:
    function = AggregationFunction.SUM

    def initialize(self) -> None:
        return None  # null, not 0: a window without events has no sum (DESIGN.md §4)

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


class _Mean:
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


class _Extreme:
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


class _Variance:
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


def input_column(column: Any, input_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values with nulls replaced, valid mask)`` of a column, normalised by its declared type.

    Integers stay exact int64 (nulls 0), floats float64 (nulls 0.0), strings an object array of
    ``str`` (nulls ""), booleans bool (nulls False). Nulls are skipped by every aggregate, as SQL
    skips them (and as the offline join does); the online and offline paths both come through
    here, so a value has one representation (which the sketches hash).
    """
    if input_dtype in ("int64", "int32") and isinstance(column, list):
        series = pd.Series(column, dtype="Int64")  # a plain list with None would go through float64
    else:
        series = pd.Series(column)
    valid = series.notna().to_numpy()
    if input_dtype in ("int64", "int32"):
        return series.to_numpy(dtype=np.int64, na_value=0), valid
    if input_dtype in ("float64", "float32"):
        return series.to_numpy(dtype=np.float64, na_value=0.0), valid
    if input_dtype == "string":
        values = series.to_numpy(dtype=object, na_value="")
        return values, valid
    if input_dtype == "bool":
        return series.to_numpy(dtype=bool, na_value=False), valid
    return np.zeros(len(series), dtype=np.int64), valid  # other types: only counted


def _resolve(function: str) -> AggregationFunction:
    if function in FUNCTION_ALIASES:
        return FUNCTION_ALIASES[function]
    try:
        return AggregationFunction(function)
    except ValueError:
        known = ", ".join([*(f.value for f in AggregationFunction), *FUNCTION_ALIASES])
        raise DefinitionError(f"unknown aggregation function {function!r}; use one of: {known} (the ones "
                              "with parameters through featurebus.aggregation_functions, e.g. last(3))") from None


def aggregator_for(
    function: str,
    input_dtype: str,
    *,
    n: int | None = None,
    percentile: float | None = None,
    precision: int | None = None,
    include_nulls: bool = False,
) -> Aggregator:
    """The aggregator for ``function`` over a column of ``input_dtype``; errors name the fix.

    ``include_nulls`` (``last`` only) makes a null the latest value instead of skipping it:
    that is how an ``Attribute`` reads the latest row.
    """
    fn = _resolve(function)
    _check_params(fn, n, percentile, precision)
    _check_input(fn, input_dtype)
    if fn is AggregationFunction.COUNT:
        return _Count()
    if fn is AggregationFunction.SUM:
        return _Sum()
    if fn is AggregationFunction.MEAN:
        return _Mean()
    if fn in (AggregationFunction.MIN, AggregationFunction.MAX):
        return _Extreme(fn)
    if fn is AggregationFunction.LAST:
        return OrderedAggregator(fn, n=1, latest=True, distinct=False, scalar=True, include_nulls=include_nulls)
    if fn in _WITH_N:
        assert n is not None  # checked above
        latest = fn in (AggregationFunction.LAST_N, AggregationFunction.LAST_DISTINCT_N)
        distinct = fn in (AggregationFunction.FIRST_DISTINCT_N, AggregationFunction.LAST_DISTINCT_N)
        return OrderedAggregator(fn, n=n, latest=latest, distinct=distinct, scalar=False, include_nulls=False)
    if fn is AggregationFunction.APPROX_COUNT_DISTINCT:
        return ApproxCountDistinct(fn, precision if precision is not None else HLL_PRECISION_RANGE[2])
    if fn is AggregationFunction.APPROX_PERCENTILE:
        assert percentile is not None  # checked above
        return ApproxPercentile(fn, percentile, precision if precision is not None else PERCENTILE_PRECISION_RANGE[2])
    return _Variance(fn)


def aggregator_of(spec: AggregationSpec) -> Aggregator:
    return aggregator_for(spec.function, spec.input_dtype, n=spec.n, percentile=spec.percentile,
                          precision=spec.precision, include_nulls=spec.attribute)


def _check_params(fn: AggregationFunction, n: int | None, percentile: float | None, precision: int | None) -> None:
    if fn in _WITH_N:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise DefinitionError(f"{fn.value} needs an integer n with 1 <= n <= {MAX_N}, got {n!r}; "
                                  f"pass e.g. function=last(5)")
    elif n is not None:
        raise DefinitionError(f"{fn.value!r} takes no n (got {n!r}); use last(n), first(n), "
                              "last_distinct(n) or first_distinct(n)")
    if fn is AggregationFunction.APPROX_PERCENTILE:
        if isinstance(percentile, bool) or not isinstance(percentile, float) or not 0.0 < percentile < 1.0:
            raise DefinitionError(f"approx_percentile needs a float percentile with 0 < percentile < 1, got "
                                  f"{percentile!r}; pass e.g. approx_percentile(percentile=0.95)")
    elif percentile is not None:
        raise DefinitionError(f"{fn.value!r} takes no percentile; use approx_percentile(percentile=...)")
    ranges = {AggregationFunction.APPROX_COUNT_DISTINCT: HLL_PRECISION_RANGE,
              AggregationFunction.APPROX_PERCENTILE: PERCENTILE_PRECISION_RANGE}
    if fn in ranges:
        low, high, default = ranges[fn]
        if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int)
                                      or not low <= precision <= high):
            raise DefinitionError(f"{fn.value} precision must be an integer from {low} to {high}, got "
                                  f"{precision!r}; pass e.g. precision={default} (the default)")
    elif precision is not None:
        raise DefinitionError(f"{fn.value!r} takes no precision; only approx_count_distinct and "
                              "approx_percentile do")


def _check_input(fn: AggregationFunction, input_dtype: str) -> None:
    if fn is AggregationFunction.COUNT:
        return
    if fn in _NEEDS_NUMERIC:
        allowed, kind = NUMERIC_DTYPES, "a numeric input column (int64, int32, float64, float32)"
        fix = "use 'count' or change the column's type"
    elif fn in (AggregationFunction.MIN, AggregationFunction.MAX):
        allowed, kind = _ORDERABLE_DTYPES, "a numeric or string input column"
        fix = "cast the column in the transformation"
    else:
        allowed, kind = _SCALAR_DTYPES, "a numeric, string or bool input column"
        fix = "cast the column in the transformation (e.g. timestamps to epoch milliseconds)"
    if input_dtype not in allowed:
        raise DefinitionError(f"aggregation {fn.value!r} needs {kind}, got {input_dtype!r}; {fix}")


def _scalar_output(input_dtype: str) -> str:
    return {"int32": "int64", "float32": "float64"}.get(input_dtype, input_dtype)


def output_dtype(function: str, input_dtype: str) -> str:
    """The feature's type, as Tecton types it (int sums stay int64, first/last(n) are arrays)."""
    fn = _resolve(function)
    if fn in (AggregationFunction.COUNT, AggregationFunction.APPROX_COUNT_DISTINCT):
        return "int64"
    if fn in (AggregationFunction.SUM, AggregationFunction.MIN, AggregationFunction.MAX, AggregationFunction.LAST):
        return _scalar_output(input_dtype)
    if fn in _WITH_N:
        return f"array<{_scalar_output(input_dtype)}>"
    return "float64"


def merge_all(aggregator: Aggregator, partials: Iterable[Partial]) -> Partial:
    state = aggregator.initialize()
    for partial in partials:
        state = aggregator.merge(state, partial)
    return state


def result_over(aggregator: Aggregator, partials: Sequence[Partial]) -> Any:
    return aggregator.result(merge_all(aggregator, partials))
