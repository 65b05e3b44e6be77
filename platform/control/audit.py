"""The audit log: who did what, when, in which workspace, and whether it was allowed.

One record per mutating control-plane call and per refused request (unknown, expired or revoked
key; a role too weak), appended and never changed. On the bus it is ``AUDIT_TOPIC``: compacted
with a unique key per record (compaction never drops one) and no retention limit, so the log is
kept forever and a reader folds it the same way it folds every other compacted topic. A small
Protocol with an in-memory twin; one contract suite runs over both
(``tests/contract/test_audit_contract.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Any, Protocol

import orjson

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import AUDIT_TOPIC

__all__ = ["AUDIT_FORMAT", "AuditLog", "AuditRecord", "KafkaAuditLog", "MemoryAuditLog", "Outcome", "audit_topic"]

AUDIT_FORMAT = 1
_log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # allowed, but the call failed (a bad spec, a 409, ...)
    UNAUTHENTICATED = "unauthenticated"  # 401
    DENIED = "denied"  # 403


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    record_id: str  # unique: request id + a sequence number within the request
    time_ms: int
    principal: str  # "" when no key identified anyone
    workspace: str  # "" for instance-wide actions
    action: str
    outcome: Outcome
    request_id: str
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. the applied version and plan summary

    def to_record(self) -> bytes:
        return orjson.dumps({"version": AUDIT_FORMAT, **dataclasses.asdict(self), "outcome": self.outcome.value})

    @classmethod
    def from_record(cls, value: bytes) -> AuditRecord:
        raw = orjson.loads(value)
        if raw.get("version") != AUDIT_FORMAT:
            raise ValueError(f"audit record version {raw.get('version')!r} is not {AUDIT_FORMAT}")
        return cls(
            raw["record_id"],
            int(raw["time_ms"]),
            raw["principal"],
            raw["workspace"],
            raw["action"],
            Outcome(raw["outcome"]),
            raw["request_id"],
            dict(raw.get("detail") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "outcome": self.outcome.value}


class AuditLog(Protocol):
    def append(self, record: AuditRecord) -> None:
        """Write one record, acknowledged when it returns."""
        ...

    def records(self) -> list[AuditRecord]:
        """Every record, oldest first."""
        ...


def _ordered(values: list[bytes]) -> list[AuditRecord]:
    records = []
    for value in values:
        try:
            records.append(AuditRecord.from_record(value))
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("skipping malformed audit record: %s", exc)
    return sorted(records, key=lambda r: (r.time_ms, r.record_id))


class MemoryAuditLog:
    def __init__(self) -> None:
        self._values: list[bytes] = []

    def append(self, record: AuditRecord) -> None:
        self._values.append(record.to_record())

    def records(self) -> list[AuditRecord]:
        return _ordered(list(self._values))


def audit_topic() -> TopicConfig:
    return TopicConfig(AUDIT_TOPIC, 1, compacted=True, config={"retention.ms": "-1", "retention.bytes": "-1"})


class KafkaAuditLog:
    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._topic_ready = False

    def append(self, record: AuditRecord) -> None:
        if not self._topic_ready:
            ensure_topics(self.bootstrap, [audit_topic()], self.timeout_s)
            self._topic_ready = True
        with reliable_producer(self.bootstrap) as writer:
            writer.produce(AUDIT_TOPIC, key=record.record_id.encode(), value=record.to_record())

    def records(self) -> list[AuditRecord]:
        return _ordered(list(read_compacted(self.bootstrap, AUDIT_TOPIC, self.timeout_s).values()))
