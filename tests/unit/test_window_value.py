"""``window_value``: one window's value from its tiles' partials, equal to ``result(merge_many)``.

Serving calls it per window and entity; ``Sum`` and ``Mean`` answer it with one ``fsum`` instead
of merging a double-double first, and the two must never differ (not even in the last bit).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.streams.aggregations import aggregator_for, window_value

FLOATS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15) | st.sampled_from(
    [0.0, -0.0, 1e-300, 0.1, 1e12, -1e12, 3.0000001]
)


def _tiles(function: str, dtype: str, groups: list[list[Any]]) -> list[Any]:
    """One partial per group, as the engine builds tiles (``from_groups``)."""
    aggregator = aggregator_for(function, dtype)
    values = [v for group in groups for v in group]
    group_ids = np.array([i for i, group in enumerate(groups) for _ in group], dtype=np.int64)
    column = np.array(values, dtype=np.float64 if dtype == "float64" else np.int64)
    valid = np.ones(len(values), dtype=bool)
    return aggregator.from_groups(column, valid, group_ids, len(groups), np.zeros(len(values), dtype=np.int64))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(FLOATS, min_size=1, max_size=8), min_size=0, max_size=30), st.sampled_from(["sum", "mean"]))
def test_float_sum_and_mean_equal_the_merged_partials_value(groups: list[list[float]], function: str) -> None:
    aggregator = aggregator_for(function, "float64")
    partials = _tiles(function, "float64", groups) if groups else []
    expected = aggregator.result(aggregator.merge_many(partials)) if partials else None
    assert _same(window_value(aggregator)(partials), expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=6), min_size=1, max_size=20))
def test_integer_sum_and_mean(groups: list[list[int]]) -> None:
    for function in ("sum", "mean", "count", "max", "min"):
        aggregator = aggregator_for(function, "int64")
        partials = _tiles(function, "int64", groups)
        assert _same(window_value(aggregator)(partials), aggregator.result(aggregator.merge_many(partials)))


@given(st.lists(st.one_of(st.none(), FLOATS, st.tuples(FLOATS, st.just(0.0)).map(list)), min_size=1, max_size=12))
def test_sum_over_old_and_new_value_formats_and_nulls(partials: list[Any]) -> None:
    """Value format 1 wrote plain floats; tiles of both formats and empty (null) ones can meet
    in one window after an upgrade."""
    aggregator = aggregator_for("sum", "float64")
    assert _same(window_value(aggregator)(partials), aggregator.result(aggregator.merge_many(partials)))


def test_mean_over_value_format_1_partials() -> None:
    aggregator = aggregator_for("mean", "float64")
    partials = [[0.1, 1], [0.2, 2, 1e-18], [1e12, 3]]
    assert _same(window_value(aggregator)(partials), aggregator.result(aggregator.merge_many(partials)))


def test_an_exact_sum_the_float_sum_gets_wrong() -> None:
    """0.1 + 0.2 + 0.3 summed in floats is 0.6000000000000001; the exact tiles give 0.6."""
    aggregator = aggregator_for("sum", "float64")
    partials = _tiles("sum", "float64", [[0.1], [0.2], [0.3]])
    assert window_value(aggregator)(partials) == 0.6
    mean = aggregator_for("mean", "float64")
    assert window_value(mean)(_tiles("mean", "float64", [[1e16], [1.0], [-1e16]])) == 1.0 / 3


def test_infinite_sums_keep_their_sign() -> None:
    aggregator = aggregator_for("sum", "float64")
    partials = [[math.inf, 0.0], [1.0, 0.0]]
    assert window_value(aggregator)(partials) == math.inf == aggregator.result(aggregator.merge_many(partials))
