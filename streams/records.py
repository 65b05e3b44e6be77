"""Decoding source records into typed columns, with a reason for every record that is rejected.

Used by the stream worker and by the offline replay, so both accept and reject the same records.
Values are JSON objects or Avro records (``value_format``, see ``featurebus.streams.avro``).
Timestamps are ISO-8601 strings (a zone is required, or UTC is assumed), epoch milliseconds, or
datetimes (what Avro's ``timestamp-millis`` logical type decodes to).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd

from featurebus.schemas.specs import FieldSpec, StreamSourceSpec
from featurebus.streams.avro import avro_parser, schema_guarantees_types
from featurebus.types import Array, Map, Struct, parse_dtype

__all__ = ["DecodedBatch", "check_record", "decode_json_records", "decode_records", "parse_timestamp_ms"]


@dataclass
class DecodedBatch:
    """``frame`` holds the good records (timestamps as UTC datetimes); ``rejected`` the others."""

    frame: pd.DataFrame
    accepted_indexes: list[int]  # position of each frame row in the input
    rejected: list[tuple[int, str]]  # (position in the input, reason)


def parse_timestamp_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a timestamp")
        return int(value)
    if isinstance(value, datetime):
        return _exact_ms(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000) if parsed.microsecond % 1000 == 0 else _exact_ms(parsed)
    raise ValueError(f"{value!r} is not a timestamp (use an ISO-8601 string or epoch milliseconds)")


def _exact_ms(parsed: datetime) -> int:
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def _check(value: Any, dtype: str) -> Any:
    """The value converted to its column type, or ValueError saying why it cannot be."""
    if value is None:
        return None
    if dtype == "string":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return value
    if dtype in ("int64", "int32"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if dtype in ("float64", "float32"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if dtype == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
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
        return [_check(v, dtype.element_type.name) for v in value]
    if isinstance(dtype, Map):
        if isinstance(value, list):  # Avro maps may arrive as key/value pairs
            value = dict(value)
        if not isinstance(value, dict):
            raise ValueError(f"expected a map (an object), got {type(value).__name__}")
        return {str(k): _check(v, dtype.value_type.name) for k, v in value.items()}
    if isinstance(dtype, Struct):
        if not isinstance(value, dict):
            raise ValueError(f"expected a struct (an object), got {type(value).__name__}")
        return {f.name: _check(value.get(f.name), f.dtype.name) for f in dtype.fields}
    return value


def check_record(record: Any, schema: Sequence[FieldSpec], timestamp_field: str) -> tuple[list[Any], str | None]:
    """The record's values in schema order, converted, or the reason it is unusable.

    One definition of a valid record for the stream worker, the offline replay and ingestion.
    """
    if not isinstance(record, dict):
        return [], "value is not an object (a JSON object or an Avro record)"
    row: list[Any] = []
    for field in schema:
        try:
            value = _check(record.get(field.name), field.dtype)
        except ValueError as exc:
            return [], f"field {field.name!r}: {exc}"
        if value is None and field.name == timestamp_field:
            return [], f"field {field.name!r}: the timestamp is missing"
        row.append(value)
    return row, None


def decode_json_records(payloads: Sequence[bytes | None], schema: Sequence[FieldSpec], timestamp_field: str) -> DecodedBatch:
    return _decode(payloads, schema, timestamp_field, _parse_json)


def decode_records(payloads: Sequence[bytes | None], source: StreamSourceSpec) -> DecodedBatch:
    """A batch of the source's record values decoded by its ``value_format``."""
    kafka = source.kafka
    if kafka.value_format == "json":
        return _decode(payloads, source.schema, kafka.timestamp_field, _parse_json)
    if kafka.avro_schema is None:  # a spec from before Avro, or hand-built: say what is missing
        raise ValueError(f"source {source.name!r} has value_format {kafka.value_format!r} but no avro_schema")
    parse = avro_parser(kafka.avro_schema, confluent=kafka.value_format == "confluent_avro")
    if schema_guarantees_types(kafka.avro_schema, tuple((f.name, f.dtype) for f in source.schema)):
        return _decode_typed(payloads, source.schema, kafka.timestamp_field, parse)
    return _decode(payloads, source.schema, kafka.timestamp_field, parse)


def _decode_typed(payloads: Sequence[bytes | None], schema: Sequence[FieldSpec], timestamp_field: str,
                  parse: Callable[[bytes], Any]) -> DecodedBatch:
    """Records whose writer schema already guarantees every column's type: decoded one by one,
    then each column is built in one pass over the batch, without per-value checks."""
    records: list[Any] = []
    accepted: list[int] = []
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
        if record[timestamp_field] is None:
            rejected.append((position, f"field {timestamp_field!r}: the timestamp is missing"))
            continue
        records.append(record)
        accepted.append(position)
    frame = pd.DataFrame({f.name: _column([r[f.name] for r in records], f.dtype) for f in schema})
    return DecodedBatch(frame, accepted, rejected)


def _parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"value is not JSON: {exc}") from None


def _decode(payloads: Sequence[bytes | None], schema: Sequence[FieldSpec], timestamp_field: str,
            parse: Callable[[bytes], Any]) -> DecodedBatch:
    names = [f.name for f in schema]
    columns: dict[str, list[Any]] = {n: [] for n in names}
    accepted: list[int] = []
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
        row, reason = check_record(record, schema, timestamp_field)
        if reason is not None:
            rejected.append((position, reason))
            continue
        for name, value in zip(names, row, strict=True):
            columns[name].append(value)
        accepted.append(position)
    frame = pd.DataFrame({f.name: _column(columns[f.name], f.dtype) for f in schema})
    return DecodedBatch(frame, accepted, rejected)


def _column(values: list[Any], dtype: str) -> Any:
    """A typed column; integers stay exact (nullable Int64) instead of turning float on a null."""
    if dtype in ("int64", "int32"):
        return pd.array(values, dtype="Int64")
    if dtype == "timestamp":
        return pd.to_datetime(pd.array(values, dtype="Int64"), unit="ms", utc=True)
    return values
