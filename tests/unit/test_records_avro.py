"""Avro and Confluent-wire Avro source records decode to the same frames as JSON records, and
malformed ones are rejected with a reason (the worker dead-letters them)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import fastavro
import orjson
import pytest

from featurebus import Field, KafkaConfig, StreamSource
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.schemas.specs import FieldSpec, KafkaConfigSpec, StreamSourceSpec
from featurebus.streams.avro import confluent_frame
from featurebus.streams.records import decode_records
from featurebus.types import Array, Float64, Int64, Map, String, Struct, Timestamp

AVRO_SCHEMA = {
    "type": "record",
    "name": "Transaction",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "where", "type": {"type": "record", "name": "Where", "fields": [{"name": "lat", "type": "double"}]}},
    ],
}
SCHEMA = (
    FieldSpec("user_id", "string"),
    FieldSpec("amount", "float64"),
    FieldSpec("ts", "timestamp"),
    FieldSpec("tags", "array<string>"),
    FieldSpec("counts", "map<string,int64>"),
    FieldSpec("where", "struct<lat:float64>"),
)
RECORDS = [
    {
        "user_id": "u1",
        "amount": 12.5,
        "ts": datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC),
        "tags": ["a"],
        "counts": {"x": 1},
        "where": {"lat": 1.5},
    },
    {
        "user_id": "u2",
        "amount": None,
        "ts": datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC),
        "tags": [],
        "counts": {},
        "where": {"lat": -2.0},
    },
]


def _binary(record: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), record)
    return out.getvalue()


def _source(value_format: str) -> StreamSourceSpec:
    text = json.dumps(AVRO_SCHEMA) if value_format != "json" else None
    return StreamSourceSpec("tx", SCHEMA, KafkaConfigSpec(("tx",), "ts", value_format=value_format, avro_schema=text))


def _json(record: dict[str, object]) -> bytes:
    return orjson.dumps({**record, "ts": int(record["ts"].timestamp() * 1000)})  # type: ignore[attr-defined]


@pytest.mark.parametrize("value_format", ["avro", "confluent_avro"])
def test_avro_records_decode_to_the_same_frame_as_json(value_format: str) -> None:
    wrap = (lambda b: confluent_frame(7, b)) if value_format == "confluent_avro" else (lambda b: b)
    avro = decode_records([wrap(_binary(r)) for r in RECORDS], _source(value_format))
    plain = decode_records([_json(r) for r in RECORDS], _source("json"))
    assert avro.rejected == [] and avro.accepted_indexes == [0, 1]
    assert avro.frame.equals(plain.frame)
    assert avro.frame["ts"].iloc[0] == datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert avro.frame["counts"].iloc[0] == {"x": 1} and avro.frame["where"].iloc[1] == {"lat": -2.0}


def test_malformed_avro_is_rejected_with_a_reason_and_the_rest_kept() -> None:
    good = _binary(RECORDS[0])
    payloads = [good[:-3], good + b"\x00\x01", None, good, b"\x01" + good]
    plain = decode_records(payloads, _source("avro"))
    assert plain.accepted_indexes == [3]
    reasons = dict(plain.rejected)
    assert "not Avro" in reasons[0] and "trailing bytes" in reasons[1] and "no value" in reasons[2]
    framed = decode_records([good, confluent_frame(1, good), b"\x00\x00"], _source("confluent_avro"))
    assert framed.accepted_indexes == [1]
    assert all("Confluent wire format" in reason for _, reason in framed.rejected)


def test_avro_type_mismatch_against_the_declared_schema_is_rejected() -> None:
    schema = (FieldSpec("user_id", "int64"), FieldSpec("ts", "timestamp"))
    source = StreamSourceSpec("tx", schema, KafkaConfigSpec(("tx",), "ts", "avro", avro_schema=json.dumps(AVRO_SCHEMA)))
    batch = decode_records([_binary(RECORDS[0])], source)
    assert batch.rejected == [(0, "field 'user_id': expected an integer, got 'u1'")]


def test_kafka_config_avro_compiles_into_the_spec() -> None:
    source = StreamSource(
        name="tx",
        schema=[
            Field("user_id", String),
            Field("amount", Float64),
            Field("ts", Timestamp),
            Field("tags", Array(String)),
            Field("counts", Map(String, Int64)),
            Field("where", Struct([Field("lat", Float64)])),
        ],
        stream_config=KafkaConfig(
            topics="tx", timestamp_field="ts", value_format="confluent_avro", avro_schema=AVRO_SCHEMA
        ),
    )
    spec = compile_workspace("w", [source]).source("tx")
    assert spec.kafka.value_format == "confluent_avro"
    assert json.loads(spec.kafka.avro_schema or "") == AVRO_SCHEMA
    assert decode_records([confluent_frame(3, _binary(RECORDS[0]))], spec).accepted_indexes == [0]


def test_avro_schema_errors_name_the_config_and_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"needs avro_schema.*Pass avro_schema="):
        KafkaConfig(topics="tx", timestamp_field="ts", value_format="avro")
    with pytest.raises(DefinitionError, match=r"not a usable Avro record schema"):
        KafkaConfig(topics="tx", timestamp_field="ts", value_format="avro", avro_schema={"type": "record", "name": "x"})


def test_avro_records_with_nested_types_write_to_the_offline_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    from featurebus.platform.offline.store import open_store, write_partition

    source = _source("avro")
    batch = decode_records([_binary(r) for r in RECORDS], source)
    files = write_partition(open_store(tmp_path / "store"), "w", source, "tx", 0, batch.frame, [5, 6])
    table = pq.read_table(files[0])
    assert table.column("counts").to_pylist() == [[("x", 1)], []]
    assert table.column("where").to_pylist() == [{"lat": 1.5}, {"lat": -2.0}]
    assert table.column("tags").to_pylist() == [["a"], []]


FLAT = {
    "type": "record",
    "name": "Flat",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "n", "type": ["null", "long"]},
        {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    ],
}
FLAT_SCHEMA = (
    FieldSpec("user_id", "string"),
    FieldSpec("amount", "float64"),
    FieldSpec("n", "int64"),
    FieldSpec("ts", "timestamp"),
)


def test_schema_guarantees_only_matching_scalar_columns() -> None:
    from featurebus.streams.avro import schema_guarantees_types

    text = json.dumps(FLAT)
    assert schema_guarantees_types(text, tuple((f.name, f.dtype) for f in FLAT_SCHEMA))
    assert not schema_guarantees_types(text, (("n", "int32"),))  # a long may not fit an int32 column
    assert not schema_guarantees_types(text, (("user_id", "int64"),))
    assert not schema_guarantees_types(text, (("missing", "string"),))
    assert not schema_guarantees_types(json.dumps(AVRO_SCHEMA), tuple((f.name, f.dtype) for f in SCHEMA))


def test_typed_fast_path_matches_the_checked_path() -> None:
    parsed = fastavro.parse_schema(FLAT)
    rows = [
        {"user_id": "a", "amount": None, "n": 7, "ts": 1_000},
        {"user_id": "b", "amount": 2.5, "n": None, "ts": None},
        {"user_id": "c", "amount": 1.0, "n": 2**30, "ts": 2_000},
    ]

    def binary(row: dict[str, object]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, row)
        return out.getvalue()

    payloads = [binary(r) for r in rows] + [b"\x02"]
    fast = decode_records(
        payloads,
        StreamSourceSpec("f", FLAT_SCHEMA, KafkaConfigSpec(("f",), "ts", "avro", avro_schema=json.dumps(FLAT))),
    )
    # The same bytes through the checked path: declare n as int32 so the schema proves nothing.
    checked_schema = (*FLAT_SCHEMA[:2], FieldSpec("n", "int32"), FLAT_SCHEMA[3])
    checked = decode_records(
        payloads,
        StreamSourceSpec("f", checked_schema, KafkaConfigSpec(("f",), "ts", "avro", avro_schema=json.dumps(FLAT))),
    )
    assert fast.accepted_indexes == checked.accepted_indexes == [0, 2]
    assert fast.rejected[0] == (1, "field 'ts': the timestamp is missing") == checked.rejected[0]
    assert "not Avro" in fast.rejected[1][1]
    assert fast.frame.equals(checked.frame)
    assert fast.frame["n"].tolist() == [7, 2**30] and str(fast.frame["n"].dtype) == "Int64"
