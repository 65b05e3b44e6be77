"""A workspace with a column of every type, and records that are good or bad by construction.

Used by the poison-record tests (``tests/security``): good records are built from in-range values
only, and each bad record is a good one with one thing broken, so which records must be
dead-lettered is known without asking the code under test.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import fastavro
import orjson
from hypothesis import strategies as st

from featurebus.schemas.kinds import AggregationFunction, TransformationMode, ValueFormat
from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.streams.avro import avro_schema_text

HOUR = 3_600_000

# Every scalar type, nullable, and the composites nested.
FIELDS = (
    FieldSpec("user_id", "string"),
    FieldSpec("n", "int64"),
    FieldSpec("small", "int32"),
    FieldSpec("amount", "float64"),
    FieldSpec("ratio", "float32"),
    FieldSpec("flag", "bool"),
    FieldSpec("ts", "timestamp"),
    FieldSpec("seen", "timestamp"),
    FieldSpec("tags", "array<int64>"),
    FieldSpec("attrs", "map<string,float64>"),
    FieldSpec("point", "struct<lat:float64,at:timestamp>"),
)
# The Avro twin: scalars only (the typed fast path decodes it), keyed by an int64 account.
FLAT_FIELDS = (
    FieldSpec("account_id", "int64"),
    FieldSpec("n", "int64"),
    FieldSpec("small", "int32"),
    FieldSpec("amount", "float64"),
    FieldSpec("ratio", "float32"),
    FieldSpec("flag", "bool"),
    FieldSpec("ts", "timestamp"),
)
FLAT_AVRO: dict[str, Any] = {
    "type": "record",
    "name": "Flat",
    "fields": [
        {"name": "account_id", "type": ["null", "long"]},
        {"name": "n", "type": ["null", "long"]},
        {"name": "small", "type": ["null", "int"]},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "ratio", "type": ["null", "float"]},
        {"name": "flag", "type": ["null", "boolean"]},
        {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    ],
}
# Python mode: one transformation call per record, raising for one value (a bug in user code
# that only some records reach).
UNLUCKY = TransformationSpec(
    TransformationMode.PYTHON,
    "unlucky",
    "def unlucky(row):\n    if str(row['n']) == '13':\n        raise ValueError('13 is unlucky')\n    return row\n",
)
PASSTHROUGH = TransformationSpec(TransformationMode.PANDAS, "passthrough", "def passthrough(df):\n    return df\n")


def _view(name: str, source: str, entity: str, key: str, transformation: TransformationSpec) -> StreamFeatureViewSpec:
    return StreamFeatureViewSpec(
        name=name,
        source=source,
        entities=(entity,),
        join_keys=(key,),
        timestamp_field="ts",
        transformation=transformation,
        aggregations=(
            AggregationSpec(
                f"{key}_count_1h",
                AggregationFunction.COUNT,
                key,
                dict((f.name, f.dtype) for f in (*FIELDS, *FLAT_FIELDS))[key],
                HOUR,
                "int64",
            ),
            AggregationSpec("amount_sum_1h", AggregationFunction.SUM, "amount", "float64", HOUR, "float64"),
        ),
    )


def poison_workspace(
    name: str, json_topic: str = "events", avro_topic: str = "flat_events", push: bool = False
) -> WorkspaceSpec:
    """``events`` (JSON, every type; a push source with ``push``) and ``flat_events`` (Avro)."""
    return WorkspaceSpec(
        name=name,
        entities=(
            EntitySpec("user", (FieldSpec("user_id", "string"),)),
            EntitySpec("account", (FieldSpec("account_id", "int64"),)),
        ),
        stream_sources=(
            StreamSourceSpec(
                "events", FIELDS, KafkaConfigSpec((json_topic,), "ts", watermark_delay_ms=24 * HOUR), push=push
            ),
            StreamSourceSpec(
                "flat_events",
                FLAT_FIELDS,
                KafkaConfigSpec(
                    (avro_topic,),
                    "ts",
                    ValueFormat.AVRO,
                    watermark_delay_ms=24 * HOUR,
                    avro_schema=avro_schema_text(FLAT_AVRO),
                ),
            ),
        ),
        stream_feature_views=(
            _view("user_events", "events", "user", "user_id", UNLUCKY),
            _view("account_events", "flat_events", "account", "account_id", PASSTHROUGH),
        ),
    )


# -- good values, in range ---------------------------------------------------------------------
_finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
_finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
_int64 = st.integers(-(2**63), 2**63 - 1).filter(lambda n: n != 13)  # 13: the transformation's failure
_int32 = st.integers(-(2**31), 2**31 - 1)
_text = st.text(max_size=12)


def good_json(ts_ms: int) -> st.SearchStrategy[dict[str, Any]]:
    """A valid record of ``events`` at ``ts_ms`` (given, increasing: never late)."""
    nullable = st.none().__or__
    return st.fixed_dictionaries(
        {"user_id": _text, "ts": st.sampled_from([ts_ms, _iso(ts_ms)])},
        optional={
            "n": nullable(_int64),
            "small": nullable(_int32),
            "amount": nullable(_finite),
            "ratio": nullable(_finite32),
            "flag": nullable(st.booleans()),
            "seen": nullable(st.sampled_from([ts_ms, _iso(ts_ms), "2026-01-02T03:04:05+01:00"])),
            "tags": nullable(st.lists(_int64, max_size=3)),
            "attrs": nullable(st.dictionaries(_text, _finite, max_size=2)),
            "point": nullable(st.fixed_dictionaries({"lat": _finite}, optional={"at": st.just(ts_ms)})),
        },
    )


def _iso(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- one thing broken --------------------------------------------------------------------------
# (field, bad value): every one is outside its type, or a missing key or timestamp.
JSON_BREAKAGES: list[tuple[str, Any]] = [
    ("n", 2**63),
    ("n", -(2**63) - 1),
    ("n", 2**64),
    ("n", 10**30),
    ("n", 1.5),
    ("n", "7"),
    ("n", True),
    ("small", 2**31),
    ("small", -(2**31) - 1),
    ("ratio", 1e39),
    ("ratio", -1e300),
    ("amount", 10**400),
    ("amount", "1.0"),
    ("flag", 1),
    ("flag", "true"),
    ("user_id", None),
    ("user_id", True),
    ("user_id", 5),
    ("user_id", 1.5),
    ("user_id", ["u"]),
    ("ts", None),
    ("ts", "2026-11-26T10:00:00Z\u0000"),
    ("ts", "yesterday"),
    ("ts", 10**20),
    ("ts", -(10**19)),
    ("ts", "9999-12-31T23:59:59Z"),
    ("ts", True),
    ("ts", {"ms": 1}),
    ("seen", "2026-11-26T10:00:00\u0000"),
    ("seen", 2**63),
    ("tags", [1, 2**63]),
    ("tags", {"a": 1}),
    ("tags", [[1]]),
    ("tags", 5),
    ("attrs", {"a": "x"}),
    ("attrs", {"a": 10**400}),
    ("attrs", [1, 2]),
    ("point", {"lat": "north"}),
    ("point", {"lat": 1.0, "at": "never"}),
    ("point", [1.0]),
    ("n", {"deep": [{"er": 1}]}),
]
# Payloads bad as a whole: not JSON, not an object, invalid UTF-8, a lone surrogate, NaN literals.
BAD_JSON_PAYLOADS: list[bytes] = [
    b"not json",
    b"[1, 2]",
    b'"text"',
    b"null",
    b'{"user_id": "\xff\xfe"}',
    b'{"user_id": "\\ud800"}',
    b'{"user_id": "u", "amount": NaN, "ts": 1}',
    b'{"user_id": "u", "amount": Infinity, "ts": 1}',
    b'{"user_id": "u", "amount": 1e400, "ts": 1}',
    b"",
    b"{" * 2000,
]


def json_batch(draw: Any, start_ms: int, size: int) -> tuple[list[bytes], list[bool]]:
    """``(payloads, is_good)``: good records, records with one field broken, bad payloads, and
    records a transformation refuses (n == 13), shuffled; ``draw`` is hypothesis' draw."""
    payloads: list[bytes] = []
    good: list[bool] = []
    for i in range(size):
        kind = draw(st.sampled_from(["good", "good", "broken", "payload", "unlucky", "huge"]))
        record = draw(good_json(start_ms + i))
        if kind == "broken":
            field, value = draw(st.sampled_from(JSON_BREAKAGES))
            record[field] = value
            payloads.append(
                orjson.dumps(record, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
                if _json_safe(value)
                else json.dumps(record).encode()
            )
        elif kind == "payload":
            payloads.append(draw(st.sampled_from(BAD_JSON_PAYLOADS)))
        elif kind == "unlucky":
            record["n"] = 13
            payloads.append(orjson.dumps(record))
        elif kind == "huge":  # a long string is a fine string
            record["user_id"] = "u" * draw(st.integers(10_000, 200_000))
            payloads.append(orjson.dumps(record))
        else:
            payloads.append(orjson.dumps(record))
        good.append(kind in ("good", "huge"))
    return payloads, good


def _json_safe(value: Any) -> bool:
    """orjson refuses integers beyond 64 bits (the json module writes them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(_json_safe(v) for v in value.values())
    return True


# -- Avro: the writer's types are right, the values may not be ---------------------------------
_PARSED_FLAT = fastavro.parse_schema(FLAT_AVRO)


def avro_binary(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _PARSED_FLAT, record)
    return out.getvalue()


AVRO_BREAKAGES: list[tuple[str, Any]] = [
    ("amount", math.nan),
    ("amount", math.inf),
    ("amount", -math.inf),
    ("ratio", math.nan),
    ("ratio", math.inf),
    ("ts", 2**62),
    ("ts", -(2**62)),
    ("ts", None),
    ("account_id", None),
]


def avro_batch(draw: Any, start_ms: int, size: int) -> tuple[list[bytes], list[bool]]:
    payloads: list[bytes] = []
    good: list[bool] = []
    for i in range(size):
        kind = draw(st.sampled_from(["good", "good", "broken", "truncated"]))
        record = {
            "account_id": draw(_int64),
            "n": draw(st.none() | _int64),
            "small": draw(st.none() | _int32),
            "amount": draw(st.none() | _finite),
            "ratio": draw(st.none() | _finite32),
            "flag": draw(st.none() | st.booleans()),
            "ts": start_ms + i,
        }
        if kind == "broken":
            field, value = draw(st.sampled_from(AVRO_BREAKAGES))
            record[field] = value
        payload = avro_binary(record)
        if kind == "truncated":
            payload = payload[:-1]
        payloads.append(payload)
        good.append(kind == "good")
    return payloads, good
