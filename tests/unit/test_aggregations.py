"""Every aggregator on its own: batches split anywhere merge to the one-batch answer, merges are
associative (and commutative where order does not matter), exact functions equal the oracle,
sketches stay within their documented error, and parameters are validated."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.exceptions import DefinitionError, StoreFormatError
from featurebus.streams.aggregations import Aggregator, aggregator_for, input_column, output_dtype
from featurebus.streams.sketches import hll_relative_error, percentile_relative_error
from tests.support.oracle import aggregate, matches

# (function, input dtype, params)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("count", "string", {}),
    ("sum", "int64", {}),
    ("sum", "float64", {}),
    ("mean", "float64", {}),
    ("min", "float64", {}),
    ("max", "int64", {}),
    ("min", "string", {}),
    ("max", "string", {}),
    ("last", "string", {}),
    ("last", "float64", {}),
    ("first_n", "int64", {"n": 3}),
    ("last_n", "string", {"n": 2}),
    ("first_distinct_n", "string", {"n": 3}),
    ("last_distinct_n", "int64", {"n": 2}),
    ("last_distinct_n", "bool", {"n": 2}),
    ("var_pop", "float64", {}),
    ("var_samp", "int64", {}),
    ("stddev_pop", "float64", {}),
    ("stddev_samp", "float64", {}),
    ("approx_count_distinct", "string", {"precision": 4}),
    ("approx_count_distinct", "int64", {}),
    ("approx_percentile", "float64", {"percentile": 0.5}),
    ("approx_percentile", "int64", {"percentile": 0.99, "precision": 20}),
]
ORDER_FREE = {
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "var_pop",
    "var_samp",
    "stddev_pop",
    "stddev_samp",
    "approx_count_distinct",
    "approx_percentile",
}
EXACT_PARTIALS = {"count", "min", "max", "approx_count_distinct", "approx_percentile"}


def _value(dtype: str) -> st.SearchStrategy[Any]:
    if dtype == "int64":
        return st.integers(-(2**40), 2**40) | st.integers(-3, 3)
    if dtype == "float64":
        return st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)) | st.integers(-3, 3).map(float)
    if dtype == "bool":
        return st.booleans()
    return st.sampled_from(["a", "b", "c", "", "é", "zz"])


@st.composite
def histories(draw: st.DrawFn, dtype: str) -> tuple[list[Any], list[int]]:
    """Values (None: null) in arrival order with event times on a coarse grid (many ties)."""
    values = draw(st.lists(st.none() | _value(dtype), max_size=40))
    times = draw(st.lists(st.integers(0, 8), min_size=len(values), max_size=len(values)))
    return values, times


def _partials(agg: Aggregator, values: list[Any], times: list[int], dtype: str) -> Any:
    """The partial of ``values`` as one group of one batch, through JSON as on the feature topic."""
    column, valid = input_column(values, dtype)
    ts = np.asarray(times, dtype=np.int64)
    (partial,) = agg.from_groups(column, valid, np.zeros(len(values), dtype=np.int64), 1, ts)
    return orjson.loads(orjson.dumps(partial))


def _same(function: str, a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return matches("mean", a, b)
    return bool(a == b)


def _oracle(function: str, params: dict[str, Any], values: list[Any], times: list[int]) -> Any:
    ordered = [v for _, v in sorted(zip(times, values, strict=True), key=lambda pair: pair[0])]
    return aggregate(function, ordered, n=params.get("n"), percentile=params.get("percentile"))


@pytest.mark.parametrize(("function", "dtype", "params"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_split_batches_merge_to_the_one_batch_answer_and_match_the_oracle(
    function: str, dtype: str, params: dict[str, Any], data: st.DataObject
) -> None:
    agg = aggregator_for(function, dtype, **params)
    values, times = data.draw(histories(dtype))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    pieces = [_partials(agg, values[lo:hi], times[lo:hi], dtype) for lo, hi in itertools.pairwise(bounds)]
    whole = agg.result(_partials(agg, values, times, dtype))
    assert _same(function, agg.result(agg.merge_many(pieces)), whole)
    folded = agg.initialize()
    for piece in pieces:
        folded = agg.merge(folded, piece)
    assert _same(function, agg.result(folded), whole)
    assert matches(function, whole, _oracle(function, params, values, times), params.get("precision"))


@pytest.mark.parametrize(("function", "dtype", "params"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_merge_is_associative_and_commutative_where_order_does_not_matter(
    function: str, dtype: str, params: dict[str, Any], data: st.DataObject
) -> None:
    agg = aggregator_for(function, dtype, **params)
    a, b, c = (_partials(agg, *data.draw(histories(dtype)), dtype) for _ in range(3))
    left, right = agg.merge(agg.merge(a, b), c), agg.merge(a, agg.merge(b, c))
    assert _same(function, agg.result(left), agg.result(right))
    if function in EXACT_PARTIALS:
        assert left == right  # the state itself, not only the answer
    if function in ORDER_FREE:
        assert _same(function, agg.result(agg.merge(a, b)), agg.result(agg.merge(b, a)))


def test_group_ids_are_independent_and_empty_groups_are_empty() -> None:
    values = np.array([5.0, 1.0, 3.0, 7.0])
    valid = np.array([True, True, False, True])
    groups = np.array([2, 0, 0, 2])
    ts = np.array([1, 2, 3, 1])
    for function, params in [
        ("min", {}),
        ("last", {}),
        ("last_n", {"n": 5}),
        ("var_pop", {}),
        ("approx_count_distinct", {}),
        ("approx_percentile", {"percentile": 0.5}),
    ]:
        agg = aggregator_for(function, "float64", **params)
        partials = agg.from_groups(values, valid, groups, 3, ts)
        assert agg.result(partials[1]) is None  # group 1 has no rows
        assert agg.result(agg.initialize()) is None
    assert (
        aggregator_for("last", "float64").result(
            aggregator_for("last", "float64").from_groups(values, valid, groups, 3, ts)[2]
        )
        == 7.0
    )  # tie at 1: later row
    assert aggregator_for("count", "float64").result(aggregator_for("count", "float64").initialize()) == 0


def test_ties_in_event_time_go_to_the_later_arrival() -> None:
    last, first = aggregator_for("last", "string"), aggregator_for("first_n", "string", n=1)
    one = np.zeros(3, dtype=np.int64)
    values, valid = input_column(["x", "y", "z"], "string")
    ts = np.array([10, 10, 9])
    assert last.result(last.from_groups(values, valid, one, 1, ts)[0]) == "y"
    assert first.result(first.from_groups(values, valid, one, 1, ts)[0]) == ["z"]
    # Across batches: the later batch wins a tie for last, the earlier keeps first.
    a, b = [[10, "old"]], [[10, "new"]]
    assert last.result(last.merge(a, b)) == "new" and first.result(first.merge(a, b)) == ["old"]


def test_distinct_keeps_each_value_at_its_latest_or_earliest_occurrence() -> None:
    values = ["a", "b", "a", "c", "b"]
    column, valid = input_column(values, "string")
    one, ts = np.zeros(5, dtype=np.int64), np.arange(5)
    last_d = aggregator_for("last_distinct_n", "string", n=2)
    first_d = aggregator_for("first_distinct_n", "string", n=2)
    assert last_d.result(last_d.from_groups(column, valid, one, 1, ts)[0]) == ["c", "b"]
    assert first_d.result(first_d.from_groups(column, valid, one, 1, ts)[0]) == ["a", "b"]


def test_attribute_last_keeps_a_null_latest_value() -> None:
    agg = aggregator_for("last", "float64", include_nulls=True)
    values, valid = input_column([1.0, None], "float64")
    (partial,) = agg.from_groups(values, valid, np.zeros(2, dtype=np.int64), 1, np.array([1, 2]))
    assert partial == [[2, None]] and agg.result(partial) is None
    assert (
        aggregator_for("last", "float64").result(
            aggregator_for("last", "float64").from_groups(
                values, valid, np.zeros(2, dtype=np.int64), 1, np.array([1, 2])
            )[0]
        )
        == 1.0
    )


def test_integers_stay_exact() -> None:
    big = 2**62 + 1
    values, valid = input_column([big, None, big - 2], "int64")
    one, ts = np.zeros(3, dtype=np.int64), np.array([1, 2, 3])
    assert aggregator_for("max", "int64").from_groups(values, valid, one, 1, ts) == [big]
    assert aggregator_for("min", "int64").from_groups(values, valid, one, 1, ts) == [big - 2]
    assert aggregator_for("first_n", "int64", n=2).result(
        aggregator_for("first_n", "int64", n=2).from_groups(values, valid, one, 1, ts)[0]
    ) == [big, big - 2]


def test_variance_is_numerically_stable_with_a_large_offset() -> None:
    # Sum-of-squares would lose every digit here; (count, mean, M2) with Chan's merge does not.
    rng = random.Random(7)
    xs = [1e9 + rng.random() for _ in range(1000)]
    agg = aggregator_for("var_samp", "float64")
    pieces = [_partials(agg, xs[i : i + 37], [0] * len(xs[i : i + 37]), "float64") for i in range(0, len(xs), 37)]
    want = aggregate("var_samp", xs)
    assert math.isclose(agg.result(agg.merge_many(pieces)), want, rel_tol=1e-6)
    folded = agg.initialize()
    for piece in pieces:
        folded = agg.merge(folded, piece)
    assert math.isclose(agg.result(folded), want, rel_tol=1e-6)


@pytest.mark.parametrize("precision", [4, 8, 12, 16])
def test_approx_count_distinct_is_within_four_standard_errors(precision: int) -> None:
    agg = aggregator_for("approx_count_distinct", "string", precision=precision)
    rng = random.Random(precision)
    for n in (1, 10, 200, 5_000, 60_000):
        values = [f"user-{rng.getrandbits(64)}" for _ in range(n)]
        values += values[: n // 2]  # duplicates do not count
        column, valid = input_column(values, "string")
        groups = np.array([i % 3 for i in range(len(values))])  # three tiles, then merged
        partials = agg.from_groups(column, valid, groups, 3, np.zeros(len(values), dtype=np.int64))
        estimate = agg.result(agg.merge_many(partials))
        assert abs(estimate - n) <= max(1, 4 * hll_relative_error(precision) * n), (precision, n, estimate)


@pytest.mark.parametrize("precision", [20, 100, 500])
def test_approx_percentile_is_within_its_relative_error(precision: int) -> None:
    rng = np.random.default_rng(precision)
    values = np.concatenate([rng.lognormal(3, 2, 3000), -rng.lognormal(1, 1, 500), np.zeros(50), [1e-9, 1e12]])
    rng.shuffle(values)
    bound = percentile_relative_error(precision)
    for q in (0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999):
        agg = aggregator_for("approx_percentile", "float64", percentile=q, precision=precision)
        groups = np.arange(len(values)) % 7
        partials = agg.from_groups(
            values, np.ones(len(values), dtype=bool), groups, 7, np.zeros(len(values), dtype=np.int64)
        )
        got = agg.result(agg.merge_many(partials))
        want = float(np.sort(values)[math.floor(q * (len(values) - 1))])
        assert abs(got - want) <= bound * abs(want) * (1 + 1e-9), (q, got, want)


def test_sketch_partials_are_tagged_and_refuse_another_format() -> None:
    agg = aggregator_for("approx_count_distinct", "int64", precision=8)
    values, valid = input_column([1, 2, 3], "int64")
    (partial,) = agg.from_groups(values, valid, np.zeros(3, dtype=np.int64), 1, np.zeros(3, dtype=np.int64))
    assert partial[:4] == ["hll", 1, 8, "sparse"]
    other = aggregator_for("approx_count_distinct", "int64", precision=9)
    with pytest.raises(StoreFormatError, match="re-apply"):
        other.result(partial)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: aggregator_for("last_n", "int64", n=0), "1 <= n <= 1000"),
        (lambda: aggregator_for("first_distinct_n", "int64", n=2.5), "integer n"),
        (lambda: aggregator_for("approx_percentile", "float64", percentile=1.0), "0 < percentile < 1"),
        (lambda: aggregator_for("approx_percentile", "float64", percentile=1), "float percentile"),
        (lambda: aggregator_for("approx_percentile", "float64", percentile=0.5, precision=10), "from 20 to 500"),
        (lambda: aggregator_for("approx_count_distinct", "string", precision=17), "from 4 to 16"),
        (lambda: aggregator_for("sum", "int64", n=3), "takes no n"),
        (lambda: aggregator_for("max", "bool"), "numeric or string"),
        (lambda: aggregator_for("stddev", "string"), "numeric input column"),
        (lambda: aggregator_for("last", "timestamp"), "epoch milliseconds"),
        (lambda: aggregator_for("median", "int64"), "unknown aggregation function"),
    ],
)
def test_invalid_parameters_say_what_to_pass(call: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        call()


def test_output_types_follow_tecton() -> None:
    assert output_dtype("count", "string") == "int64"
    assert output_dtype("max", "int32") == "int64" and output_dtype("min", "string") == "string"
    assert output_dtype("last_n", "int64") == "array<int64>"
    assert output_dtype("first_distinct_n", "string") == "array<string>"
    assert output_dtype("stddev", "int64") == "float64" and output_dtype("variance", "int64") == "float64"
    assert output_dtype("approx_count_distinct", "string") == "int64"
    assert output_dtype("approx_percentile", "int64") == "float64"


@given(
    st.lists(st.none() | st.floats(allow_nan=False, width=64) | st.integers(-(2**40), 2**40), max_size=30),
    st.sampled_from(["float64", "float32"]),
)
def test_numeric_series_normalise_like_lists(values: list[Any], dtype: str) -> None:
    """A float column arriving as a numpy-backed Series (the stream engine's usual input, with its
    own fast path) normalises exactly as the same values as a plain list."""
    series = pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    fast_values, fast_valid = input_column(series, dtype)
    slow_values, slow_valid = input_column([None if v is None else float(v) for v in values], dtype)
    assert fast_values.dtype == slow_values.dtype == np.float64
    assert np.array_equal(fast_valid, slow_valid) and np.array_equal(fast_values, slow_values)
    if all(type(v) is int for v in values):
        ints, ints_valid = input_column(pd.Series(values, dtype="int64"), dtype)
        assert ints_valid.all() and ints.tolist() == [float(v) for v in values]
