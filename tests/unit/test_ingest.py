"""Ingestion over the in-memory sink: whole-request validation, dry runs, roles, Tecton shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.exceptions import InvalidRequestError, NotFoundError, RecordValidationError
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.ingest import MAX_RECORDS_PER_REQUEST, IngestService, MemoryRecordSink
from featurebus.serving.ingest_codec import SourceCodec
from featurebus.serving.service import FeatureServer
from featurebus.streams.records import check_record
from tests.support.push_repo import push_workspace
from tests.unit.test_serving_http import READER, WRITER, _auth, _keys

SPEC = push_workspace("test")


def _service() -> tuple[IngestService, MemoryRecordSink]:
    sink = MemoryRecordSink()
    return IngestService(lambda: {"test": SPEC}, sink), sink


def _records(*records: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {"clicks": [{"record": r} for r in records]}


GOOD = {"user_id": "u1", "price": 9.5, "quantity": 2, "ts": "2026-11-26T10:00:00.250Z"}


def test_push_source_compiles_to_a_push_topic_with_its_timestamp_field() -> None:
    source = SPEC.source("clicks")
    assert source.push and source.log_offline
    assert source.kafka.topics == (push_topic("test", "clicks"),)
    assert source.kafka.timestamp_field == "ts"


def test_valid_records_are_normalised_and_keyed_by_join_key() -> None:
    service, sink = _service()
    result = service.ingest("test", _records(GOOD, {**GOOD, "user_id": "u2", "quantity": None}), dry_run=False)
    assert [(t, k) for t, k, _ in sink.records] == [
        (push_topic("test", "clicks"), b'["u1"]'),
        (push_topic("test", "clicks"), b'["u2"]'),
    ]
    assert orjson.loads(sink.records[0][2]) == {"user_id": "u1", "price": 9.5, "quantity": 2, "ts": 1795687200250}
    assert result["ingestMetrics"]["featureViewIngestMetrics"] == [
        {"featureViewName": "user_clicks", "onlineRecordIngestCount": "2", "offlineRecordIngestCount": "2"}
    ]


def test_one_bad_record_rejects_the_whole_request_and_names_every_error() -> None:
    service, sink = _service()
    bad = [GOOD, {**GOOD, "price": "free"}, {**GOOD, "ts": None}, {**GOOD, "color": "red"}, "not an object"]
    with pytest.raises(RecordValidationError) as info:
        service.ingest("test", {"clicks": [{"record": r} if isinstance(r, dict) else r for r in bad]}, dry_run=False)
    assert sink.records == []
    errors = info.value.record_errors
    assert [e["recordIndex"] for e in errors] == [1, 2, 3, 4]
    assert "'price'" in errors[0]["errorMessage"] and "timestamp is missing" in errors[1]["errorMessage"]
    assert "unknown fields ['color']" in errors[2]["errorMessage"] and '{"record"' in errors[3]["errorMessage"]
    assert "4 of 5 records are invalid; nothing was written" in str(info.value)


def test_a_timestamp_beyond_64_bits_is_a_record_error_not_a_crash() -> None:
    service, sink = _service()
    with pytest.raises(RecordValidationError) as info:
        service.ingest("test", _records(GOOD, {**GOOD, "ts": 1e300}), dry_run=False)
    assert info.value.record_errors[0]["recordIndex"] == 1
    assert (
        "field 'ts'" in info.value.record_errors[0]["errorMessage"]
        and "outside the years" in info.value.record_errors[0]["errorMessage"]
    )
    assert sink.records == []


def test_dry_run_validates_and_writes_nothing() -> None:
    service, sink = _service()
    result = service.ingest("test", _records(GOOD), dry_run=True)
    assert sink.records == [] and result["dryRun"] is True
    assert result["ingestMetrics"]["featureViewIngestMetrics"][0]["onlineRecordIngestCount"] == "0"
    with pytest.raises(RecordValidationError):
        service.ingest("test", _records({**GOOD, "quantity": 1.5}), dry_run=True)


@pytest.mark.parametrize(
    ("workspace", "records", "error", "text"),
    [
        ("nope", _records(GOOD), NotFoundError, "no workspace named 'nope'"),
        ("test", {"views": [{"record": GOOD}]}, InvalidRequestError, "push sources: clicks"),
        ("test", {}, InvalidRequestError, "non-empty object"),
        ("test", {"clicks": [{"record": GOOD}] * (MAX_RECORDS_PER_REQUEST + 1)}, InvalidRequestError, "at most"),
    ],
)
def test_bad_requests_say_what_is_wrong(workspace: str, records: Any, error: type[Exception], text: str) -> None:
    service, sink = _service()
    with pytest.raises(error, match=text):
        service.ingest(workspace, records, dry_run=False)
    assert sink.records == []


@pytest.fixture
def client_and_sink() -> Iterator[tuple[TestClient, MemoryRecordSink]]:
    service, sink = _service()
    app = create_app(FeatureServer(lambda: {"test": SPEC}, MemoryStore(), lambda: 0), _keys(), ingest=service)
    with TestClient(app) as client:
        yield client, sink


def test_http_ingest_needs_a_writer_key_of_the_workspace(client_and_sink: tuple[TestClient, MemoryRecordSink]) -> None:
    client, sink = client_and_sink
    body = {"workspace_name": "test", "records": _records(GOOD)}
    assert client.post("/ingest", json=body).status_code == 401
    forbidden = client.post("/ingest", json=body, headers=_auth(READER))
    assert forbidden.status_code == 403 and "writer" in forbidden.json()["message"]
    assert sink.records == []
    ok = client.post("/ingest", json=body, headers=_auth(WRITER, "Bearer"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["workspaceName"] == "test" and len(sink.records) == 1


def test_http_rejections_are_json_with_record_errors(client_and_sink: tuple[TestClient, MemoryRecordSink]) -> None:
    client, sink = client_and_sink
    response = client.post(
        "/ingest",
        headers=_auth(WRITER),
        json={"workspaceName": "test", "dryRun": False, "records": _records({**GOOD, "price": None, "ts": "x"})},
    )
    assert response.status_code == 400
    body = response.json()
    assert "nothing was written" in body["message"] and body["recordErrors"][0]["pushSourceName"] == "clicks"
    bad_json = client.post("/ingest", headers=_auth(WRITER), content=b"{nope")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
    wrong_type = client.post(
        "/ingest", headers=_auth(WRITER), json={"workspace_name": "test", "dry_run": "yes", "records": {}}
    )
    assert wrong_type.status_code == 400 and "dry_run" in wrong_type.json()["message"]
    assert sink.records == []


class _RecordingVisibility:
    def __init__(self) -> None:
        self.waits: list[tuple[str, str, dict[tuple[str, int], int]]] = []

    def wait(self, spec: Any, source: str, written: Any) -> None:
        self.waits.append((spec.name, source, dict(written)))


def test_read_after_write_waits_for_the_written_offsets_only_when_asked() -> None:
    sink, visibility = MemoryRecordSink(), _RecordingVisibility()
    service = IngestService(lambda: {"test": SPEC}, sink, visibility)
    service.ingest("test", _records(GOOD), dry_run=False)
    assert visibility.waits == []
    service.ingest("test", _records(GOOD, GOOD), dry_run=False, read_after_write=True)
    assert visibility.waits == [("test", "clicks", {(push_topic("test", "clicks"), 0): 2})]
    service.ingest("test", _records(GOOD), dry_run=True, read_after_write=True)
    assert len(visibility.waits) == 1  # a dry run writes nothing, so there is nothing to wait for
    with pytest.raises(InvalidRequestError, match="read_after_write is not available"):
        IngestService(lambda: {"test": SPEC}, sink).ingest("test", _records(GOOD), dry_run=False, read_after_write=True)


# -- the compiled codec agrees with check_record, the one definition of a valid record ------------
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, -(2**63) - 1, 2**31, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.just(1e300),
    st.sampled_from(
        ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00.250+02:00", "2026-11-26", "x", "0001-01-01T00:00:00+01:00"]
    ),
)
_json_values = st.one_of(
    _json_scalars, st.lists(_json_scalars, max_size=2), st.dictionaries(st.text(max_size=3), _json_scalars, max_size=2)
)
_field_names = st.sampled_from(["user_id", "price", "quantity", "ts", "other"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.dictionaries(_field_names, _json_values, max_size=5).map(lambda r: {"record": r}), _json_values))
def test_codec_accepts_exactly_what_check_record_accepts_with_the_same_values(item: Any) -> None:
    source = SPEC.source("clicks")
    codec = SourceCodec("clicks", source.schema, source.kafka.timestamp_field, ["user_id"])
    reason, key, value = codec.encode(item)
    record = item.get("record") if isinstance(item, dict) else None
    if not isinstance(record, dict):
        assert reason is not None and "record" in reason
        return
    if set(record) - {f.name for f in source.schema}:
        assert reason is not None and "unknown fields" in reason
        return
    row, expected_reason = check_record(
        record, source.schema, source.kafka.timestamp_field, ["user_id"]
    )  # never raises
    assert reason == expected_reason
    if reason is None:
        assert orjson.loads(value) == {f.name: v for f, v in zip(source.schema, row, strict=True)}
        assert key == orjson.dumps([record.get("user_id")])


_good_records = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.none(), st.text(max_size=4)),
        "ts": st.sampled_from(["2026-11-26T10:00:00Z", 1_700_000_000_000]),
    },
    optional={
        "price": st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False)),
        "quantity": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    },
).map(lambda r: {"record": r})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            _good_records,
            _good_records,
            _json_values.map(lambda v: {"record": {"ts": v}}),
            st.dictionaries(_field_names, _json_values, max_size=5).map(lambda r: {"record": r}),
            _json_values,
        ),
        max_size=6,
    )
)
def test_column_wise_encoding_equals_encoding_each_record(items: list[Any]) -> None:
    """``encode_all`` (one pass per column) gives exactly what ``encode`` gives record by record:
    the same bytes in the same order when every record is valid, the same errors otherwise."""
    source = SPEC.source("clicks")
    codec = SourceCodec("clicks", source.schema, source.kafka.timestamp_field, ["user_id"])
    expected = [codec.encode(item) for item in items]
    encoded, errors = codec.encode_all(items)
    assert errors == [(i, reason) for i, (reason, _, _) in enumerate(expected) if reason is not None]
    if not errors:
        assert encoded == [(key, value) for _, key, value in expected]


def test_column_wise_encoding_converts_integers_in_float_columns_and_keeps_nulls() -> None:
    source = SPEC.source("clicks")
    codec = SourceCodec("clicks", source.schema, source.kafka.timestamp_field, ["user_id"])
    encoded, errors = codec.encode_all([{"record": {**GOOD, "price": 3}}, {"record": {**GOOD, "price": None}}])
    assert errors == []
    assert [orjson.loads(v)["price"] for _, v in encoded] == [3.0, None]
    assert type(orjson.loads(encoded[0][1])["price"]) is float
    # A null join key is not a null feature value: the record belongs to no entity (tests/security has the rest).
    assert codec.encode_all([{"record": {**GOOD, "user_id": None}}])[1] == [
        (0, "field 'user_id': the join key is missing")
    ]
