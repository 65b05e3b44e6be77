"""Ingestion (``POST /ingest``): push records, validated whole, onto the push topics of the bus.

Framework-free, like ``FeatureServer``. A request is all-or-nothing at validation: if any record
is invalid, every error is reported and nothing is written. Valid records are written with the
idempotent ``acks=all`` producer and the request returns once Kafka acknowledged all of them;
from there the stream worker folds them into tiles exactly as it does Kafka sources.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, Message, Producer

from featurebus.exceptions import InvalidRequestError, KafkaUnavailableError, NotFoundError, RecordValidationError
from featurebus.platform.producer import producer_config
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec
from featurebus.streams.records import check_record

__all__ = ["IngestService", "KafkaRecordSink", "MemoryRecordSink", "RecordSink", "Visibility", "MAX_RECORDS_PER_REQUEST"]

MAX_RECORDS_PER_REQUEST = 10_000

OutgoingRecord = tuple[str, bytes | None, bytes]  # topic, key, value


Offsets = dict[tuple[str, int], int]  # last offset written per (topic, partition)


class RecordSink(Protocol):
    def send_all(self, records: Sequence[OutgoingRecord]) -> Offsets:
        """Return once every record is acknowledged (with where they went); raise
        ``KafkaUnavailableError`` otherwise."""
        ...


class Visibility(Protocol):
    def wait(self, spec: WorkspaceSpec, source: str, written: Mapping[tuple[str, int], int]) -> None: ...


@dataclass
class MemoryRecordSink:
    """In-memory twin of the Kafka sink, for unit tests."""

    records: list[OutgoingRecord] = field(default_factory=list)

    def send_all(self, records: Sequence[OutgoingRecord]) -> Offsets:
        """Everything goes to partition 0 of its topic; offsets count per topic."""
        offsets: Offsets = {}
        for record in records:
            self.records.append(record)
            offsets[(record[0], 0)] = sum(1 for r in self.records if r[0] == record[0]) - 1
        return offsets


class _Deliveries:
    """Acknowledgements of one request's records (callbacks may run on another request's thread)."""

    def __init__(self, expected: int) -> None:
        self.pending = expected
        self.error: KafkaError | None = None
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.done = threading.Event()
        self._lock = threading.Lock()
        if expected == 0:
            self.done.set()

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            elif error is None:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if topic is not None and partition is not None and offset is not None:
                    where = (topic, partition)
                    self.last_offsets[where] = max(self.last_offsets.get(where, -1), offset)
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


class KafkaRecordSink:
    """One shared idempotent producer; each request waits for its own records' acknowledgements
    (not a global flush), so concurrent requests neither block nor blame each other."""

    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        self._producer = Producer(producer_config(bootstrap, **{"linger.ms": 1}))
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s

    def send_all(self, records: Sequence[OutgoingRecord]) -> Offsets:
        batch = _Deliveries(len(records))
        for topic, key, value in records:
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=batch.delivered)
                    break
                except BufferError:
                    self._producer.poll(0.01)
        deadline = time.monotonic() + self._timeout_s
        while not batch.done.is_set():
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"Kafka at {self._bootstrap} did not acknowledge the ingested records within {self._timeout_s:g}s; "
                    "some may have been written: retry the request (records are idempotent upserts of events)"
                )
            self._producer.poll(0.005)  # serves delivery callbacks, for this and other requests
        if batch.error is not None:
            raise KafkaUnavailableError(f"writing ingested records to Kafka at {self._bootstrap} failed: {batch.error}")
        return batch.last_offsets

    def close(self) -> None:
        self._producer.flush(5.0)


class IngestService:
    def __init__(self, specs_provider: Callable[[], Mapping[str, WorkspaceSpec]], sink: RecordSink,
                 visibility: Visibility | None = None) -> None:
        self._specs_provider = specs_provider
        self._sink = sink
        self._visibility = visibility

    def ingest(self, workspace: str, records: Any, dry_run: bool, read_after_write: bool = False) -> dict[str, Any]:
        """``read_after_write``: return only once this replica serves the records' effect."""
        specs = self._specs_provider()
        spec = specs.get(workspace)
        if spec is None:
            raise NotFoundError(f"no workspace named {workspace!r} (known: {', '.join(sorted(specs)) or 'none'})")
        if not isinstance(records, Mapping) or not records:
            raise InvalidRequestError('records must be a non-empty object: {"<push source>": [{"record": {...}}, ...]}')
        total = sum(len(items) if isinstance(items, list) else 0 for items in records.values())
        if total > MAX_RECORDS_PER_REQUEST:
            raise InvalidRequestError(f"{total} records in one request; send at most {MAX_RECORDS_PER_REQUEST}")
        outgoing: list[OutgoingRecord] = []
        errors: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for source_name, items in records.items():
            source = _push_source(spec, source_name)
            if not isinstance(items, list):
                errors.append({"pushSourceName": source_name, "errorMessage": "must be a list of {\"record\": {...}}"})
                continue
            key_fields = _key_fields(spec, source)
            for index, item in enumerate(items):
                reason, payload, key = _encode(source, key_fields, item)
                if reason is not None:
                    errors.append({"pushSourceName": source_name, "recordIndex": index, "errorMessage": reason})
                else:
                    outgoing.append((source.kafka.topics[0], key, payload))
            counts[source_name] = len(items)
        if errors:
            raise RecordValidationError(
                f"{len(errors)} of {total} records are invalid; nothing was written", record_errors=errors
            )
        if read_after_write and self._visibility is None:
            raise InvalidRequestError("read_after_write is not available on this server (it has no online store)")
        if not dry_run:
            written = self._sink.send_all(outgoing)
            if read_after_write and self._visibility is not None:
                for source_name in counts:
                    topic = spec.source(source_name).kafka.topics[0]
                    self._visibility.wait(spec, source_name, {tp: o for tp, o in written.items() if tp[0] == topic})
        return {"workspaceName": workspace, "dryRun": dry_run, "ingestMetrics": _metrics(spec, counts, dry_run)}


def _push_source(spec: WorkspaceSpec, name: str) -> StreamSourceSpec:
    pushable = sorted(s.name for s in spec.stream_sources if s.push)
    for source in spec.stream_sources:
        if source.name == name and source.push:
            return source
    raise InvalidRequestError(
        f"{name!r} is not a push source of workspace {spec.name!r}; push sources: {', '.join(pushable) or 'none'}"
    )


def _key_fields(spec: WorkspaceSpec, source: StreamSourceSpec) -> list[str]:
    """Fields of the source that are join keys: records of one entity share a partition (order)."""
    join_keys = {k.name for e in spec.entities for k in e.join_keys}
    return [f.name for f in source.schema if f.name in join_keys]


def _encode(source: StreamSourceSpec, key_fields: list[str], item: Any) -> tuple[str | None, bytes, bytes | None]:
    record = item.get("record") if isinstance(item, dict) else None
    if not isinstance(record, dict):
        return 'each item must be {"record": {...}}', b"", None
    unknown = sorted(set(record) - {f.name for f in source.schema})
    if unknown:
        return f"unknown fields {unknown}; the schema of {source.name!r} has {[f.name for f in source.schema]}", b"", None
    row, reason = check_record(record, source.schema, source.kafka.timestamp_field)
    if reason is not None:
        return reason, b"", None
    normalized = {f.name: value for f, value in zip(source.schema, row, strict=True)}  # timestamps as epoch ms
    key = orjson.dumps([normalized[k] for k in key_fields]) if key_fields else None
    return None, orjson.dumps(normalized), key


def _metrics(spec: WorkspaceSpec, counts: Mapping[str, int], dry_run: bool) -> dict[str, Any]:
    """Per view reading a pushed source: how many records reach online and offline (int64 as strings)."""
    views = []
    for view in spec.stream_feature_views:
        count = counts.get(view.source)
        if count is None:
            continue
        source = spec.source(view.source)
        written = 0 if dry_run else count
        views.append({
            "featureViewName": view.name,
            "onlineRecordIngestCount": str(written if view.online else 0),
            "offlineRecordIngestCount": str(written if view.offline and source.log_offline else 0),
        })
    return {"featureViewIngestMetrics": views}
