"""Tecton's ``Calculation`` expression language: parsing and type inference, as pure logic.

The grammar is Tecton 1.x's (its vendored Lark grammar, ``tecton/vendor/sql_expresssion_parser``),
written here as a recursive-descent parser so that nothing is ever ``eval``-ed:

    expr       := and_expr (OR and_expr)*
    and_expr   := bool_factor (AND bool_factor)*
    bool_factor:= [NOT] comparison
    comparison := numeric [(= | != | <> | < | <= | > | >=) numeric]     -- not chained
    numeric    := term ((+ | -) term)*
    term       := factor ((* | /) factor)*
    factor     := [+ | -] value
    value      := literal | column | COALESCE(expr, ...) | CASE (WHEN expr THEN expr)+ [ELSE expr] END
                | DATEDIFF('part', expr, expr) | ( expr )

Keywords are case-insensitive; a column is ``source.field`` (``"quoted"`` when it collides with
a keyword). Types follow Tecton: integer literals are Int64, decimals Float64; arithmetic needs
numbers and yields the most precise operand type (Float64 > Float32 > Int64 > Int32), division
always Float64; comparisons need comparable types and yield Bool; AND/OR/NOT and CASE conditions
take Bool or numbers; COALESCE needs one type; CASE branches are unified like arithmetic.
Evaluation lives in ``featurebus.streams.calculation_eval``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from featurebus.schemas.errors import DefinitionError

__all__ = [
    "Arith",
    "Case",
    "CalculationError",
    "Coalesce",
    "Column",
    "Compare",
    "DATE_PARTS",
    "DateDiff",
    "Literal",
    "Logical",
    "Node",
    "Not",
    "NUMERIC_TYPES",
    "parse_calculation",
    "referenced_columns",
]

# Most precise first, as Tecton (and DuckDB) rank them.
NUMERIC_TYPES = ("float64", "float32", "int64", "int32")
_INT64_MAX = 2**63 - 1


class CalculationError(DefinitionError):
    """A Calculation expression that does not parse or does not type-check."""


@dataclass(frozen=True)
class Literal:
    value: int | float | str | bool
    dtype: str


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True)
class Arith:
    op: str  # "+" | "-" | "*" | "/"
    left: Node
    right: Node
    dtype: str


@dataclass(frozen=True)
class Compare:
    op: str  # "=" | "!=" | "<" | "<=" | ">" | ">="
    left: Node
    right: Node
    dtype: str = "bool"


@dataclass(frozen=True)
class Logical:
    op: str  # "AND" | "OR"
    left: Node
    right: Node
    dtype: str = "bool"


@dataclass(frozen=True)
class Not:
    operand: Node
    dtype: str = "bool"


@dataclass(frozen=True)
class Coalesce:
    args: tuple[Node, ...]
    dtype: str


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple[Node, Node], ...]  # (condition, result)
    otherwise: Node | None
    dtype: str


@dataclass(frozen=True)
class DateDiff:
    part: str  # a DATE_PARTS value
    start: Node
    end: Node
    dtype: str = "int64"


Node = Literal | Column | Arith | Compare | Logical | Not | Coalesce | Case | DateDiff

# DATEDIFF's part names, as Tecton's grammar spells them (all but 'quarter' case-insensitive).
DATE_PARTS: dict[str, str] = {
    **dict.fromkeys(("day", "days", "d", "dayofmonth"), "day"),
    **dict.fromkeys(("month", "mon", "months", "mons"), "month"),
    **dict.fromkeys(("week", "weeks", "w"), "week"),
    **dict.fromkeys(("year", "yr", "y", "years", "yrs"), "year"),
    **dict.fromkeys(("second", "sec", "seconds", "secs", "s"), "second"),
    **dict.fromkeys(("hr", "hour", "hours", "hrs", "h"), "hour"),
    **dict.fromkeys(("minute", "minutes", "min", "mins", "m"), "minute"),
    **dict.fromkeys(("millennium", "mil", "millenniums", "millennia", "mils", "millenium"), "millennium"),
    **dict.fromkeys(("century", "cent", "centuries", "c"), "century"),
    **dict.fromkeys(("decade", "dec", "decades", "decs"), "decade"),
    **dict.fromkeys(("milliseconds", "millisecond", "ms", "msec", "msecs", "msecond", "mseconds"), "milliseconds"),
    **dict.fromkeys(("microseconds", "microsecond", "us", "usec", "usecs", "usecond", "useconds"), "microseconds"),
}


def referenced_columns(node: Node) -> list[str]:
    """Every column the expression reads, in first-use order."""
    found: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Column):
            found.setdefault(n.name)
        elif isinstance(n, Arith | Compare | Logical):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, Not):
            walk(n.operand)
        elif isinstance(n, Coalesce):
            for a in n.args:
                walk(a)
        elif isinstance(n, DateDiff):
            walk(n.start)
            walk(n.end)
        elif isinstance(n, Case):
            for cond, result in n.whens:
                walk(cond)
                walk(result)
            if n.otherwise is not None:
                walk(n.otherwise)

    walk(node)
    return list(found)


# -- lexing -------------------------------------------------------------------------------------
_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "CASE", "WHEN", "THEN", "ELSE", "END", "COALESCE", "TRUE", "FALSE", "DATEDIFF", "TRY_STRPTIME"}
)
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<number>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
      | (?P<string>'(?:''|[^'])*')
      | (?P<quoted>"[a-zA-Z_][a-zA-Z0-9_.]*")
      | (?P<name>[a-zA-Z_][a-zA-Z0-9_.]*)
      | (?P<op><=|>=|!=|<>|[=<>+\-*/(),])""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "string" | "column" | "keyword" | "op" | "end"
    text: str
    column: int  # 1-based position in the expression, for error messages


def _tokens(expr: str) -> list[_Token]:
    tokens = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise CalculationError(f"unexpected character `{expr[pos]}` at column {pos + 1}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "name" and text.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", text.upper(), pos + 1))
        elif kind in ("name", "quoted"):
            tokens.append(_Token("column", text.strip('"'), pos + 1))
        elif kind != "ws":
            tokens.append(_Token(kind, text, pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(expr) + 1))
    return tokens


# -- parsing with type inference ------------------------------------------------------------------
def parse_calculation(expr: str, schema: Mapping[str, str]) -> Node:
    """The typed syntax tree of ``expr`` whose columns have the dtypes in ``schema``.

    Raises ``CalculationError`` naming the problem (and its column for syntax errors).
    """
    if not isinstance(expr, str) or not expr.strip():
        raise CalculationError("the expression is empty")
    return _Parser(_tokens(expr), schema).parse()


def _is_numeric(dtype: str) -> bool:
    return dtype in NUMERIC_TYPES


def unify(dtypes: list[str], what: str) -> str:
    """Tecton's ``_resolve_dtypes``: the most precise numeric type, or the one shared type."""
    if all(_is_numeric(d) for d in dtypes):
        return next(d for d in NUMERIC_TYPES if d in dtypes)
    if any(d != dtypes[0] for d in dtypes):
        raise CalculationError(
            f"cannot combine types {dtypes[0]} and {next(d for d in dtypes if d != dtypes[0])} in {what}"
        )
    return dtypes[0]


class _Parser:
    def __init__(self, tokens: list[_Token], schema: Mapping[str, str]) -> None:
        self._tokens = tokens
        self._at = 0
        self._schema = schema

    def parse(self) -> Node:
        node = self._or()
        self._expect_end()
        return node

    # token helpers
    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _accept(self, kind: str, *texts: str) -> _Token | None:
        token = self._peek()
        if token.kind == kind and (not texts or token.text in texts):
            self._at += 1
            return token
        return None

    def _unexpected(self, token: _Token) -> CalculationError:
        if token.kind == "end":
            return CalculationError("incomplete expression")
        return CalculationError(f"unexpected token `{token.text}` at column {token.column}")

    def _expect(self, kind: str, text: str) -> None:
        if self._accept(kind, text) is None:
            raise self._unexpected(self._peek())

    def _expect_end(self) -> None:
        if self._peek().kind != "end":
            raise self._unexpected(self._peek())

    # grammar
    def _or(self) -> Node:
        node = self._and()
        while self._accept("keyword", "OR"):
            node = self._logical("OR", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._bool_factor()
        while self._accept("keyword", "AND"):
            node = self._logical("AND", node, self._bool_factor())
        return node

    def _bool_factor(self) -> Node:
        if self._accept("keyword", "NOT"):
            operand = self._comparison()
            _require_boolish(operand, "NOT")
            return Not(operand)
        return self._comparison()

    def _logical(self, op: str, left: Node, right: Node) -> Node:
        _require_boolish(left, op)
        _require_boolish(right, op)
        return Logical(op, left, right)

    def _comparison(self) -> Node:
        left = self._numeric()
        token = self._accept("op", "=", "!=", "<>", "<", "<=", ">", ">=")
        if token is None:
            return left
        right = self._numeric()
        comparable = (_is_numeric(left.dtype) and _is_numeric(right.dtype)) or (
            left.dtype == right.dtype and not left.dtype.startswith("array<")
        )
        if not comparable:
            raise CalculationError(
                f"types {left.dtype} and {right.dtype} are not comparable (in `{token.text}` at column {token.column})"
            )
        return Compare("!=" if token.text == "<>" else token.text, left, right)

    def _numeric(self) -> Node:
        node = self._term()
        while (token := self._accept("op", "+", "-")) is not None:
            node = _arith(token.text, node, self._term())
        return node

    def _term(self) -> Node:
        node = self._factor()
        while (token := self._accept("op", "*", "/")) is not None:
            node = _arith(token.text, node, self._factor())
        return node

    def _factor(self) -> Node:
        sign = self._accept("op", "+", "-")
        value = self._value()
        if sign is None:
            return value
        if sign.text == "+":
            _arith("+", Literal(0, "int32"), value)  # the type check only: +x is x
            return value
        # Tecton rewrites -x as (-1 :: Int32) * x, which keeps x's type.
        return _arith("*", Literal(-1, "int32"), value)

    def _value(self) -> Node:
        token = self._next()
        if token.kind == "number":
            if re.fullmatch(r"\d+", token.text):
                value = int(token.text)
                if value > _INT64_MAX:
                    raise CalculationError(
                        f"integer literal {token.text} is out of the Int64 range; write it as "
                        f"{token.text}.0 for a Float64"
                    )
                return Literal(value, "int64")
            return Literal(float(token.text), "float64")
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"), "string")
        if token.kind == "column":
            dtype = self._schema.get(token.text)
            if dtype is None:
                known = ", ".join(sorted(self._schema)) or "none"
                raise CalculationError(f"unknown column `{token.text}` at column {token.column}; available: {known}")
            return Column(token.text, dtype)
        if token.kind == "op" and token.text == "(":
            node = self._or()
            self._expect("op", ")")
            return node
        if token.kind == "keyword":
            if token.text in ("TRUE", "FALSE"):
                return Literal(token.text == "TRUE", "bool")
            if token.text == "COALESCE":
                return self._coalesce()
            if token.text == "CASE":
                return self._case()
            if token.text == "DATEDIFF":
                return self._datediff()
            if token.text == "TRY_STRPTIME":
                raise CalculationError(
                    "TRY_STRPTIME is not supported by featurebus yet (a development feature "
                    "in Tecton); parse the string in a mode='python' realtime feature view"
                )
        raise self._unexpected(token)

    def _coalesce(self) -> Node:
        self._expect("op", "(")
        args = [self._or()]
        while self._accept("op", ","):
            args.append(self._or())
        self._expect("op", ")")
        dtypes = sorted({a.dtype for a in args})
        if len(dtypes) != 1:
            raise CalculationError(
                f"cannot mix values of types {dtypes} in COALESCE; make them one type "
                "(e.g. write 0.0 rather than 0 next to a Float64)"
            )
        return Coalesce(tuple(args), args[0].dtype)

    def _datediff(self) -> Node:
        self._expect("op", "(")
        token = self._next()
        if token.kind == "column":
            raise CalculationError(
                "the datepart argument to DATEDIFF requires single quotes (') not double "
                "quotes (\"), e.g. DATEDIFF('day', start, end)"
            )
        text = token.text[1:-1] if token.kind == "string" else ""
        part = DATE_PARTS.get(text if text.startswith("quarter") else text.lower())
        if text in ("quarter", "quarters"):
            part = "quarter"
        if part is None:
            if token.kind != "string":
                raise self._unexpected(token)
            raise CalculationError(
                f"unknown DATEDIFF part {token.text}; use one of 'microseconds', 'milliseconds', "
                "'second', 'minute', 'hour', 'day', 'week', 'month', 'quarter', 'year', 'decade', "
                "'century', 'millennium'"
            )
        self._expect("op", ",")
        start = self._or()
        self._expect("op", ",")
        end = self._or()
        self._expect("op", ")")
        for name, side in (("start_date", start), ("end_date", end)):
            if side.dtype != "timestamp":
                raise CalculationError(f"DATEDIFF {name} must be of type TIMESTAMP, got {side.dtype}")
        return DateDiff(part, start, end)

    def _case(self) -> Node:
        whens: list[tuple[Node, Node]] = []
        while self._accept("keyword", "WHEN"):
            condition = self._or()
            if not (condition.dtype == "bool" or _is_numeric(condition.dtype)):
                raise CalculationError(f"could not convert CASE predicate type {condition.dtype} to BOOL")
            self._expect("keyword", "THEN")
            whens.append((condition, self._or()))
        otherwise = self._or() if self._accept("keyword", "ELSE") else None
        self._expect("keyword", "END")
        if not whens:
            raise CalculationError("case statements require at least 1 WHEN clause")
        results = [r for _, r in whens] + ([otherwise] if otherwise is not None else [])
        return Case(tuple(whens), otherwise, unify([r.dtype for r in results], "a CASE statement"))


def _require_boolish(node: Node, op: str) -> None:
    if not (node.dtype == "bool" or _is_numeric(node.dtype)):
        raise CalculationError(f"{op} was given a value of type {node.dtype}, which cannot be converted to bool")


def _arith(op: str, left: Node, right: Node) -> Arith:
    name = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}[op]
    for side in (left, right):
        if not _is_numeric(side.dtype):
            raise CalculationError(f"cannot perform {name} on non-numeric type {side.dtype}")
    dtype = "float64" if op == "/" else unify([left.dtype, right.dtype], name)
    return Arith(op, left, right, dtype)
