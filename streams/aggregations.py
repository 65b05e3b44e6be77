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
    "result_over",
]

NUMERIC_DTYPES = frozenset({"int64", "int32", "float64", "float32"})

Partial = Any


class AggregationFunction(str, enum.Enum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"


class Aggregator(Protocol):
    function: AggregationFunction

    def initialize(self) -> Partial: ...

    def from_values(self, values: np.ndarray) -> Partial:
        """The partial of a group of raw input values (one tile's events), vectorized."""
        ...

    def merge(self, a: Partial, b: Partial) -> Partial: ...

    def result(self, partial: Partial) -> Any: ...


def _null_count(values: np.ndarray) -> int:
    return int(pd.isna(values).sum()) if values.dtype.kind in "fOM" else 0


def _drop_nulls(values: np.ndarray) -> np.ndarray:
    """Nulls are skipped, as SQL aggregates skip them (and as the offline join does)."""
    if values.dtype.kind in "fO":
        values = values[~pd.isna(values)]
    return values.astype(np.float64) if values.dtype.kind == "O" else values


class _Count:
    function = AggregationFunction.COUNT

    def initialize(self) -> int:
        return 0

    def from_values(self, values: np.ndarray) -> int:
        return int(len(values) - _null_count(values))

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, partial: int) -> int:
        return partial


class _Sum:
    function = AggregationFunction.SUM

    def __init__(self, integral: bool) -> None:
        self._integral = integral

    def initialize(self) -> None:
        return None  # null, not 0: a window without events has no sum (DESIGN.md §4)

    def from_values(self, values: np.ndarray) -> int | float | None:
        values = _drop_nulls(values)
        if len(values) == 0:
            return None
        total = values.sum()
        return int(total) if self._integral else float(total)

    def merge(self, a: int | float | None, b: int | float | None) -> int | float | None:
        if a is None:
            return b
        if b is None:
            return a
        return a + b

    def result(self, partial: int | float | None) -> int | float | None:
        return partial


class _Mean:
    """Partial is ``[sum, count]`` so that means of tiles merge exactly."""

    function = AggregationFunction.MEAN

    def initialize(self) -> list[float]:
        return [0.0, 0]

    def from_values(self, values: np.ndarray) -> list[float]:
        values = _drop_nulls(values)
        return [float(values.sum()), int(len(values))]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, partial: list[float]) -> float | None:
        total, count = partial
        if not count:
            return None
        mean = total / count
        return mean if math.isfinite(mean) else None


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
        return _Sum(integral=input_dtype.startswith("int"))
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
