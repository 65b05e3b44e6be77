"""The column-wise decoder gives exactly the verdicts of the record-wise reference ``check_record``
(which ingestion uses), for random mixes of good and bad records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.schemas.specs import FieldSpec
from featurebus.streams.records import check_record, decode_json_records

SCHEMA = [
    FieldSpec("user_id", "string"),
    FieldSpec("amount", "float64"),
    FieldSpec("n", "int64"),
    FieldSpec("flag", "bool"),
    FieldSpec("ts", "timestamp"),
]
BASE = datetime(2026, 11, 26, tzinfo=UTC)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(0, 9), max_size=2),
)
timestamps = st.one_of(
    st.integers(0, 2**41),
    st.integers(-(10**6), 10**6).map(lambda s: (BASE + timedelta(milliseconds=s * 7)).isoformat()),
    st.integers(-(10**6), 10**6).map(
        lambda s: (BASE + timedelta(microseconds=s * 13)).isoformat().replace("+00:00", "Z")
    ),
    st.integers(-(10**9), 10**9).map(
        lambda s: (BASE + timedelta(milliseconds=s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ),
    st.sampled_from(["2026-13-45T10:00:00.000Z", "2026-11-26T25:00:00.000Z", "2026-11-26 10:00:00.000Z"]),
    st.integers(-(10**6), 10**6).map(lambda s: (BASE + timedelta(seconds=s)).replace(tzinfo=None).isoformat()),
    st.just("yesterday"),
    st.none(),
    st.booleans(),
    st.floats(-1e12, 1e12),
)
records = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(st.text(max_size=4), anything),
        "amount": st.one_of(st.floats(-1e6, 1e6), anything),
        "n": st.one_of(st.integers(-(2**63), 2**63 - 1), anything),
        "flag": st.one_of(st.booleans(), anything),
        "ts": timestamps,
    },
)
payloads = st.one_of(records.map(orjson.dumps), st.just(b"not json"), st.just(b"[1, 2]"), st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads, max_size=25))
def test_the_batch_decoder_agrees_with_the_record_checker(batch: list[bytes | None]) -> None:
    decoded = decode_json_records(batch, SCHEMA, "ts")
    want_rows: list[list[Any]] = []
    want_rejected: list[int] = []
    for position, payload in enumerate(batch):
        if payload is None:
            want_rejected.append(position)
            continue
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            want_rejected.append(position)
            continue
        row, reason = check_record(record, SCHEMA, "ts")
        if reason is None:
            want_rows.append(row)
        else:
            want_rejected.append(position)
    assert [p for p, _ in decoded.rejected] == want_rejected
    assert len(decoded.accepted_indexes) == len(want_rows)
    frame = decoded.frame
    got_ts = frame["ts"].dt.as_unit("ms").astype("int64").tolist() if len(frame) else []
    assert got_ts == [row[4] for row in want_rows]
    assert frame["user_id"].tolist() == [row[0] for row in want_rows]
    amounts = [None if pd.isna(a) else a for a in frame["amount"].tolist()]
    assert amounts == [row[1] for row in want_rows]
    assert [None if pd.isna(n) else n for n in frame["n"].tolist()] == [row[2] for row in want_rows]


def test_reasons_name_the_first_bad_field_in_schema_order() -> None:
    batch = [orjson.dumps({"user_id": 5, "amount": "x", "ts": 1}), orjson.dumps({"user_id": "u", "ts": None})]
    decoded = decode_json_records(batch, SCHEMA, "ts")
    assert decoded.rejected == [
        (0, "field 'user_id': expected a string, got int"),
        (1, "field 'ts': the timestamp is missing"),
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(10**11), 10**11), min_size=1, max_size=20), st.booleans())
def test_millisecond_utc_strings_take_the_fast_path_with_the_same_verdicts(offsets: list[int], with_bad: bool) -> None:
    texts = [
        (BASE + timedelta(milliseconds=o)).isoformat(timespec="milliseconds").replace("+00:00", "Z") for o in offsets
    ]
    if with_bad:
        texts.append("2026-02-30T10:00:00.000Z")  # the fast form, not a date: the general parser decides
    batch = [orjson.dumps({"user_id": "u", "ts": t}) for t in texts]
    decoded = decode_json_records(batch, SCHEMA, "ts")
    want = [check_record(orjson.loads(p), SCHEMA, "ts") for p in batch]
    assert [p for p, _ in decoded.rejected] == [i for i, (_, reason) in enumerate(want) if reason is not None]
    got_ts = decoded.frame["ts"].dt.as_unit("ms").astype("int64").tolist()
    assert got_ts == [row[4] for row, reason in want if reason is None]
