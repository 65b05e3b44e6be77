"""One behaviour for both audit logs: the in-memory twin and the compacted-forever topic."""

from __future__ import annotations

import uuid

import pytest

from featurebus.platform.control.audit import AuditLog, AuditRecord, KafkaAuditLog, MemoryAuditLog, Outcome


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def audit(request: pytest.FixtureRequest) -> AuditLog:
    if request.param == "memory":
        return MemoryAuditLog()
    return KafkaAuditLog(request.getfixturevalue("kafka_bootstrap"))


def test_records_are_kept_in_time_order_with_every_field(audit: AuditLog) -> None:
    run = uuid.uuid4().hex[:8]  # the Kafka case shares one topic with the whole session
    later = AuditRecord(f"{run}-1", 2_000, "alice", "a", "apply", Outcome.OK, run, {"version": 2})
    earlier = AuditRecord(f"{run}-0", 1_000, "", "a", "apply", Outcome.UNAUTHENTICATED, run, {"message": "no key"})
    audit.append(later)
    audit.append(earlier)
    mine = [r for r in audit.records() if r.request_id == run]
    assert mine == [earlier, later]


def test_a_record_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        AuditRecord.from_record(b'{"version": 99}')
