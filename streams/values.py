"""What a value of each declared type may be: one definition for ingestion, the stream worker and
the offline replay, so that no record one accepts can crash another.

A value fits its type when it has the type's JSON (or decoded Avro) shape *and* its range:
* ``int64`` / ``int32``: an integer (never a bool) within the signed 64 / 32-bit range. A join key
  of an integer type may also come as a decimal string (``"42"``), as Tecton accepts: JSON
  clients cannot always carry 64-bit integers exactly. Nothing else is ever coerced.
* ``float64`` / ``float32``: a finite number (an integer is converted); a float32 also within
  ±3.4e38. NaN and infinities are refused: JSON cannot carry them (so an Avro producer could
  send what a JSON one cannot), and one of them poisons every sum and mean it enters for as long as
  the tile lives.
* ``string``: a ``str`` (invalid UTF-8 never gets this far: the JSON and Avro parsers refuse it).
* ``bool``: ``true`` or ``false``.
* ``timestamp``: epoch milliseconds, an ISO-8601 string that parses *fully* (printable ASCII; a
  zone, or UTC is assumed), or a datetime; within years 1678-2261, the span pandas'
  nanosecond timestamps hold, which training sets and the offline store use.
* arrays, maps and structs: their elements, values and fields checked the same way.

``check_value`` is the reference, one value at a time; the ``*_outliers`` functions check a whole
column at C speed (``min``/``max``/``sum`` over a list) and name the bad positions only when
there is one, so the hot paths pay a few passes over a list, not a call per value.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from featurebus.schemas.time import to_epoch_ms
from featurebus.schemas.types import Array, Map, Struct, parse_dtype

__all__ = [
    "FLOAT32_MAX",
    "INT_RANGES",
    "TIMESTAMP_MAX_MS",
    "TIMESTAMP_MIN_MS",
    "check_value",
    "decimal_key",
    "float_outliers",
    "int_outliers",
    "parse_timestamp_ms",
    "timestamp_outliers",
    "timestamps_ms",
]

INT_RANGES: dict[str, tuple[int, int]] = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
FLOAT32_MAX = 3.4028234663852886e38
TIMESTAMP_MIN_MS = -9_214_560_000_000  # 1678-01-01T00:00:00Z
TIMESTAMP_MAX_MS = 9_214_646_400_000 - 1  # the last millisecond of 2261

_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def decimal_key(value: Any, dtype: str) -> Any:
    """A join key of an integer type given as a decimal string, as its integer (other values as
    they are, for ``check_value`` to judge)."""
    if type(value) is str and dtype in INT_RANGES and _DECIMAL.fullmatch(value):
        return int(value)
    return value


def parse_timestamp_ms(value: Any) -> int:
    """Epoch milliseconds of a timestamp value, or ValueError saying why it is not one."""
    kind = type(value)  # exact types first: this runs for every record ingested
    if kind is str:
        ms = _iso_ms(value)
    elif kind is int:
        ms = value
    elif isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    elif isinstance(value, int):
        ms = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a timestamp")
        ms = int(value)
    elif isinstance(value, datetime):
        ms = to_epoch_ms(value)
    elif isinstance(value, str):
        ms = _iso_ms(str(value))
    else:
        raise ValueError(f"{_shown(value)} is not a timestamp (use an ISO-8601 string or epoch milliseconds)")
    if not TIMESTAMP_MIN_MS <= ms <= TIMESTAMP_MAX_MS:
        raise ValueError(f"{_shown(value)} is outside the years 1678-2261 a timestamp may have")
    return ms


def timestamps_ms(values: list[Any]) -> list[int]:
    """``[parse_timestamp_ms(v) for v in values]`` for a column with none missing, at a fraction
    of the cost when all are strings (one printable-ASCII check over the column, the C parser,
    one range check); ValueError when any value is not a timestamp (without saying which: ask
    ``parse_timestamp_ms``)."""
    if set(map(type, values)) != {str}:
        return [parse_timestamp_ms(v) for v in values]
    joined = "".join(values)
    if not (joined.isascii() and joined.isprintable()):
        raise ValueError("a value holds characters no timestamp has")
    parse = datetime.fromisoformat
    try:
        parsed = [parse(text.replace("Z", "+00:00")) for text in values]
        ms = [
            int(d.timestamp() * 1000) if d.tzinfo is not None and not d.microsecond % 1000 else parse_timestamp_ms(text)
            for d, text in zip(parsed, values, strict=True)
        ]
    except OverflowError:
        raise ValueError("a value is outside the years a timestamp may have") from None
    if ms and (min(ms) < TIMESTAMP_MIN_MS or max(ms) > TIMESTAMP_MAX_MS):
        raise ValueError("a value is outside the years a timestamp may have")
    return ms


def _iso_ms(text: str) -> int:
    # fromisoformat ignores some trailing bytes (a NUL, for one): only printable ASCII is a timestamp.
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"{text[:64]!r} is not an ISO-8601 timestamp (it holds characters no timestamp has)")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text[:64]!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp() * 1000) if parsed.microsecond % 1000 == 0 else to_epoch_ms(parsed)
    except OverflowError:  # a zone offset pushing year 1 or 9999 past what datetime holds
        raise ValueError(f"{text[:64]!r} is outside the years 1678-2261 a timestamp may have") from None


def check_value(value: Any, dtype: str) -> Any:
    """The value converted to its column type (None stays None), or ValueError saying why it
    cannot be: the reference the column-wise checks agree with."""
    if value is None:
        return None
    if dtype == "string":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return value
    if dtype in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_shown(value)}")
        low, high = INT_RANGES[dtype]
        if not low <= value <= high:
            raise ValueError(f"{_shown(value)} is out of range for {dtype} ({low} to {high})")
        return value
    if dtype in ("float64", "float32"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"{_shown(value)} is out of range for {dtype}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {number}")
        if dtype == "float32" and abs(number) > FLOAT32_MAX:
            raise ValueError(f"{number} is out of range for float32 (±{FLOAT32_MAX:.7g})")
        return number
    if dtype == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_shown(value)}")
        return value
    if dtype == "timestamp":
        return parse_timestamp_ms(value)
    return _check_composite(value, parse_dtype(dtype))


def _check_composite(value: Any, dtype: Any) -> Any:
    """Arrays, maps and structs keep their decoded shape; their elements are checked (and
    converted, e.g. nested timestamps to epoch ms) like top-level values."""
    if isinstance(dtype, Array):
        if not isinstance(value, list):
            raise ValueError(f"expected an array, got {type(value).__name__}")
        return [_element(v, dtype.element_type.name, f"[{i}]") for i, v in enumerate(value)]
    if isinstance(dtype, Map):
        if isinstance(value, list):  # Avro maps may arrive as key/value pairs
            if not all(isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in value):
                raise ValueError("expected a map (an object), got a list that is not of key/value pairs")
            value = dict(value)
        if not isinstance(value, dict):
            raise ValueError(f"expected a map (an object), got {type(value).__name__}")
        if not all(type(k) is str for k in value):
            raise ValueError("map keys must be strings")
        return {k: _element(v, dtype.value_type.name, f"[{k[:32]!r}]") for k, v in value.items()}
    if isinstance(dtype, Struct):
        if not isinstance(value, dict):
            raise ValueError(f"expected a struct (an object), got {type(value).__name__}")
        return {f.name: _element(value.get(f.name), f.dtype.name, f".{f.name}") for f in dtype.fields}
    return value


def _element(value: Any, dtype: str, where: str) -> Any:
    try:
        return check_value(value, dtype)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a record may hold a megabyte of text)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({type(value).__name__} of {len(text)} characters)"


def int_outliers(values: list[Any], dtype: str) -> list[int]:
    """Positions of integers outside ``dtype``'s range in a column of ints and Nones (empty for
    the usual column, found with one ``min`` and one ``max``)."""
    present = [v for v in values if v is not None] if None in values else values
    if not present:
        return []
    low, high = INT_RANGES[dtype]
    if low <= min(present) and max(present) <= high:
        return []
    return [i for i, v in enumerate(values) if v is not None and not low <= v <= high]


def float_outliers(values: list[Any], dtype: str) -> list[int]:
    """Positions of non-finite (or, for float32, too large) numbers in a column of floats and
    Nones. ``sum`` is finite whenever every term is (an overflowing sum only costs the exact pass)."""
    present = [v for v in values if v is not None] if None in values else values
    if not present:
        return []
    try:
        fine = math.isfinite(sum(present))
    except OverflowError:  # an integer too large for a float among them
        fine = False
    if fine and (dtype != "float32" or (min(present) >= -FLOAT32_MAX and max(present) <= FLOAT32_MAX)):
        return []
    bad = []
    for i, v in enumerate(values):
        try:
            check_value(v, dtype)
        except ValueError:
            bad.append(i)
    return bad


def timestamp_outliers(values_ms: list[Any]) -> list[int]:
    """Positions of epoch milliseconds (ints and Nones) outside the years a timestamp may have."""
    present = [v for v in values_ms if v is not None] if None in values_ms else values_ms
    if not present or (min(present) >= TIMESTAMP_MIN_MS and max(present) <= TIMESTAMP_MAX_MS):
        return []
    return [i for i, v in enumerate(values_ms) if v is not None and not TIMESTAMP_MIN_MS <= v <= TIMESTAMP_MAX_MS]
