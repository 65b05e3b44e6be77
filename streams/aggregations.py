"""Aggregation functions as a tiny mergeable interface: initialize / from_groups / merge / result.

A *partial* is the state of one aggregation over one tile. The stream engine builds partials per
micro-batch (vectorized: ``from_groups`` computes every group of a batch at once), stores them in
tiles, and serving merges the tiles a window covers. The offline training set calls the very same
``from_groups`` / ``merge`` / ``result`` on the events of each spine row's window, which is how
online and offline agree by construction. Partials are plain JSON values so they can travel on
the feature topic; sketch partials carry their own format tag (see ``streams.sketches``).

This module holds the interface, input normalisation, validation and dispatch; the aggregators
live in ``streams.numeric`` (exact numeric ones), ``streams.ordered`` (order-dependent ones) and
``streams.sketches`` (approximate ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from featurebus.schemas.errors import DefinitionError
from featurebus.schemas.specs import AggregationSpec
from featurebus.streams.functions import FUNCTION_ALIASES, AggregationFunction
from featurebus.streams.numeric import Count, Extreme, Mean, Sum, Variance
from featurebus.streams.ordered import OrderedAggregator
from featurebus.streams.secondary_keys import KeyedAggregator
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
    "group_partials",
    "merge_all",
    "output_dtype",
    "result_over",
    "WindowValue",
    "window_value",
]

NUMERIC_DTYPES = frozenset({"int64", "int32", "float64", "float32"})
_ORDERABLE_DTYPES = NUMERIC_DTYPES | {"string"}
_SCALAR_DTYPES = _ORDERABLE_DTYPES | {"bool"}
MAX_N = 1000  # first/last(n): the arrays travel whole in every tile and response

Partial = Any


_WITH_N = frozenset(
    {
        AggregationFunction.FIRST_N,
        AggregationFunction.LAST_N,
        AggregationFunction.FIRST_DISTINCT_N,
        AggregationFunction.LAST_DISTINCT_N,
    }
)
_NEEDS_NUMERIC = frozenset(
    {
        AggregationFunction.SUM,
        AggregationFunction.MEAN,
        AggregationFunction.VAR_POP,
        AggregationFunction.VAR_SAMP,
        AggregationFunction.STDDEV_POP,
        AggregationFunction.STDDEV_SAMP,
        AggregationFunction.APPROX_PERCENTILE,
    }
)


class Aggregator(Protocol):
    function: AggregationFunction

    def initialize(self) -> Partial: ...

    def from_groups(
        self, values: np.ndarray, valid: np.ndarray, group_ids: np.ndarray, n_groups: int, ts_ms: np.ndarray
    ) -> list[Partial]:
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


WindowValue = Callable[[Sequence[Partial]], Any]


def window_value(aggregator: Aggregator) -> WindowValue:
    """``result(merge_many(partials))`` as one function: the value of one window from its tiles'
    partials (the serving hot path calls it per window and entity). An aggregator that can get
    there without building the merged partial offers ``value_of`` (``Sum`` and ``Mean``: the same
    two ``math.fsum`` calls over the tiles' flattened double-doubles, without the tuples and the
    merged list); it equals the composition bit for bit (tests/unit/test_window_value.py)."""
    direct: WindowValue | None = getattr(aggregator, "value_of", None)
    if direct is not None:
        return direct

    def composed(partials: Sequence[Partial]) -> Any:
        return aggregator.result(aggregator.merge_many(partials))

    return composed


def input_column(column: Any, input_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values with nulls replaced, valid mask)`` of a column, normalised by its declared type.

    Integers stay exact int64 (nulls 0), floats float64 (nulls 0.0), strings an object array of
    ``str`` (nulls ""), booleans bool (nulls False). Nulls are skipped by every aggregate, as SQL
    skips them (and as the offline join does); the online and offline paths both come through
    here, so a value has one representation (which the sketches hash).
    """
    if isinstance(column, pd.Series) and column.dtype.kind in "fi" and input_dtype in ("float64", "float32"):
        # Plain numpy floats (or ints), the usual input: NaN is the only null. The general path's
        # pandas calls cost more than the arithmetic on a micro-batch.
        floats = column.to_numpy(dtype=np.float64)
        valid_floats = ~np.isnan(floats)
        return (floats if valid_floats.all() else np.where(valid_floats, floats, 0.0)), valid_floats
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
        raise DefinitionError(
            f"unknown aggregation function {function!r}; use one of: {known} (the ones "
            "with parameters through featurebus.aggregation_functions, e.g. last(3))"
        ) from None


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
        return Count()
    if fn is AggregationFunction.SUM:
        return Sum()
    if fn is AggregationFunction.MEAN:
        return Mean()
    if fn in (AggregationFunction.MIN, AggregationFunction.MAX):
        return Extreme(fn)
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
    return Variance(fn)


def aggregator_of(spec: AggregationSpec) -> Aggregator:
    aggregator = aggregator_for(
        spec.function,
        spec.input_dtype,
        n=spec.n,
        percentile=spec.percentile,
        precision=spec.precision,
        include_nulls=spec.attribute,
    )
    if spec.secondary_key:
        return KeyedAggregator(aggregator, keys_only=spec.keys_feature)
    return aggregator


def _check_params(fn: AggregationFunction, n: int | None, percentile: float | None, precision: int | None) -> None:
    if fn in _WITH_N:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise DefinitionError(
                f"{fn.value} needs an integer n with 1 <= n <= {MAX_N}, got {n!r}; pass e.g. function=last(5)"
            )
    elif n is not None:
        raise DefinitionError(
            f"{fn.value!r} takes no n (got {n!r}); use last(n), first(n), last_distinct(n) or first_distinct(n)"
        )
    if fn is AggregationFunction.APPROX_PERCENTILE:
        if isinstance(percentile, bool) or not isinstance(percentile, float) or not 0.0 < percentile < 1.0:
            raise DefinitionError(
                f"approx_percentile needs a float percentile with 0 < percentile < 1, got "
                f"{percentile!r}; pass e.g. approx_percentile(percentile=0.95)"
            )
    elif percentile is not None:
        raise DefinitionError(f"{fn.value!r} takes no percentile; use approx_percentile(percentile=...)")
    ranges = {
        AggregationFunction.APPROX_COUNT_DISTINCT: HLL_PRECISION_RANGE,
        AggregationFunction.APPROX_PERCENTILE: PERCENTILE_PRECISION_RANGE,
    }
    if fn in ranges:
        low, high, default = ranges[fn]
        if precision is not None and (
            isinstance(precision, bool) or not isinstance(precision, int) or not low <= precision <= high
        ):
            raise DefinitionError(
                f"{fn.value} precision must be an integer from {low} to {high}, got "
                f"{precision!r}; pass e.g. precision={default} (the default)"
            )
    elif precision is not None:
        raise DefinitionError(f"{fn.value!r} takes no precision; only approx_count_distinct and approx_percentile do")


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


def group_partials(
    aggregator: Aggregator,
    spec: AggregationSpec,
    columns: Callable[[str, str], tuple[np.ndarray, np.ndarray]],
    group_ids: np.ndarray,
    n_groups: int,
    ts_ms: np.ndarray,
) -> list[Partial]:
    """``aggregator.from_groups`` over ``spec``'s input column, ``columns(name, dtype)`` giving a
    column's ``input_column`` form; a secondary-key aggregation also reads its key column. The one
    call the stream engine's tiles and the offline join both make."""
    values, valid = columns(spec.input_column, spec.input_dtype)
    if spec.secondary_key:
        assert isinstance(aggregator, KeyedAggregator)  # aggregator_of(spec)
        keys, keys_valid = columns(spec.secondary_key, spec.secondary_key_dtype)
        return aggregator.from_keyed_groups(values, valid, keys, keys_valid, group_ids, n_groups, ts_ms)
    partials: list[Partial] = aggregator.from_groups(values, valid, group_ids, n_groups, ts_ms)
    return partials


def merge_all(aggregator: Aggregator, partials: Iterable[Partial]) -> Partial:
    state = aggregator.initialize()
    for partial in partials:
        state = aggregator.merge(state, partial)
    return state


def result_over(aggregator: Aggregator, partials: Sequence[Partial]) -> Any:
    return aggregator.result(merge_all(aggregator, partials))
