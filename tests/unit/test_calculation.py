"""Calculation expressions: parsing, types, errors, and both evaluators against a Python reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.exceptions import DefinitionError
from featurebus.streams.calculation import CalculationError, parse_calculation, referenced_columns
from featurebus.streams.calculation_eval import (
    column_evaluator,
    column_from_series,
    row_evaluator,
    series_from_column,
)

SCHEMA = {
    "r.i": "int64",
    "r.j": "int32",
    "r.f": "float64",
    "r.g": "float32",
    "r.b": "bool",
    "r.s": "string",
    "fv.count": "int64",
    "context.request_timestamp": "timestamp",
    "r.t": "timestamp",
}


def evaluate(expr: str, **row: Any) -> Any:
    full = dict.fromkeys(SCHEMA)
    full.update({f"r.{k}": v for k, v in row.items()})
    return row_evaluator(parse_calculation(expr, SCHEMA))(full)


@pytest.mark.parametrize(
    ("expr", "dtype"),
    [
        ("1", "int64"),
        ("1.5", "float64"),
        (".5e1", "float64"),
        ("2E3", "float64"),
        ("'x'", "string"),
        ("TRUE", "bool"),
        ("r.i + r.j", "int64"),
        ("r.j + r.j", "int32"),
        ("r.j * r.g", "float32"),
        ("r.i + r.g", "float32"),
        ("r.f + r.g", "float64"),
        ("r.i / r.i", "float64"),
        ("-r.j", "int32"),
        ("+r.g", "float32"),
        ("r.s = 'a'", "bool"),
        ("r.i < r.f", "bool"),
        ("NOT r.b", "bool"),
        ("r.b AND r.i", "bool"),
        ("COALESCE(r.i, fv.count, 0)", "int64"),
        ("COALESCE(r.s)", "string"),
        ("CASE WHEN r.b THEN r.j ELSE r.f END", "float64"),
        ("CASE WHEN r.i THEN 's' END", "string"),
        ("context.request_timestamp > r.t", "bool"),
        ('"r.i" * 2', "int64"),
        ("DATEDIFF('Days', r.t, context.request_timestamp) + 1", "int64"),
        ("coalesce(r.i, 1) + case when r.b then 1 else 2 end", "int64"),
    ],
)
def test_types_follow_tecton(expr: str, dtype: str) -> None:
    assert parse_calculation(expr, SCHEMA).dtype == dtype


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("12 / 4 / 3", 1.0),
        ("2 * 3 / 4", 1.5),
        ("1 + 1 = 2", True),
        ("TRUE OR FALSE AND FALSE", True),
        ("(TRUE OR FALSE) AND FALSE", False),
        ("NOT 1 = 2", True),
        ("NOT TRUE OR TRUE", True),
        ("-2 * 3", -6),
        ("- 2.5", -2.5),
        ("'it''s'", "it's"),
        ("1 <> 2", True),
        ("2 >= 2", True),
        ("'b' > 'a'", True),
        ("CASE WHEN FALSE THEN 1 WHEN TRUE THEN 2 END", 2),
        ("CASE WHEN 0 THEN 1 END", None),
        ("CASE WHEN 0.5 THEN 1 ELSE 3 END", 1),
    ],
)
def test_precedence_and_literals(expr: str, expected: Any) -> None:
    assert evaluate(expr) == expected


def test_sql_null_semantics() -> None:
    assert evaluate("r.i + 1", i=None) is None
    assert evaluate("r.i = r.i", i=None) is None
    assert evaluate("r.b AND FALSE", b=None) is False
    assert evaluate("r.b AND TRUE", b=None) is None
    assert evaluate("r.b OR TRUE", b=None) is True
    assert evaluate("r.b OR FALSE", b=None) is None
    assert evaluate("NOT r.b", b=None) is None
    assert evaluate("COALESCE(r.i, fv.count, 7)", i=None) == 7
    assert evaluate("CASE WHEN r.b THEN 1 ELSE 2 END", b=None) == 2  # a null condition is not true


def test_division_and_overflow_follow_tecton() -> None:
    assert evaluate("r.f / 0", f=3.0) == math.inf
    assert evaluate("r.f / 0", f=-3.0) == -math.inf
    assert math.isnan(evaluate("r.f / 0", f=0.0))
    assert evaluate("7 / 2") == 3.5
    assert evaluate("r.i + 1", i=2**63 - 1) == -(2**63)  # integers wrap at the result width
    assert evaluate("r.j * r.j", j=2**16) == 0


def test_referenced_columns() -> None:
    node = parse_calculation("COALESCE(r.i, fv.count) + CASE WHEN r.b THEN r.i ELSE 0 END", SCHEMA)
    assert referenced_columns(node) == ["r.i", "fv.count", "r.b"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("r.i +", "incomplete expression"),
        ("r.i + )", "unexpected token `)` at column 7"),
        ("r.i # 2", "unexpected character `#` at column 5"),
        ("r.nope + 1", "unknown column `r.nope` at column 1; available: context.request_timestamp, fv.count"),
        ("r.s + 1", "cannot perform addition on non-numeric type string"),
        ("r.s = 1", "types string and int64 are not comparable"),
        ("r.b < 1", "types bool and int64 are not comparable"),
        ("1 = 1 = 1", "unexpected token `=` at column 7"),
        ("NOT NOT r.b", "unexpected token `NOT` at column 5"),
        ("COALESCE(r.f, 0)", "cannot mix values of types ['float64', 'int64'] in COALESCE"),
        ("CASE WHEN r.s THEN 1 END", "could not convert CASE predicate type string to BOOL"),
        ("CASE WHEN r.b THEN 's' ELSE 1 END", "cannot combine types string and int64"),
        ("CASE ELSE 1 END", "at least 1 WHEN clause"),
        ("r.s AND r.b", "AND was given a value of type string"),
        ("TRY_STRPTIME(r.s, '%Y')", "TRY_STRPTIME is not supported by featurebus yet"),
        ('DATEDIFF("day", r.t, r.t)', "requires single quotes (') not double quotes"),
        ("DATEDIFF('fortnight', r.t, r.t)", "unknown DATEDIFF part 'fortnight'"),
        ("DATEDIFF('QUARTER', r.t, r.t)", "unknown DATEDIFF part 'QUARTER'"),
        ("DATEDIFF('day', r.i, r.t)", "DATEDIFF start_date must be of type TIMESTAMP, got int64"),
        ("99999999999999999999", "out of the Int64 range"),
        ("", "the expression is empty"),
    ],
)
def test_errors_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(CalculationError, match=None) as info:
        parse_calculation(expr, SCHEMA)
    assert message in str(info.value)
    assert isinstance(info.value, DefinitionError)


# -- evaluators against an independent reference ------------------------------------------------
# Each generated expression carries (text, dtype, reference function of a row), built together so
# the reference never goes through the parser; the text is fully parenthesised.
Gen = tuple[str, str, Callable[[dict[str, Any]], Any]]
NUMERIC = ("float64", "float32", "int64", "int32")
COLUMNS = {"r.i": "int64", "r.j": "int32", "r.f": "float64", "r.g": "float32", "r.b": "bool", "r.s": "string"}


def _wrap(v: int, bits: int) -> int:
    return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))


def _ref_arith(op: str, dtype: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if dtype in ("int64", "int32"):
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return _wrap(value, 64 if dtype == "int64" else 32)
    with np.errstate(all="ignore"):
        x, y = np.float64(a), np.float64(b)
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
        return float(np.float32(value)) if dtype == "float32" else float(value)


def _widest(*dtypes: str) -> str:
    return next(d for d in NUMERIC if d in dtypes)


def _truth(v: Any) -> bool | None:
    return None if v is None else bool(v != 0) if not isinstance(v, bool) else v


def _leaf() -> st.SearchStrategy[Gen]:
    columns = st.sampled_from(sorted(COLUMNS)).map(lambda c: (c, COLUMNS[c], lambda row, c=c: row[c]))
    ints = st.integers(0, 2**40).map(lambda v: (str(v), "int64", lambda row, v=v: v))
    floats = st.sampled_from(["0.0", "1.5", "2.25e3", ".5"]).map(lambda t: (t, "float64", lambda row, t=t: float(t)))
    strings = st.sampled_from(["a", "b", ""]).map(lambda s: (f"'{s}'", "string", lambda row, s=s: s))
    bools = st.booleans().map(lambda b: (str(b).upper(), "bool", lambda row, b=b: b))
    return st.one_of(columns, ints, floats, strings, bools)


def _extend(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    def arith(p: tuple[Gen, str, Gen]) -> Gen:
        (ta, da, fa), op, (tb, db, fb) = p
        dtype = "float64" if op == "/" else _widest(da, db)
        return f"({ta} {op} {tb})", dtype, lambda row: _ref_arith(op, dtype, fa(row), fb(row))

    def negate(g: Gen) -> Gen:
        text, dtype, f = g
        return f"(-({text}))", dtype, lambda row: _ref_arith("*", dtype, -1, f(row))

    def compare(p: tuple[Gen, str, Gen]) -> Gen:
        (ta, da, fa), op, (tb, db, fb) = p
        floaty = "float64" in (da, db) or "float32" in (da, db)

        def run(row: dict[str, Any]) -> bool | None:
            a, b = fa(row), fb(row)
            if a is None or b is None:
                return None
            if floaty:
                a, b = float(a), float(b)
            return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

        return f"({ta} {op} {tb})", "bool", run

    def logical(p: tuple[Gen, str, Gen]) -> Gen:
        (ta, _, fa), op, (tb, _, fb) = p

        def run(row: dict[str, Any]) -> bool | None:
            a, b = _truth(fa(row)), _truth(fb(row))
            if op == "AND":
                return False if False in (a, b) else None if None in (a, b) else True
            return True if True in (a, b) else None if None in (a, b) else False

        return f"({ta} {op} {tb})", "bool", run

    def negation(g: Gen) -> Gen:
        text, _, f = g
        return f"(NOT ({text}))", "bool", lambda row: None if (v := _truth(f(row))) is None else not v

    def coalesce(p: tuple[Gen, Gen]) -> Gen:
        (ta, da, fa), (tb, _, fb) = p
        return f"COALESCE({ta}, {tb})", da, lambda row: fa(row) if fa(row) is not None else fb(row)

    def case(p: tuple[Gen, Gen, Gen]) -> Gen:
        (tc, _, fc), (ta, da, fa), (tb, db, fb) = p
        dtype = _widest(da, db) if da in NUMERIC and db in NUMERIC else da

        def cast(v: Any) -> Any:
            if v is None or dtype not in ("float64", "float32"):
                return v
            return float(np.float32(float(v))) if dtype == "float32" else float(v)

        return (
            f"CASE WHEN {tc} THEN {ta} ELSE {tb} END",
            dtype,
            lambda row: cast(fa(row)) if _truth(fc(row)) else cast(fb(row)),
        )

    numeric = children.filter(lambda g: g[1] in NUMERIC)
    boolish = children.filter(lambda g: g[1] == "bool" or g[1] in NUMERIC)
    same = st.tuples(children, children).filter(
        lambda p: p[0][1] == p[1][1] or (p[0][1] in NUMERIC and p[1][1] in NUMERIC)
    )
    return st.one_of(
        st.tuples(numeric, st.sampled_from("+-*/"), numeric).map(arith),
        numeric.map(negate),
        st.tuples(same, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        .filter(lambda p: p[0][0][1] != "bool" or p[1] in ("=", "!="))
        .map(lambda p: compare((p[0][0], p[1], p[0][1]))),
        st.tuples(boolish, st.sampled_from(["AND", "OR"]), boolish).map(logical),
        boolish.map(negation),
        st.tuples(children, children).filter(lambda p: p[0][1] == p[1][1]).map(coalesce),
        st.tuples(boolish, same).map(lambda p: case((p[0], p[1][0], p[1][1]))),
    )


expressions = st.recursive(_leaf(), _extend, max_leaves=8)
rows = st.fixed_dictionaries(
    {
        "r.i": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "r.j": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
        "r.f": st.one_of(st.none(), st.floats(allow_nan=False, width=64), st.sampled_from([0.0, -0.0, 1.0])),
        "r.g": st.one_of(st.none(), st.floats(allow_nan=False, width=32)),
        "r.b": st.one_of(st.none(), st.booleans()),
        "r.s": st.one_of(st.none(), st.sampled_from(["a", "b", ""])),
    }
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return (type(a) is type(b) and a == b) or (a is None and b is None)


@settings(max_examples=400, deadline=None)
@given(expression=expressions, data=st.lists(rows, min_size=1, max_size=6))
def test_both_evaluators_agree_with_the_reference(expression: Gen, data: list[dict[str, Any]]) -> None:
    text, dtype, reference = expression
    node = parse_calculation(text, COLUMNS)
    assert node.dtype == dtype
    per_row = row_evaluator(node)
    expected = [reference(row) for row in data]
    for row, want in zip(data, expected, strict=True):
        got = per_row(row)
        assert _same(got, want), (text, row, got, want)
    frame = pd.DataFrame({c: pd.Series([row[c] for row in data], dtype=object) for c in COLUMNS})
    columns = {c: column_from_series(frame[c], d) for c, d in COLUMNS.items()}
    series = series_from_column(column_evaluator(node)(columns, len(data)), dtype)
    for got, want in zip(series.tolist(), expected, strict=True):
        got = None if got is pd.NA else got
        if dtype == "float32" and got is not None:
            got = float(got)
        if isinstance(got, float) and math.isnan(got) and want is None:
            continue  # a float column shows null as NaN
        assert _same(got, want), (text, got, want)


@settings(max_examples=60, deadline=None)
@given(
    part=st.sampled_from(
        ["us", "ms", "sec", "minute", "h", "day", "w", "month", "quarter", "year", "decade", "century", "millennium"]
    ),
    pairs=st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(-(10**17), 10**17)), min_size=1, max_size=8),
)
def test_datediff_agrees_with_duckdb(part: str, pairs: list[tuple[int, int]]) -> None:
    """DuckDB's date_diff is what Tecton's offline engine runs for DATEDIFF."""
    import duckdb

    from featurebus.streams.calculation import DATE_PARTS

    limit = 2**63 - 1
    pairs = [(a, max(-limit, min(limit, a + d))) for a, d in pairs]
    schema = {"a": "timestamp", "b": "timestamp"}
    node = parse_calculation(f"DATEDIFF('{part}', a, b)", schema)
    with duckdb.connect() as con:
        expected = [
            con.execute(
                f"SELECT date_diff('{DATE_PARTS.get(part, part)}', make_timestamp(?), make_timestamp(?))",
                [a // 1000, b // 1000],
            ).fetchone()[0]
            for a, b in pairs
        ]  # type: ignore[index]
    per_row = row_evaluator(node)
    assert [per_row({"a": a, "b": b}) for a, b in pairs] == expected
    columns = {
        "a": (np.array([a for a, _ in pairs]), np.zeros(len(pairs), dtype=bool)),
        "b": (np.array([b for _, b in pairs]), np.zeros(len(pairs), dtype=bool)),
    }
    values, nulls = column_evaluator(node)(columns, len(pairs))
    assert values.tolist() == expected and not nulls.any()
