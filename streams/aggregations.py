"""Aggregation functions as a tiny mergeable interface: initialize / add / merge / result.

A *partial* is the state of one aggregation over one tile. The stream engine builds partials per
micro-batch (vectorized, see ``partials_for_groups``), stores them in tiles, and serving merges
the tiles a window covers. Partials are plain JSON values so they can travel on the feature topic.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from featurebus.exceptions import DefinitionError

__all__ = [
    "AggregationFunction",
    "Aggregator",
    "aggregator_for",
    "output_dtype",
    "merge_all",
    "NUMERIC_DTYPES",
    "numeric_column",
    "result_over",
]

NUMERIC_DTYPES = frozenset({"int64", "int32", "float64", "float32"})

Partial = Any


class AggregationFunction(enum.StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"


class Aggregator(Protocol):
    function: AggregationFunction

    def initialize(self) -> Partial: ...

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int) -> list[Partial]:
        """The partial of every group at once (vectorized over a whole micro-batch).

        ``values`` is numeric with nulls already replaced by 0, ``valid`` marks non-null values,
        ``group_ids`` numbers each row's group in ``[0, n_groups)``.
        """
        ...

    def merge(self, a: Partial, b: Partial) -> Partial: ...

    def merge_many(self, partials: Sequence[Partial]) -> Partial:
        """All of ``partials`` merged (the serving hot path: one call per window, not per tile)."""
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

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int) -> list[int]:
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

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray,
                    n_groups: int) -> list[int | float | None]:
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

    def from_groups(self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray,
                    n_groups: int) -> list[list[float]]:
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


def numeric_column(column: Any, input_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values with nulls as 0, valid mask)`` of a column; integers stay exact int64.

    Nulls are skipped by every aggregate, as SQL skips them (and as the offline join does).
    """
    series = pd.Series(column)
    valid = series.notna().to_numpy()
    if input_dtype in ("int64", "int32"):
        return series.to_numpy(dtype=np.int64, na_value=0), valid
    if input_dtype in ("float64", "float32"):
        return series.to_numpy(dtype=np.float64, na_value=0.0), valid
    return np.zeros(len(series), dtype=np.int64), valid  # non-numeric: only counted


def aggregator_for(function: str, input_dtype: str) -> Aggregator:
    """The aggregator for ``function`` over a column of ``input_dtype``; errors name the fix."""
    try:
        fn = AggregationFunction(function)
    except ValueError:
        known = ", ".join(f.value for f in AggregationFunction)
        raise DefinitionError(f"unknown aggregation function {function!r}; use one of: {known}") from None
    if fn is AggregationFunction.COUNT:
        return _Count()
    if input_dtype not in NUMERIC_DTYPES:
        raise DefinitionError(
            f"aggregation {fn.value!r} needs a numeric input column (int64, int32, float64, "
            f"float32), got {input_dtype!r}; use 'count' or change the column's type"
        )
    if fn is AggregationFunction.SUM:
        return _Sum()
    return _Mean()


def output_dtype(function: str, input_dtype: str) -> str:
    fn = AggregationFunction(function)
    if fn is AggregationFunction.COUNT:
        return "int64"
    if fn is AggregationFunction.SUM:
        return "int64" if input_dtype.startswith("int") else "float64"
    return "float64"


def merge_all(aggregator: Aggregator, partials: Iterable[Partial]) -> Partial:
    state = aggregator.initialize()
    for partial in partials:
        state = aggregator.merge(state, partial)
    return state


def result_over(aggregator: Aggregator, partials: Sequence[Partial]) -> Any:
    return aggregator.result(merge_all(aggregator, partials))
