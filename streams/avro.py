"""Avro source records: plain Avro binary, or the Confluent wire format around it.

fastavro rather than the ``avro`` package: its reader is compiled (Cython), an order of magnitude
faster per record than ``avro``'s pure-Python ``DatumReader``, and it parses a schema once into a
reusable form. Avro has no batch decoder for schemaless records, so a batch is decoded with one
compiled call per record; the columns are then built once per batch (``streams.records``).

The Confluent wire format is ``0x00`` + a 4-byte big-endian schema id + the Avro binary. With no
schema registry, the writer's schema is the one given in the source's ``KafkaConfig``; the id is
not checked against it (no registry to ask), so producers must write with that schema.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import fastavro

__all__ = [
    "CONFLUENT_MAGIC",
    "avro_field_names",
    "avro_parser",
    "avro_schema_text",
    "confluent_frame",
    "schema_guarantees_types",
]

CONFLUENT_MAGIC = 0
_HEADER_BYTES = 5


def avro_schema_text(schema: str | dict[str, Any]) -> str:
    """The schema as stable JSON text (what specs store); ValueError saying why it is unusable."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("the top-level type must be a record")
    if not isinstance(schema.get("fields"), list) or not schema["fields"]:
        raise ValueError("the record has no fields")
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several types (SchemaParseException, KeyError, ...)
        raise ValueError(str(exc) or type(exc).__name__) from None
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def avro_field_names(schema_text: str) -> frozenset[str]:
    return frozenset(f["name"] for f in json.loads(schema_text)["fields"])


@lru_cache(maxsize=64)
def _parsed(schema_text: str) -> Any:
    # Read timestamp-millis as its plain long: epoch milliseconds is what columns are built from,
    # and skipping the datetime fastavro would build (and we would convert back) halves decode time.
    return fastavro.parse_schema(_without_millis_logical_type(json.loads(schema_text)))


def _without_millis_logical_type(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_millis_logical_type(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "long" and node.get("logicalType") in ("timestamp-millis", "local-timestamp-millis"):
        return "long"
    return {k: _without_millis_logical_type(v) for k, v in node.items()}


def avro_parser(schema_text: str, confluent: bool) -> Callable[[bytes], Any]:
    """A function decoding one record's bytes to a dict; ValueError with the reason it cannot."""
    parsed = _parsed(schema_text)
    read = fastavro.schemaless_reader

    def parse(payload: bytes) -> Any:
        start = 0
        if confluent:
            if len(payload) < _HEADER_BYTES or payload[0] != CONFLUENT_MAGIC:
                raise ValueError("not in the Confluent wire format (magic byte 0 and a 4-byte schema id)")
            start = _HEADER_BYTES
        buffer = io.BytesIO(payload)
        buffer.seek(start)
        try:
            record = read(buffer, parsed, None)
        except Exception as exc:  # truncated or corrupt binary: EOFError, ValueError, IndexError, ...
            raise ValueError(f"value is not Avro of the source's schema: {type(exc).__name__}: {exc}") from None
        if buffer.tell() != len(payload):
            raise ValueError(f"value is not Avro of the source's schema: {len(payload) - buffer.tell()} trailing bytes")
        return record

    return parse


# Avro types whose every value is already a valid value of these column types, as decoded.
_GUARANTEES: dict[str, frozenset[str]] = {
    "string": frozenset({"string"}),
    "long": frozenset({"int64"}),
    "int": frozenset({"int32", "int64"}),
    "double": frozenset({"float64"}),
    "float": frozenset({"float32", "float64"}),
    "boolean": frozenset({"bool"}),
    "timestamp-millis": frozenset({"timestamp"}),
}


@lru_cache(maxsize=256)
def schema_guarantees_types(schema_text: str, columns: tuple[tuple[str, str], ...]) -> bool:
    """Whether the writer's schema alone proves every decoded value fits its column's type (so
    records need no per-value check, only the null check of the timestamp). Scalars only: any
    composite or mismatched column keeps the per-value checks."""
    fields = {f["name"]: f["type"] for f in json.loads(schema_text)["fields"]}
    for name, dtype in columns:
        kind = _scalar_kind(fields.get(name))
        if kind is None or dtype not in _GUARANTEES.get(kind, frozenset()):
            return False
    return True


def _scalar_kind(avro_type: Any) -> str | None:
    if isinstance(avro_type, list):  # a union: only ["null", T] (in either order) keeps T's guarantee
        rest = [t for t in avro_type if t != "null"]
        return _scalar_kind(rest[0]) if len(rest) == 1 else None
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "long" and avro_type.get("logicalType") in (
            "timestamp-millis",
            "local-timestamp-millis",
        ):
            return "timestamp-millis"
        return None if "logicalType" in avro_type else _scalar_kind(avro_type.get("type"))
    return avro_type if isinstance(avro_type, str) and avro_type in _GUARANTEES else None


def confluent_frame(schema_id: int, avro_binary: bytes) -> bytes:
    """Wrap Avro binary in the Confluent wire format (what producers with a registry write)."""
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + avro_binary
