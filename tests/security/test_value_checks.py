"""Poison records without a broker: every value is checked against its declared type's range at
ingestion and at decoding, and the stream engine sets aside exactly the records it cannot use,
with the reason, and never fails the batch (issue #13, items 2 and 5)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import decode_partials
from featurebus.schemas.errors import RecordValidationError
from featurebus.schemas.specs import FieldSpec
from featurebus.serving.app import create_app
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.serving.service import FeatureServer
from featurebus.streams.isolation import isolate_failures
from featurebus.streams.records import check_record, decode_json_records, decode_records
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine
from featurebus.streams.values import (
    TIMESTAMP_MAX_MS,
    TIMESTAMP_MIN_MS,
    check_value,
    decimal_key,
    float_outliers,
    int_outliers,
    parse_timestamp_ms,
    timestamp_outliers,
)
from tests.support.poison import avro_batch, json_batch, poison_workspace
from tests.unit.test_serving_http import WRITER, _auth, _keys

NOW_MS = 1_795_687_200_000  # 2026-11-26T10:00:00Z

# -- one value against its type ----------------------------------------------------------------
ACCEPTED: list[tuple[Any, str, Any]] = [
    (2**63 - 1, "int64", 2**63 - 1),
    (-(2**63), "int64", -(2**63)),
    (2**31 - 1, "int32", 2**31 - 1),
    (3, "float64", 3.0),
    (1e308, "float64", 1e308),
    (3.4e38, "float32", 3.4e38),
    (None, "int64", None),
    ("", "string", ""),
    (False, "bool", False),
    ("2026-11-26T10:00:00Z", "timestamp", NOW_MS),
    ([1, None, 2**63 - 1], "array<int64>", [1, None, 2**63 - 1]),
    ({"a": 1}, "map<string,float64>", {"a": 1.0}),
    (
        {"lat": 1, "at": "2026-11-26T10:00:00Z", "extra": 1},
        "struct<lat:float64,at:timestamp>",
        {"lat": 1.0, "at": NOW_MS},
    ),
]
REFUSED: list[tuple[Any, str, str]] = [
    (2**63, "int64", "out of range for int64"),
    (-(2**63) - 1, "int64", "out of range"),
    (2**31, "int32", "out of range for int32"),
    (True, "int64", "expected an integer"),
    ("7", "int64", "expected an integer"),
    (1.0, "int64", "expected an integer"),
    (math.nan, "float64", "finite"),
    (math.inf, "float64", "finite"),
    (-math.inf, "float32", "finite"),
    (10**400, "float64", "out of range"),
    (1e39, "float32", "out of range for float32"),
    (True, "float64", "number"),
    (5, "string", "expected a string"),
    (1, "bool", "true or false"),
    ("2026-11-26T10:00:00Z\x00", "timestamp", "not an ISO-8601"),
    ("2026-11-26T10:00:00\x00", "timestamp", "not an ISO-8601"),
    ("9999-12-31T23:59:59Z", "timestamp", "1678-2261"),
    (2**63, "timestamp", "1678-2261"),
    (1e300, "timestamp", "1678-2261"),
    (math.nan, "timestamp", "not a timestamp"),
    (True, "timestamp", "boolean"),
    ([1, 2**63], "array<int64>", "[1]: "),
    ([[1]], "array<int64>", "expected an integer"),
    ({"a": 1}, "array<int64>", "an array"),
    ({"k": math.nan}, "map<string,float64>", "['k']: expected a finite"),
    ([1, 2], "map<string,int64>", "key/value pairs"),
    ({1: 2}, "map<string,int64>", "keys must be strings"),
    ({"lat": "north"}, "struct<lat:float64>", ".lat: expected a number"),
    ([1.0], "struct<lat:float64>", "a struct"),
]


@pytest.mark.parametrize(("value", "dtype", "converted"), ACCEPTED)
def test_values_within_their_type_are_accepted(value: Any, dtype: str, converted: Any) -> None:
    assert check_value(value, dtype) == converted


@pytest.mark.parametrize(("value", "dtype", "message"), REFUSED)
def test_values_outside_their_type_are_refused_with_the_reason(value: Any, dtype: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        check_value(value, dtype)
    assert message in str(info.value)


def test_a_huge_value_is_named_briefly() -> None:
    with pytest.raises(ValueError) as info:
        check_value("x" * 1_000_000, "int64")
    assert len(str(info.value)) < 200


def test_timestamp_bounds_are_the_years_pandas_nanoseconds_hold() -> None:
    assert parse_timestamp_ms("1678-01-01T00:00:00Z") == TIMESTAMP_MIN_MS
    assert parse_timestamp_ms("2261-12-31T23:59:59.999Z") == TIMESTAMP_MAX_MS
    assert datetime(1677, 9, 22, tzinfo=UTC).timestamp() * 1000 < TIMESTAMP_MIN_MS
    for outside in (TIMESTAMP_MIN_MS - 1, TIMESTAMP_MAX_MS + 1, "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError):
            parse_timestamp_ms(outside)


def test_only_integer_keys_may_come_as_decimal_strings() -> None:
    assert decimal_key("42", "int64") == 42 and decimal_key("-9223372036854775808", "int64") == -(2**63)
    assert decimal_key("42", "string") == "42"
    for not_decimal in ("4.2", "+1", " 1", "1e3", "0x1f", "", "١٢"):  # the last: Arabic-Indic digits
        assert decimal_key(not_decimal, "int64") == not_decimal  # left for check_value to refuse


@pytest.mark.parametrize(
    ("dtype", "values", "bad"),
    [
        ("int64", [1, None, 2**63, -(2**63), -(2**63) - 1], [2, 4]),
        ("int32", [2**31 - 1, 2**31], [1]),
        ("int64", [None, None], []),
        ("float64", [1.0, None, math.nan, 2, math.inf, 1e308, 1e308], [2, 4]),
        ("float64", [10**400, 1.0], [0]),
        ("float32", [3e38, -3.5e38, None], [1]),
    ],
)
def test_column_checks_find_exactly_the_values_out_of_range(dtype: str, values: list[Any], bad: list[int]) -> None:
    found = int_outliers(values, dtype) if dtype.startswith("int") else float_outliers(values, dtype)
    assert found == bad


def test_timestamp_column_check() -> None:
    assert timestamp_outliers([0, None, TIMESTAMP_MAX_MS + 1, TIMESTAMP_MIN_MS]) == [2]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(width=64)), max_size=20),
    st.sampled_from(["int64", "int32", "float64", "float32"]),
)
def test_column_checks_agree_with_the_value_check(values: list[Any], dtype: str) -> None:
    if dtype.startswith("int"):
        values = [v for v in values if not isinstance(v, float)]
        found = int_outliers(values, dtype)
    else:
        found = float_outliers(values, dtype)
    want = []
    for i, v in enumerate(values):
        try:
            check_value(v, dtype)
        except ValueError:
            want.append(i)
    assert found == want


# -- records: join keys ------------------------------------------------------------------------
SCHEMA = [FieldSpec("user_id", "string"), FieldSpec("account", "int64"), FieldSpec("ts", "timestamp")]
GOOD = {"user_id": "u1", "account": 7, "ts": NOW_MS}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_id": None}, "field 'user_id': the join key is missing"),
        ({"user_id": True}, "field 'user_id': expected a string, got bool"),
        ({"user_id": 5}, "field 'user_id': expected a string, got int"),
        ({"user_id": 1.5}, "field 'user_id': expected a string, got float"),
        ({"account": None}, "field 'account': the join key is missing"),
        ({"account": "7.0"}, "field 'account': expected an integer, got '7.0'"),
        ({"account": "9223372036854775808"}, "field 'account': 9223372036854775808 is out of range for int64"),
        ({"account": 2**63}, "field 'account': 9223372036854775808 is out of range for int64"),
        ({"ts": "2026-11-26T10:00:00Z\x00"}, "not an ISO-8601 timestamp"),
    ],
)
def test_keys_and_timestamps_are_strict_in_both_checkers(change: dict[str, Any], reason: str) -> None:
    record = {**GOOD, **change}
    _, why = check_record(record, SCHEMA, "ts", ("user_id", "account"))
    assert why is not None and reason in why
    decoded = decode_json_records([orjson.dumps(record)], SCHEMA, "ts", ("user_id", "account"))
    assert decoded.accepted_indexes == [] and reason in decoded.rejected[0][1]


def test_missing_key_field_is_refused_and_integer_keys_may_be_decimal_strings() -> None:
    keys = ("user_id", "account")
    assert check_record({"account": 7, "ts": 1}, SCHEMA, "ts", keys)[1] == "field 'user_id': the join key is missing"
    assert check_record({**GOOD, "account": "42"}, SCHEMA, "ts", keys) == (["u1", 42, NOW_MS], None)
    decoded = decode_json_records([orjson.dumps({**GOOD, "account": "42"}), orjson.dumps(GOOD)], SCHEMA, "ts", keys)
    assert decoded.frame["account"].tolist() == [42, 7]
    # Not a join key: no coercion, and a null is a null value.
    assert (
        check_record({**GOOD, "account": "42"}, SCHEMA, "ts", ("user_id",))[1]
        == "field 'account': expected an integer, got '42'"
    )
    assert check_record({**GOOD, "account": None}, SCHEMA, "ts", ("user_id",))[1] is None


def test_the_poison_integer_is_a_rejected_record_not_a_crash() -> None:
    """2**63 in an int64 column used to pass the type check and fail the batch in pandas."""
    batch = [orjson.dumps(GOOD), orjson.dumps({**GOOD, "account": 2**63}), orjson.dumps({**GOOD, "user_id": "u2"})]
    decoded = decode_json_records(batch, SCHEMA, "ts")
    assert decoded.accepted_indexes == [0, 2]
    assert decoded.rejected == [
        (
            1,
            "field 'account': 9223372036854775808 is out of range for int64 "
            "(-9223372036854775808 to 9223372036854775807)",
        )
    ]


# -- ingestion: 400 with the record's error, nothing written -----------------------------------
def _ingest_client() -> tuple[TestClient, MemoryRecordSink]:
    sink = MemoryRecordSink()
    spec = poison_workspace("test", push=True)
    service = IngestService(lambda: {"test": spec}, sink)
    return TestClient(
        create_app(FeatureServer(lambda: {"test": spec}, MemoryStore(), lambda: 0), _keys(), ingest=service)
    ), sink


GOOD_EVENT = {"user_id": "u1", "n": 1, "ts": "2026-11-26T10:00:00.000Z"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": 2**63}, "field 'n': 9223372036854775808 is out of range for int64"),
        ({"small": 2**31}, "field 'small': 2147483648 is out of range for int32"),
        ({"ratio": 1e39}, "out of range for float32"),
        ({"tags": [1, 2**63]}, "field 'tags': [1]: 9223372036854775808 is out of range"),
        ({"point": {"lat": 1.0, "at": "soon"}}, "field 'point': .at: 'soon' is not an ISO-8601 timestamp"),
        ({"user_id": None}, "field 'user_id': the join key is missing"),
        ({"user_id": True}, "field 'user_id': expected a string, got bool"),
        ({"user_id": 5}, "field 'user_id': expected a string, got int"),
        ({"user_id": 1.5}, "field 'user_id': expected a string, got float"),
        ({"ts": "2026-11-26T10:00:00Z\u0000"}, "field 'ts': '2026-11-26T10:00:00Z\\x00' is not an ISO-8601 timestamp"),
    ],
)
def test_ingest_answers_400_naming_the_record_and_writes_nothing(change: dict[str, Any], message: str) -> None:
    client, sink = _ingest_client()
    with client:
        body = {
            "workspace_name": "test",
            "records": {"events": [{"record": GOOD_EVENT}, {"record": {**GOOD_EVENT, **change}}]},
        }
        response = client.post("/ingest", content=orjson.dumps(body), headers=_auth(WRITER))
    assert response.status_code == 400, response.text
    errors = response.json()["recordErrors"]
    assert [(e["recordIndex"], message in e["errorMessage"]) for e in errors] == [(1, True)], errors
    assert sink.records == []


def test_ingest_of_a_missing_key_is_refused() -> None:
    service = IngestService(lambda: {"test": poison_workspace("test", push=True)}, MemoryRecordSink())
    with pytest.raises(RecordValidationError) as info:
        service.ingest("test", {"events": [{"record": {"n": 1, "ts": 1}}]}, dry_run=False)
    assert info.value.record_errors[0]["errorMessage"] == "field 'user_id': the join key is missing"


# -- the engine: bad records dead-lettered, good ones folded -----------------------------------
def _counted(sink: MemorySink, view: str) -> int:
    """Events folded into the tiles of ``view`` (time windows only: every record is a tile): the
    sum of the latest tiles' counts."""
    latest = {key: value for topic, _, key, value in sink.records if topic == f"features.{view}"}
    return sum(int(decode_partials(value)[0]) for value in latest.values() if value is not None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_engine_dead_letters_exactly_the_bad_records(data: st.DataObject) -> None:
    spec = poison_workspace("test")
    sink = MemorySink()
    engine = StreamEngine(spec, MemoryStore(), sink, lambda view: (f"features.{view}", 2))
    json_payloads, json_good = json_batch(data.draw, NOW_MS, data.draw(st.integers(1, 30)))
    avro_payloads, avro_good = avro_batch(data.draw, NOW_MS, data.draw(st.integers(1, 30)))
    records = [RawRecord("events", i % 2, i // 2, p) for i, p in enumerate(json_payloads)]
    records += [RawRecord("flat_events", i % 3, i // 3, p) for i, p in enumerate(avro_payloads)]
    engine.process(records)
    dead = {(r.topic, r.partition, r.offset) for r, _ in sink.dead}
    want_dead = {
        (r.topic, r.partition, r.offset) for r, good in zip(records, [*json_good, *avro_good], strict=True) if not good
    }
    assert dead == want_dead, [reason for _, reason in sink.dead]
    assert all(reason for _, reason in sink.dead)
    assert engine.counters.dead_lettered == len(sink.dead)
    assert _counted(sink, "user_events") == sum(json_good)
    assert _counted(sink, "account_events") == sum(avro_good)


def test_a_transformation_failing_on_one_record_dead_letters_only_that_record() -> None:
    spec = poison_workspace("test")
    sink = MemorySink()
    engine = StreamEngine(spec, MemoryStore(), sink, lambda view: (f"features.{view}", 2))
    events = [{"user_id": f"u{i % 3}", "n": 13 if i == 5 else i, "ts": NOW_MS + i} for i in range(12)]
    engine.process([RawRecord("events", 0, i, orjson.dumps(e)) for i, e in enumerate(events)])
    assert [(r.offset, reason) for r, reason in sink.dead] == [
        (
            5,
            "feature view 'user_events': TransformationError: transformation 'unlucky' raised ValueError: 13 is unlucky",
        )
    ]
    assert _counted(sink, "user_events") == 11 and engine.counters.transform_failed == 1


# -- bisection ---------------------------------------------------------------------------------
def _summing(bad: set[int], calls: list[int]) -> Any:
    def attempt(rows: np.ndarray | None) -> int:
        rows = np.arange(64) if rows is None else rows
        calls.append(len(rows))
        if bad.intersection(rows.tolist()):
            raise ValueError(f"bad rows {sorted(bad.intersection(rows.tolist()))}")
        return int(rows.sum())

    return attempt


def test_bisection_finds_the_failing_rows_and_keeps_the_others_together() -> None:
    calls: list[int] = []
    result, failures = isolate_failures(64, _summing({3, 40}, calls))
    assert [row for row, _ in failures] == [3, 40] and failures[0][1] == "ValueError: bad rows [3]"
    assert result == sum(range(64)) - 3 - 40 and calls[-1] == 62
    assert len(calls) < 30  # O(k log n), not one run per row


def test_bisection_costs_one_run_when_nothing_fails() -> None:
    calls: list[int] = []
    assert isolate_failures(64, _summing(set(), calls)) == (sum(range(64)), []) and calls == [64]


def test_a_step_failing_only_on_the_whole_fails_every_row() -> None:
    def attempt(rows: np.ndarray | None) -> int:
        if rows is None or len(rows) > 4:
            raise RuntimeError("needs small batches")
        return len(rows)

    result, failures = isolate_failures(8, attempt)
    assert result is None and [row for row, _ in failures] == list(range(8))
    assert failures[0][1] == "RuntimeError: needs small batches"


def test_decoding_never_raises_for_an_avro_record_outside_its_column() -> None:
    from tests.support.poison import avro_binary

    spec = poison_workspace("test")
    source = spec.source("flat_events")
    good = {"account_id": 1, "n": 2, "small": 3, "amount": 1.0, "ratio": 0.5, "flag": True, "ts": NOW_MS}
    payloads = [
        avro_binary(good),
        avro_binary({**good, "amount": math.nan}),
        avro_binary({**good, "ts": 2**62}),
        avro_binary({**good, "account_id": None}),
    ]
    decoded = decode_records(payloads, source, ("account_id",))
    assert decoded.accepted_indexes == [0]
    assert [reason for _, reason in decoded.rejected] == [
        "field 'amount': expected a finite number, got nan",
        "field 'ts': 4611686018427387904 is outside the years 1678-2261 a timestamp may have",
        "field 'account_id': the join key is missing",
    ]


def test_bisection_of_no_rows_ends() -> None:
    def attempt(rows: np.ndarray | None) -> int:
        raise RuntimeError("always")

    assert isolate_failures(0, attempt) == (None, [])
