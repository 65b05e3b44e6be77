"""Decoding source records into typed columns, with a reason for every record that is rejected.

Used by the stream worker and by the offline replay, so both accept and reject the same records.
Values are JSON objects or Avro records (``value_format``, see ``featurebus.streams.avro``).
Timestamps are ISO-8601 strings (a zone is required, or UTC is assumed), epoch milliseconds, or
datetimes (what Avro's ``timestamp-millis`` logical type decodes to).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from featurebus.schemas.kinds import ValueFormat
from featurebus.schemas.specs import FieldSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.avro import avro_parser, schema_guarantees_types
from featurebus.streams.values import (
    INT_RANGES,
    check_value,
    decimal_key,
    float_outliers,
    int_outliers,
    parse_timestamp_ms,
    timestamp_outliers,
)

__all__ = [
    "DecodedBatch",
    "check_record",
    "decode_json_records",
    "decode_records",
    "join_key_fields",
    "parse_timestamp_ms",
]

_log = logging.getLogger(__name__)


@dataclass
class DecodedBatch:
    """``frame`` holds the good records (timestamps as UTC datetimes); ``rejected`` the others."""

    frame: pd.DataFrame
    accepted_indexes: list[int]  # position of each frame row in the input
    rejected: list[tuple[int, str]]  # (position in the input, reason)


_check = check_value  # the per-value reference (``streams.values``)
_KEY_MISSING = "the join key is missing"


def join_key_fields(spec: WorkspaceSpec, source: StreamSourceSpec) -> tuple[str, ...]:
    """The source's fields that are join keys of the workspace's entities: a record without one
    belongs to no entity, so it is refused (at ingestion) or dead-lettered (by the worker)."""
    join_keys = {k.name for e in spec.entities for k in e.join_keys}
    return tuple(f.name for f in source.schema if f.name in join_keys)


def check_record(
    record: Any, schema: Sequence[FieldSpec], timestamp_field: str, key_fields: Sequence[str] = ()
) -> tuple[list[Any], str | None]:
    """The record's values in schema order, converted, or the reason it is unusable.

    One definition of a valid record for the stream worker, the offline replay and ingestion.
    """
    if not isinstance(record, dict):
        return [], "value is not an object (a JSON object or an Avro record)"
    row: list[Any] = []
    for field in schema:
        value = record.get(field.name)
        is_key = field.name in key_fields
        try:
            value = _check(decimal_key(value, field.dtype) if is_key else value, field.dtype)
        except ValueError as exc:
            return [], f"field {field.name!r}: {exc}"
        if value is None and field.name == timestamp_field:
            return [], f"field {field.name!r}: the timestamp is missing"
        if value is None and is_key:
            return [], f"field {field.name!r}: {_KEY_MISSING}"
        row.append(value)
    return row, None


def decode_json_records(
    payloads: Sequence[bytes | None], schema: Sequence[FieldSpec], timestamp_field: str, key_fields: Sequence[str] = ()
) -> DecodedBatch:
    return _isolating(payloads, lambda batch: _decode(batch, schema, timestamp_field, key_fields, _parse_json))


def decode_records(
    payloads: Sequence[bytes | None], source: StreamSourceSpec, key_fields: Sequence[str] = ()
) -> DecodedBatch:
    """A batch of the source's record values decoded by its ``value_format``; ``key_fields``
    (``join_key_fields``) must be present in every record."""
    kafka = source.kafka
    if kafka.value_format == ValueFormat.JSON:
        return _isolating(
            payloads, lambda batch: _decode(batch, source.schema, kafka.timestamp_field, key_fields, _parse_json)
        )
    if kafka.avro_schema is None:  # a spec from before Avro, or hand-built: say what is missing
        raise ValueError(f"source {source.name!r} has value_format {kafka.value_format.value!r} but no avro_schema")
    parse = avro_parser(kafka.avro_schema, confluent=kafka.value_format == ValueFormat.CONFLUENT_AVRO)
    if schema_guarantees_types(kafka.avro_schema, tuple((f.name, f.dtype) for f in source.schema)):
        return _isolating(
            payloads, lambda batch: _decode_typed(batch, source.schema, kafka.timestamp_field, key_fields, parse)
        )
    return _isolating(payloads, lambda batch: _decode(batch, source.schema, kafka.timestamp_field, key_fields, parse))


def _isolating(
    payloads: Sequence[bytes | None], decode: Callable[[Sequence[bytes | None]], DecodedBatch]
) -> DecodedBatch:
    """``decode(payloads)``; should it raise (a case the checks above missed: a bug, never a
    record's fault alone), each record is decoded on its own and the ones that still raise are
    rejected with the exception as the reason, so one record never fails its batch."""
    try:
        return decode(payloads)
    except Exception:
        _log.exception("decoding a batch of %d records failed; decoding them one by one", len(payloads))
    accepted: list[int] = []
    rejected: list[tuple[int, str]] = []
    for position, payload in enumerate(payloads):
        try:
            one = decode([payload])
        except Exception as exc:
            rejected.append((position, f"the record could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        if one.rejected:
            rejected.append((position, one.rejected[0][1]))
        else:
            accepted.append(position)
    try:  # the records that decode alone, together again (one frame, built as usual)
        together = decode([payloads[i] for i in accepted])
    except Exception as exc:
        reason = f"the record could not be decoded with its batch: {type(exc).__name__}: {str(exc)[:200]}"
        return DecodedBatch(decode([]).frame, [], sorted([*rejected, *((i, reason) for i in accepted)]))
    return DecodedBatch(together.frame, accepted, rejected)


def _decode_typed(
    payloads: Sequence[bytes | None],
    schema: Sequence[FieldSpec],
    timestamp_field: str,
    key_fields: Sequence[str],
    parse: Callable[[bytes], Any],
) -> DecodedBatch:
    """Records whose writer schema already guarantees every column's type: decoded one by one,
    then each column is built in one pass over the batch, without per-value checks of type. The
    ranges the Avro types do not bound (a double's NaN, a timestamp-millis far from now) and the
    required fields (timestamp, join keys) are checked per column at C speed; a batch with any
    such record takes the checked path, which names each bad record."""
    parsed, positions, rejected = _parse_records(payloads, parse)
    required = {timestamp_field, *key_fields}
    columns = {f.name: [r[f.name] for r in parsed] for f in schema}
    if any(None in columns[name] for name in required) or any(
        _outliers(columns[f.name], f.dtype) for f in schema if f.dtype in _RANGED_TYPES
    ):
        return _decode_parsed(parsed, positions, rejected, schema, timestamp_field, key_fields)
    rejected.sort()
    frame = pd.DataFrame({f.name: _column(columns[f.name], f.dtype) for f in schema})
    return DecodedBatch(frame, positions, rejected)


# Types whose decoded Avro values may lie outside the column's range (Avro int and long cannot).
_RANGED_TYPES = frozenset({"float64", "float32", "timestamp"})


def _outliers(values: list[Any], dtype: str) -> list[int]:
    if dtype == "timestamp":
        return timestamp_outliers(values)
    if dtype in INT_RANGES:
        return int_outliers(values, dtype)
    return float_outliers(values, dtype)


def _parse_records(
    payloads: Sequence[bytes | None], parse: Callable[[bytes], Any]
) -> tuple[list[dict[str, Any]], list[int], list[tuple[int, str]]]:
    """``(records, their positions, rejected (position, reason))``: each payload parsed on its
    own, so one malformed record never takes its neighbours with it."""
    if parse is _parse_json:
        # The usual batch, all JSON objects, in one comprehension over the C parser (no call of
        # ours per record); any doubt and the loop below gives every record its own verdict.
        try:
            parsed = [orjson.loads(payload) for payload in payloads]  # type: ignore[arg-type]  # None raises
        except (orjson.JSONDecodeError, TypeError):
            parsed = None
        if parsed is not None and all(type(record) is dict for record in parsed):
            return parsed, list(range(len(parsed))), []
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    rejected: list[tuple[int, str]] = []
    for position, payload in enumerate(payloads):
        if payload is None:
            rejected.append((position, "record has no value"))
            continue
        try:
            record = parse(payload)
        except ValueError as exc:
            rejected.append((position, str(exc)))
            continue
        if not isinstance(record, dict):
            rejected.append((position, "value is not an object (a JSON object or an Avro record)"))
            continue
        records.append(record)
        positions.append(position)
    return records, positions, rejected


def _parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"value is not JSON: {exc}") from None


def _decode(
    payloads: Sequence[bytes | None],
    schema: Sequence[FieldSpec],
    timestamp_field: str,
    key_fields: Sequence[str],
    parse: Callable[[bytes], Any],
) -> DecodedBatch:
    records, positions, rejected = _parse_records(payloads, parse)
    return _decode_parsed(records, positions, rejected, schema, timestamp_field, key_fields)


def _decode_parsed(
    records: list[dict[str, Any]],
    positions: list[int],
    rejected: list[tuple[int, str]],
    schema: Sequence[FieldSpec],
    timestamp_field: str,
    key_fields: Sequence[str],
) -> DecodedBatch:
    """Check column by column: the same verdicts as ``check_record`` (the first field in schema
    order that fails names the reason), at a fraction of the cost — the stream worker's hot
    path decodes every event through here."""
    bad: dict[int, str] = {}
    columns: dict[str, list[Any]] = {}
    for field in schema:
        values = [r.get(field.name) for r in records]
        is_key = field.name in key_fields
        if is_key and field.dtype in INT_RANGES and str in set(map(type, values)):
            values = [decimal_key(v, field.dtype) for v in values]
        checked, errors = _check_column(values, field.dtype)
        if field.name == timestamp_field or is_key:
            missing = "the timestamp is missing" if field.name == timestamp_field else _KEY_MISSING
            if None in checked:
                errors.update((i, missing) for i, v in enumerate(checked) if v is None and i not in errors)
        for i, message in errors.items():
            bad.setdefault(i, f"field {field.name!r}: {message}")
        columns[field.name] = checked
    if bad:
        keep = [i for i in range(len(records)) if i not in bad]
        columns = {name: [values[i] for i in keep] for name, values in columns.items()}
        rejected.extend((positions[i], reason) for i, reason in bad.items())
        positions = [positions[i] for i in keep]
    rejected.sort()
    frame = pd.DataFrame({f.name: _column(columns[f.name], f.dtype) for f in schema})
    return DecodedBatch(frame, positions, rejected)


def _utc_millisecond_strings(texts: list[str]) -> list[int] | None:
    """Epoch ms of strings all in the form ``2026-11-26T13:56:29.730Z`` (JavaScript's
    ``toISOString``, and most producers'), parsed by numpy at a third of pandas' ISO-8601 cost;
    None when any string has another form (the general parser takes the batch then)."""
    if not all(len(t) == 24 and t[23] == "Z" and t[10] == "T" and t[19] == "." for t in texts):
        return None
    try:
        parsed: list[int] = np.array([t[:23] for t in texts], dtype="datetime64[ms]").astype(np.int64).tolist()
    except ValueError:
        return None
    return parsed


def _check_column(values: list[Any], dtype: str) -> tuple[list[Any], dict[int, str]]:
    """A column's values converted as ``_check`` converts them, and the message of each bad one."""
    simple = _SIMPLE_TYPES.get(dtype)
    if simple is not None:
        # The types present, found at C speed; the per-value pass only when some are wrong.
        present = set(map(type, values))
        if present <= {*simple, type(None)}:
            outliers = _outliers(values, dtype) if dtype in _NUMERIC else []  # a few C passes
            errors = {i: _message(values[i], dtype) for i in outliers}
        else:  # some of the wrong type: every value judged on its own (types and ranges)
            errors = {i: message for i, v in enumerate(values) if v is not None and (message := _problem(v, dtype))}
        if errors:
            values = [None if i in errors else v for i, v in enumerate(values)]
        if dtype in ("float64", "float32") and int in present:
            values = [float(v) if type(v) is int else v for v in values]
        return values, errors
    if dtype == "timestamp":
        return _timestamp_column(values)
    checked: list[Any] = []
    errors = {}
    for i, value in enumerate(values):
        try:
            checked.append(_check(value, dtype))
        except ValueError as exc:
            errors[i] = str(exc)
            checked.append(None)
    return checked, errors


# Exact types (``type(v) in ...``): bool is not an int here, as in ``_check``.
_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int64": (int,),
    "int32": (int,),
    "float64": (float, int),
    "float32": (float, int),
    "bool": (bool,),
}
_NUMERIC = frozenset({"int64", "int32", "float64", "float32"})


def _problem(value: Any, dtype: str) -> str | None:
    """Why ``value`` does not fit ``dtype`` (a subclass of the right type included), or None."""
    if type(value) in _SIMPLE_TYPES[dtype]:
        try:
            _check(value, dtype)
        except ValueError as exc:
            return str(exc)
        return None
    return _message(value, dtype)


def _message(value: Any, dtype: str) -> str:
    try:
        _check(value, dtype)
    except ValueError as exc:
        return str(exc)
    return f"unexpected {type(value).__name__}"  # a subclass of the right type: refused, as orjson never makes one


def _timestamp_column(values: list[Any]) -> tuple[list[Any], dict[int, str]]:
    """Epoch ms pass through; ISO-8601 strings are parsed in one vectorized call; anything else
    (and strings pandas cannot parse) goes through ``parse_timestamp_ms`` for its verdict, as do
    values outside the years a timestamp may have."""
    result: list[Any] = list(values)
    errors: dict[int, str] = {}
    strings = [i for i, v in enumerate(values) if type(v) is str]
    if strings:
        texts = [values[i] for i in strings]
        parsed_ms = _utc_millisecond_strings(texts)
        if parsed_ms is not None:
            for i, value_ms in zip(strings, parsed_ms, strict=True):
                result[i] = value_ms
        else:
            parsed = pd.to_datetime(pd.Series(texts), format="ISO8601", utc=True, errors="coerce", cache=False)
            ms = (parsed.to_numpy(dtype="datetime64[ns]").astype("int64") // 1_000_000).tolist()
            for i, value_ms, missing in zip(strings, ms, parsed.isna().tolist(), strict=True):
                result[i] = None if missing else value_ms
    try:
        suspects = set(timestamp_outliers(result))  # min and max, when all are epoch ms (the usual column)
    except TypeError:  # datetimes, objects, ... among them: every value is judged on its own below
        suspects = set(range(len(values)))
    for i, value in enumerate(values):
        if value is None or (
            i not in suspects and (type(value) is int or (result[i] is not None and type(value) is str))
        ):
            continue
        try:
            result[i] = parse_timestamp_ms(value)
        except ValueError as exc:
            errors[i] = str(exc)
            result[i] = None
    return result, errors


def _column(values: list[Any], dtype: str) -> Any:
    """A typed column; integers stay exact (nullable Int64) instead of turning float on a null."""
    if dtype in ("int64", "int32"):
        return pd.array(values, dtype="Int64")
    if dtype == "timestamp":
        if None not in values:  # the usual case, at a seventh of to_datetime's fixed cost per batch
            return pd.DatetimeIndex(np.array(values, dtype="datetime64[ms]")).tz_localize("UTC")
        return pd.to_datetime(pd.array(values, dtype="Int64"), unit="ms", utc=True)
    return values
