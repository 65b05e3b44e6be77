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

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from featurebus.schemas.specs import FieldSpec
from featurebus.streams.records import check_record, parse_timestamp_ms

__all__ = ["SourceCodec"]

Converter = Callable[[Any], Any]
Encoded = tuple[bytes | None, bytes]  # key, value
_NONE = type(None)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _string(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    raise ValueError


def _integer(value: Any) -> Any:
    if value is None or type(value) is int:  # type() excludes bool, as check_record does
        return value
    raise ValueError


def _number(value: Any) -> Any:
    kind = type(value)
    if kind is float or value is None:
        return value
    if kind is int:
        return float(value)
    raise ValueError


def _boolean(value: Any) -> Any:
    if value is None or type(value) is bool:
        return value
    raise ValueError


def _timestamp(value: Any) -> Any:
    return None if value is None else parse_timestamp_ms(value)


def _required_timestamp(value: Any) -> Any:
    return parse_timestamp_ms(value)  # raises ValueError on None too


def _identity(value: Any) -> Any:
    return value


_CONVERTERS: dict[str, Converter] = {
    "string": _string,
    "int64": _integer,
    "int32": _integer,
    "float64": _number,
    "float32": _number,
    "bool": _boolean,
    "timestamp": _timestamp,
}


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

    def __init__(self, source_name: str, schema: Sequence[FieldSpec], timestamp_field: str,
                 key_fields: Sequence[str]) -> None:
        self._source_name = source_name
        self._schema = tuple(schema)
        self._timestamp_field = timestamp_field
        self._names = frozenset(f.name for f in schema)
        self._dtypes = {f.name: f.dtype for f in schema}
        self._fields = tuple(
            (f.name, _required_timestamp if f.name == timestamp_field else _CONVERTERS.get(f.dtype, _identity))
            for f in schema
        )
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
            return [(dumps([row[p] for p in positions]), dumps(dict(zip(fields, row, strict=True))))
                    for row in zip(*columns, strict=True)]
        except TypeError:  # an integer beyond 64 bits: encode() names it
            raise _PerRecordError from None

    def _column(self, name: str, values: list[Any]) -> list[Any]:
        dtype = self._dtypes[name]
        if name == self._timestamp_field:
            try:
                return [parse_timestamp_ms(v) for v in values]  # None is refused here too
            except (ValueError, OverflowError):
                raise _PerRecordError from None
        plain = _PLAIN_TYPES.get(dtype)
        if plain is None:
            if dtype == "timestamp":
                try:
                    return [None if v is None else parse_timestamp_ms(v) for v in values]
                except (ValueError, OverflowError):
                    raise _PerRecordError from None
            return values  # nested types travel as they are, as in encode()
        kinds = set(map(type, values))
        if kinds <= plain:
            return values
        if dtype in ("float64", "float32") and kinds <= _NUMBER_TYPES:
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
                row, reason = check_record(record, self._schema, self._timestamp_field)
            except OverflowError as exc:  # e.g. a timestamp far outside what datetime can hold
                return f"a value is out of range: {exc}", None, b""
            if reason is not None:
                return reason, None, b""
            normalized = {f.name: value for f, value in zip(self._schema, row, strict=True)}
        try:
            key = orjson.dumps([normalized[k] for k in self._key_fields]) if self._key_fields else None
            return None, key, orjson.dumps(normalized)
        except TypeError:  # orjson: an integer beyond 64 bits, e.g. a timestamp of 1e300 ms
            name = next(n for n, v in normalized.items() if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX)
            return f"field {name!r}: {normalized[name]} does not fit in 64 bits (epoch milliseconds, int64)", None, b""
