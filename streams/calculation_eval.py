"""Evaluating a typed Calculation tree (``featurebus.streams.calculation``): per request or per column.

Two evaluators over one tree, tested to agree with each other and with a plain-Python reference:
``row_evaluator`` compiles the tree into nested closures (a few microseconds per request);
``column_evaluator`` runs the same semantics vectorized with numpy over whole training sets.

Semantics (SQL's, as Tecton's DuckDB-backed calculations have them):
- null (``None``; NaN and NaT on input) propagates through arithmetic and comparisons;
- AND / OR / NOT use three-valued logic (``NULL AND FALSE`` is FALSE, ``NULL OR TRUE`` is TRUE);
  numbers used as conditions are true when non-zero;
- COALESCE takes the first non-null argument; CASE the first WHEN whose condition is true, else
  ELSE (or null);
- integer arithmetic wraps at the result type's width; Float32 results are rounded from exact
  Float64 arithmetic; division is Float64 with IEEE results for zero divisors (``x/0`` is
  ``±inf``, ``0/0`` NaN), as Tecton's generated SQL does;
- comparisons between an integer and a float compare as Float64;
- DATEDIFF counts boundaries crossed, as DuckDB's ``date_diff`` (Tecton's offline engine) does:
  units up to a day by flooring microseconds, weeks as whole weeks of day boundaries (toward
  zero), months and longer from the calendar (UTC).

Timestamps are int64 nanoseconds since the epoch (UTC) inside both evaluators.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from featurebus.streams.calculation import (
    Arith,
    Case,
    Coalesce,
    Column,
    Compare,
    DateDiff,
    Literal,
    Logical,
    Node,
    Not,
)

__all__ = ["ColumnValues", "column_evaluator", "column_from_series", "row_evaluator", "series_from_column"]

ColumnValues = tuple[np.ndarray, np.ndarray]  # (values, null mask); null lanes hold a type default
RowFunction = Callable[[Mapping[str, Any]], Any]
ColumnFunction = Callable[[Mapping[str, ColumnValues], int], ColumnValues]

_NUMPY: dict[str, Any] = {
    "int64": np.int64,
    "int32": np.int32,
    "float64": np.float64,
    "float32": np.float32,
    "bool": np.bool_,
    "string": object,
    "timestamp": np.int64,
}
_DEFAULT: dict[str, Any] = {
    "int64": 0,
    "int32": 0,
    "float64": 0.0,
    "float32": 0.0,
    "bool": False,
    "string": "",
    "timestamp": 0,
}
_INTS = ("int64", "int32")
_FLOATS = ("float64", "float32")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _numpy_type(dtype: str) -> Any:
    return _NUMPY.get(dtype, object)  # arrays (and anything not numeric) as Python objects


def _wrap(value: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((value + half) % (1 << bits)) - half


def _float32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _cast_scalar(value: Any, source: str, target: str) -> Any:
    """A non-null value of type ``source`` as type ``target`` (numeric widening for CASE)."""
    if source == target:
        return value
    if target == "float64":
        return float(value)
    if target == "float32":
        return _float32(float(value))
    return value  # int32 -> int64: the same Python int


_MICROS = {
    "microseconds": 1,
    "milliseconds": 1_000,
    "second": 1_000_000,
    "minute": 60_000_000,
    "hour": 3_600_000_000,
    "day": 86_400_000_000,
}
_DAY_US = _MICROS["day"]


def _calendar_diff(part: str, start: tuple[Any, Any], end: tuple[Any, Any]) -> Any:
    """Month-and-longer DATEDIFF from (year, month) pairs (ints or int arrays)."""
    (ys, ms), (ye, me) = start, end
    if part == "month":
        return (ye - ys) * 12 + (me - ms)
    if part == "quarter":
        return (ye - ys) * 4 + ((me - 1) // 3 - (ms - 1) // 3)
    divisor = {"year": 1, "decade": 10, "century": 100, "millennium": 1000}[part]
    return ye // divisor - ys // divisor


def _year_month(ns: int) -> tuple[int, int]:
    moment = np.datetime64(ns // 1000, "us")
    months = int(moment.astype("datetime64[M]").astype(np.int64))
    return 1970 + months // 12, months % 12 + 1


def _datediff_scalar(part: str, start_ns: int, end_ns: int) -> int:
    start_us, end_us = start_ns // 1000, end_ns // 1000
    if part in _MICROS:
        return end_us // _MICROS[part] - start_us // _MICROS[part]
    if part == "week":
        days = end_us // _DAY_US - start_us // _DAY_US
        return days // 7 if days >= 0 else -(-days // 7)
    return int(_calendar_diff(part, _year_month(start_ns), _year_month(end_ns)))


def _divide(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


# -- per request ----------------------------------------------------------------------------------
def row_evaluator(node: Node) -> RowFunction:
    """A function of ``{column: value or None}`` returning the expression's value (None for null)."""
    if isinstance(node, Literal):
        constant = node.value
        return lambda row: constant
    if isinstance(node, Column):
        name = node.name

        def read(row: Mapping[str, Any]) -> Any:
            value = row[name]
            # NaN on input is null, as in the column evaluator (an upstream view's 0/0 included).
            return None if type(value) is float and value != value else value

        return read
    if isinstance(node, Arith):
        return _row_arith(node)
    if isinstance(node, Compare):
        return _row_compare(node)
    if isinstance(node, Logical):
        return _row_logical(node)
    if isinstance(node, Not):
        inner = _row_truth(node.operand)

        def negate(row: Mapping[str, Any]) -> bool | None:
            value = inner(row)
            return None if value is None else not value

        return negate
    if isinstance(node, DateDiff):
        start, end, part = row_evaluator(node.start), row_evaluator(node.end), node.part

        def datediff(row: Mapping[str, Any]) -> int | None:
            a, b = start(row), end(row)
            return None if a is None or b is None else _datediff_scalar(part, a, b)

        return datediff
    if isinstance(node, Coalesce):
        args = [row_evaluator(a) for a in node.args]

        def coalesce(row: Mapping[str, Any]) -> Any:
            for arg in args:
                value = arg(row)
                if value is not None:
                    return value
            return None

        return coalesce
    return _row_case(node)


def _row_truth(node: Node) -> Callable[[Mapping[str, Any]], bool | None]:
    inner = row_evaluator(node)
    if node.dtype == "bool":
        return inner
    return lambda row: None if (v := inner(row)) is None else v != 0


def _row_arith(node: Arith) -> RowFunction:
    left, right, dtype, op = row_evaluator(node.left), row_evaluator(node.right), node.dtype, node.op
    if dtype in _INTS:
        bits = 64 if dtype == "int64" else 32
        combine: Callable[[Any, Any], Any] = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]

        def integer(row: Mapping[str, Any]) -> int | None:
            a, b = left(row), right(row)
            if a is None or b is None:
                return None
            return _wrap(combine(a, b), bits)

        return integer
    combine = _divide if op == "/" else {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
    single = dtype == "float32"

    def floating(row: Mapping[str, Any]) -> float | None:
        a, b = left(row), right(row)
        if a is None or b is None:
            return None
        value = float(combine(float(a), float(b)))
        return _float32(value) if single else value

    return floating


def _row_compare(node: Compare) -> RowFunction:
    left, right, compare = row_evaluator(node.left), row_evaluator(node.right), _COMPARE[node.op]
    as_float = node.left.dtype in _FLOATS or node.right.dtype in _FLOATS

    def run(row: Mapping[str, Any]) -> bool | None:
        a, b = left(row), right(row)
        if a is None or b is None:
            return None
        return bool(compare(float(a), float(b)) if as_float else compare(a, b))

    return run


def _row_logical(node: Logical) -> RowFunction:
    left, right = _row_truth(node.left), _row_truth(node.right)
    if node.op == "AND":

        def conjunction(row: Mapping[str, Any]) -> bool | None:
            a, b = left(row), right(row)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True

        return conjunction

    def disjunction(row: Mapping[str, Any]) -> bool | None:
        a, b = left(row), right(row)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False

    return disjunction


def _row_case(node: Case) -> RowFunction:
    target = node.dtype

    def branch(result: Node) -> RowFunction:
        inner, source = row_evaluator(result), result.dtype
        if source == target:
            return inner
        return lambda row: None if (v := inner(row)) is None else _cast_scalar(v, source, target)

    whens = [(_row_truth(cond), branch(result)) for cond, result in node.whens]
    otherwise = branch(node.otherwise) if node.otherwise is not None else None

    def run(row: Mapping[str, Any]) -> Any:
        for condition, result in whens:
            if condition(row):
                return result(row)
        return otherwise(row) if otherwise is not None else None

    return run


# -- over columns -----------------------------------------------------------------------------------
def column_evaluator(node: Node) -> ColumnFunction:
    """A function of ``({column: (values, nulls)}, rows)`` returning ``(values, nulls)``."""

    def run(columns: Mapping[str, ColumnValues], rows: int) -> ColumnValues:
        with np.errstate(all="ignore"):  # null lanes hold defaults; IEEE results are intended
            return _columns(node, columns, rows)

    return run


def _columns(node: Node, columns: Mapping[str, ColumnValues], rows: int) -> ColumnValues:
    if isinstance(node, Literal):
        return np.full(rows, node.value, dtype=_numpy_type(node.dtype)), np.zeros(rows, dtype=bool)
    if isinstance(node, Column):
        return columns[node.name]
    if isinstance(node, Arith):
        (a, a_null), (b, b_null) = _columns(node.left, columns, rows), _columns(node.right, columns, rows)
        if node.dtype in _INTS:
            combined = _ARRAY_OPS[node.op](a.astype(np.int64), b.astype(np.int64))
        else:
            combined = _ARRAY_OPS[node.op](a.astype(np.float64), b.astype(np.float64))
        return combined.astype(_numpy_type(node.dtype)), a_null | b_null
    if isinstance(node, Compare):
        (a, a_null), (b, b_null) = _columns(node.left, columns, rows), _columns(node.right, columns, rows)
        if node.left.dtype in _FLOATS or node.right.dtype in _FLOATS:
            a, b = a.astype(np.float64), b.astype(np.float64)
        return np.asarray(_COMPARE[node.op](a, b), dtype=bool), a_null | b_null
    if isinstance(node, Logical):
        a_true, a_false = _truth(node.left, columns, rows)
        b_true, b_false = _truth(node.right, columns, rows)
        if node.op == "AND":
            true, false = a_true & b_true, a_false | b_false
        else:
            true, false = a_true | b_true, a_false & b_false
        return true, ~(true | false)
    if isinstance(node, Not):
        true, false = _truth(node.operand, columns, rows)
        return false, ~(true | false)
    if isinstance(node, DateDiff):
        (a, a_null), (b, b_null) = _columns(node.start, columns, rows), _columns(node.end, columns, rows)
        return _datediff_columns(node.part, a, b), a_null | b_null
    if isinstance(node, Coalesce):
        values, nulls = _columns(node.args[0], columns, rows)
        values, nulls = values.copy(), nulls.copy()
        for arg in node.args[1:]:
            arg_values, arg_nulls = _columns(arg, columns, rows)
            take = nulls & ~arg_nulls
            values[take] = arg_values[take]
            nulls &= arg_nulls
        return values, nulls
    return _case_columns(node, columns, rows)


def _datediff_columns(part: str, start_ns: np.ndarray, end_ns: np.ndarray) -> np.ndarray:
    start_us, end_us = np.floor_divide(start_ns, 1000), np.floor_divide(end_ns, 1000)
    if part in _MICROS:
        result: np.ndarray = end_us // _MICROS[part] - start_us // _MICROS[part]
        return result
    if part == "week":
        days = end_us // _DAY_US - start_us // _DAY_US
        weeks: np.ndarray = np.sign(days) * (np.abs(days) // 7)
        return weeks

    def year_month(us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        months = us.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
        return 1970 + months // 12, months % 12 + 1

    calendar: np.ndarray = _calendar_diff(part, year_month(start_us), year_month(end_us))
    return calendar.astype(np.int64)


_ARRAY_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}


def _truth(node: Node, columns: Mapping[str, ColumnValues], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(definitely true, definitely false) per row."""
    values, nulls = _columns(node, columns, rows)
    truthy = values.astype(bool) if node.dtype == "bool" else values != 0
    return truthy & ~nulls, ~truthy & ~nulls


def _cast_column(values: np.ndarray, source: str, target: str) -> np.ndarray:
    if source == target:
        return values
    if target == "float32" and source in _INTS:  # via Float64, exactly as the row evaluator rounds
        return values.astype(np.float64).astype(np.float32)
    return values.astype(_numpy_type(target))


def _case_columns(node: Case, columns: Mapping[str, ColumnValues], rows: int) -> ColumnValues:
    values = np.full(rows, _DEFAULT.get(node.dtype), dtype=_numpy_type(node.dtype))
    if node.dtype.startswith("array<"):
        values[:] = [()] * rows
    nulls = np.ones(rows, dtype=bool)
    decided = np.zeros(rows, dtype=bool)
    for condition, result in node.whens:
        true, _ = _truth(condition, columns, rows)
        take = true & ~decided
        result_values, result_nulls = _columns(result, columns, rows)
        values[take] = _cast_column(result_values, result.dtype, node.dtype)[take]
        nulls[take] = result_nulls[take]
        decided |= true
    if node.otherwise is not None:
        take = ~decided
        result_values, result_nulls = _columns(node.otherwise, columns, rows)
        values[take] = _cast_column(result_values, node.otherwise.dtype, node.dtype)[take]
        nulls[take] = result_nulls[take]
    return values, nulls


# -- pandas boundaries ----------------------------------------------------------------------------
def column_from_series(series: pd.Series, dtype: str) -> ColumnValues:
    """A pandas column (NaN, NaT, None and pd.NA are null) as evaluator input of ``dtype``."""
    nulls = series.isna().to_numpy(dtype=bool)
    if dtype == "timestamp":
        times = pd.to_datetime(series, utc=True).dt.as_unit("ns")
        return times.fillna(pd.Timestamp(0, tz="UTC")).astype("int64").to_numpy(), nulls
    numpy_type = _numpy_type(dtype)
    if numpy_type is object:
        values = series.astype(object).to_numpy(copy=True)
        values[nulls] = _DEFAULT.get(dtype, ())
        return values, nulls
    filled = series.astype(object).where(~nulls, _DEFAULT[dtype]) if nulls.any() else series
    return np.asarray(filled.to_numpy(), dtype=numpy_type), nulls


def series_from_column(column: ColumnValues, dtype: str, index: pd.Index | None = None) -> pd.Series:
    """Evaluator output as pandas: nullable Int/boolean arrays, NaN floats, NaT times, None objects."""
    values, nulls = column
    data: Any
    if dtype in _INTS:
        data = pd.arrays.IntegerArray(values.astype(_numpy_type(dtype)), nulls.copy())
    elif dtype == "bool":
        data = pd.arrays.BooleanArray(values.astype(bool), nulls.copy())
    elif dtype in _FLOATS:
        data = np.where(nulls, np.nan, values).astype(_numpy_type(dtype))
    elif dtype == "timestamp":
        data = pd.to_datetime(np.where(nulls, np.datetime64("NaT", "ns"), values.astype("datetime64[ns]")), utc=True)
    else:
        data = values.astype(object).copy()
        data[nulls] = None
    return pd.Series(data, index=index)
