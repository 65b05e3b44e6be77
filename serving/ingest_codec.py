"""Validating and encoding pushed records, compiled once per push source.

``streams.records.check_record`` is the one definition of a valid record (the stream worker and
the offline replay use it too). It is general, and on the ingestion hot path its per-field calls
and exception plumbing cost about half of a request's CPU. A ``SourceCodec`` resolves each
field's check once, runs a tight loop for the common case, and hands any record it would
reject to ``check_record``, whose verdict and reason are the answer: the fast path only ever
accepts, and it accepts exactly what ``check_record`` accepts (a property test holds it to that).

``encode_all`` does the common case column by column: one pass per field over the request's
records, a type check per column (``set(map(type, column))``, in C) instead of a function call
per value, and a per-record fallback to ``encode`` only when a column holds something the
column check does not settle, so the verdicts and reasons are ``encode``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from featurebus.schemas.specs import FieldSpec
from featurebus.streams.records import check_record
from featurebus.streams.values import (
    FLOAT32_MAX,
    INT_RANGES,
    check_value,
    float_outliers,
    int_outliers,
    parse_timestamp_ms,
    timestamps_ms,
)

__all__ = ["SourceCodec"]

Converter = Callable[[Any], Any]
Encoded = tuple[bytes | None, bytes]  # key, value
_NONE = type(None)


def _string(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    raise ValueError


def _integer_in(low: int, high: int) -> Converter:
    def integer(value: Any) -> Any:
        if value is None or (type(value) is int and low <= value <= high):  # type() excludes bool, as check_record does
            return value
        raise ValueError

    return integer


def _number_within(limit: float) -> Converter:
    def number(value: Any) -> Any:
        kind = type(value)
        if value is None:
            return value
        if kind is int:
            value = float(value)  # OverflowError beyond a float: check_record names it
        elif kind is not float:
            raise ValueError
        if -limit <= value <= limit:  # False for NaN too
            return value
        raise ValueError

    return number


def _boolean(value: Any) -> Any:
    if value is None or type(value) is bool:
        return value
    raise ValueError


def _timestamp(value: Any) -> Any:
    return None if value is None else parse_timestamp_ms(value)


def _required(value: Any) -> Any:
    """A missing join key is left to ``check_record`` to refuse by name (as is an integer key
    given as a decimal string, which the integer converter refuses, for it to convert)."""
    if value is None:
        raise ValueError
    return value


def _composite(dtype: str) -> Converter:
    return lambda value: check_value(value, dtype)


_CONVERTERS: dict[str, Converter] = {
    "string": _string,
    "int64": _integer_in(*INT_RANGES["int64"]),
    "int32": _integer_in(*INT_RANGES["int32"]),
    "float64": _number_within(sys.float_info.max),
    "float32": _number_within(FLOAT32_MAX),
    "bool": _boolean,
    "timestamp": _timestamp,
}


def _converter(field: FieldSpec, timestamp_field: str, key_fields: Sequence[str]) -> Converter:
    if field.name == timestamp_field:
        return parse_timestamp_ms  # raises ValueError on None too
    convert = _CONVERTERS.get(field.dtype) or _composite(field.dtype)
    if field.name in key_fields:
        return lambda value: convert(_required(value))
    return convert


# dtype -> the value types a column may hold as they are (None: missing).
_PLAIN_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str, _NONE}),
    "int64": frozenset({int, _NONE}),
    "int32": frozenset({int, _NONE}),
    "float64": frozenset({float, _NONE}),
    "float32": frozenset({float, _NONE}),
    "bool": frozenset({bool, _NONE}),
}
_NUMBER_TYPES = frozenset({float, int, _NONE})


class _PerRecordError(Exception):
    """A column the batch path does not settle: encode the records one by one."""


class SourceCodec:
    """Turns ``{"record": {...}}`` items of one push source into ``(key, value)`` bytes."""

    def __init__(
        self, source_name: str, schema: Sequence[FieldSpec], timestamp_field: str, key_fields: Sequence[str]
    ) -> None:
        self._source_name = source_name
        self._schema = tuple(schema)
        self._timestamp_field = timestamp_field
        self._names = frozenset(f.name for f in schema)
        self._dtypes = {f.name: f.dtype for f in schema}
        self._fields = tuple((f.name, _converter(f, timestamp_field, key_fields)) for f in schema)
        self._key_fields = tuple(key_fields)
        self._field_names = tuple(f.name for f in schema)
        self._key_positions = tuple(self._field_names.index(k) for k in key_fields)

    def encode_all(self, items: Sequence[Any]) -> tuple[list[Encoded], list[tuple[int, str]]]:
        """Every item of one request encoded (``(key, value)`` in order), or the ``(index, reason)``
        of each bad one (then the encoded list is incomplete and must not be written)."""
        try:
            return self._encode_columns(items), []
        except _PerRecordError:
            pass
        encoded: list[Encoded] = []
        errors: list[tuple[int, str]] = []
        for index, item in enumerate(items):
            reason, key, value = self.encode(item)
            if reason is None:
                encoded.append((key, value))
            else:
                errors.append((index, reason))
        return encoded, errors

    def _encode_columns(self, items: Sequence[Any]) -> list[Encoded]:
        names = self._names
        records = []
        for item in items:
            record = item.get("record") if type(item) is dict else None
            if type(record) is not dict or not names.issuperset(record):
                raise _PerRecordError
            records.append(record)
        columns = [self._column(name, [r.get(name) for r in records]) for name in self._field_names]
        dumps = orjson.dumps
        fields = self._field_names
        positions = self._key_positions
        try:
            if not positions:
                return [(None, dumps(dict(zip(fields, row, strict=True)))) for row in zip(*columns, strict=True)]
            return [
                (dumps([row[p] for p in positions]), dumps(dict(zip(fields, row, strict=True))))
                for row in zip(*columns, strict=True)
            ]
        except TypeError:  # an integer beyond 64 bits: encode() names it
            raise _PerRecordError from None

    def _column(self, name: str, values: list[Any]) -> list[Any]:
        """The column as written, or ``_PerRecordError`` for anything but the plain, in-range case."""
        dtype = self._dtypes[name]
        if name == self._timestamp_field:
            try:
                return timestamps_ms(values)  # None is refused here too
            except ValueError:
                raise _PerRecordError from None
        plain = _PLAIN_TYPES.get(dtype)
        if plain is None:
            try:
                if dtype == "timestamp":
                    return [None if v is None else parse_timestamp_ms(v) for v in values]
                return [check_value(v, dtype) for v in values]  # arrays, maps, structs: every element
            except ValueError:
                raise _PerRecordError from None
        kinds = set(map(type, values))
        if name in self._key_fields and _NONE in kinds:
            raise _PerRecordError
        if kinds <= plain:
            if dtype in INT_RANGES and int_outliers(values, dtype):
                raise _PerRecordError
            if dtype in ("float64", "float32") and float_outliers(values, dtype):
                raise _PerRecordError
            return values
        if dtype in ("float64", "float32") and kinds <= _NUMBER_TYPES:
            if float_outliers(values, dtype):
                raise _PerRecordError
            return [float(v) if type(v) is int else v for v in values]
        raise _PerRecordError

    def encode(self, item: Any) -> tuple[str | None, bytes | None, bytes]:
        """``(reason, key, value)``: ``reason`` is None for a valid record; the value is the
        record in schema order with timestamps as epoch milliseconds, the key its join keys."""
        record = item.get("record") if type(item) is dict else None
        if type(record) is not dict:
            return 'each item must be {"record": {...}}', None, b""
        if not self._names.issuperset(record):
            unknown = sorted(set(record) - self._names)
            names = [f.name for f in self._schema]
            return f"unknown fields {unknown}; the schema of {self._source_name!r} has {names}", None, b""
        try:
            get = record.get
            normalized = {name: convert(get(name)) for name, convert in self._fields}
        except (ValueError, OverflowError):
            try:
                row, reason = check_record(record, self._schema, self._timestamp_field, self._key_fields)
            except OverflowError as exc:  # a check missed a range: refuse the record rather than fail the request
                return f"a value is out of range: {exc}", None, b""
            if reason is not None:
                return reason, None, b""
            normalized = {f.name: value for f, value in zip(self._schema, row, strict=True)}
        try:
            key = orjson.dumps([normalized[k] for k in self._key_fields]) if self._key_fields else None
            return None, key, orjson.dumps(normalized)
        except TypeError as exc:  # orjson: what the checks above let through and JSON cannot hold
            return f"the record cannot be encoded as JSON: {exc}", None, b""
