"""Logged features in the offline store: the logging topics of a workspace's services as Parquet.

Layout (beside ``sources/``)::

    <root>/logged/<workspace>/<service>/part-<partition>-<first offset>-<last offset>.parquet

One row per logged request, training-set shaped: the join keys and request-context fields as
columns, ``timestamp`` (the request time, UTC), ``request_id``, one ``<view>__<feature>`` column
per served feature (``training_sets.feature_column``) and, when the service logs them,
``<view>__<feature>__effective_time``. int64 features are served as strings (as Tecton does) and
stored as integers again.

Exactly once as the source files are: a flush writes one file per partition named by its offset
range, then commits; a restarted writer resumes each partition after the highest offset on disk,
so a crash between the write and the commit writes nothing twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import KafkaError, TopicPartition

from featurebus.platform.files.atomic import atomic_write_with
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.topics import logged_features_group, logging_topic
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["LoggedFeaturesWriter", "logged_dir", "read_logged_features", "served_dtypes"]

_PART = re.compile(r"^part-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
TIMESTAMP = "timestamp"

_log = logging.getLogger(__name__)


def logged_dir(root: Path, workspace: str, service: str) -> Path:
    return root / "logged" / workspace / service


def served_dtypes(spec: WorkspaceSpec, service: str) -> dict[str, str]:
    """``<namespace>.<feature>`` (as served) -> output dtype of the service's stream and batch
    view features."""
    result: dict[str, str] = {}
    for selection in spec.service(service).selections:
        if spec.is_realtime(selection.view):
            continue
        view = (
            spec.batch_view(selection.view).as_view_spec()
            if spec.is_batch(selection.view)
            else spec.view(selection.view)
        )
        dtypes = {a.name: a.output_dtype for a in view.aggregations}
        for feature in selection.features:
            result[f"{selection.namespace}.{feature}"] = dtypes[feature]
    return result


def _column(name: str) -> str:
    view, _, feature = name.partition(".")
    return f"{view}__{feature}"


def _frame(documents: list[dict[str, Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    rows = []
    for document in documents:
        row: dict[str, Any] = {**document["join_keys"], **(document.get("request_context") or {})}
        row[TIMESTAMP] = document["request_time_ms"]
        row["request_id"] = document["request_id"]
        for name, value in document["features"].items():
            row[_column(name)] = value
        for name, value in (document.get("effective_times") or {}).items():
            row[f"{_column(name)}__effective_time"] = value
        rows.append(row)
    frame = pd.DataFrame.from_records(rows)
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], unit="ms", utc=True)
    for name, dtype in dtypes.items():
        column = _column(name)
        if column in frame.columns and dtype == "int64":
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame


class LoggedFeaturesWriter:
    """Consumes the logging topics of the workspace's services with logging; drive it from one
    thread (``poll_once`` or ``run_forever``)."""

    def __init__(
        self,
        bootstrap: str,
        root: Path,
        spec: WorkspaceSpec,
        *,
        flush_records: int = 50_000,
        flush_interval_s: float = 5.0,
    ) -> None:
        """A flush (one file per partition) happens every ``flush_interval_s`` or
        ``flush_records`` records, whichever comes first: fewer, larger files to read back."""
        self._bootstrap = bootstrap
        self._root = root
        self._spec = spec
        self._flush_records = flush_records
        self._flush_interval_s = flush_interval_s
        self._buffered = 0
        self._first_buffered_at: float | None = None
        self._services = {logging_topic(spec.name, s.name): s.name for s in spec.feature_services if s.logging}
        self._dtypes = {s: served_dtypes(spec, s) for s in self._services.values()}
        self._buffers: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
        self._consumer: Any = None
        self.written_count = 0

    @property
    def enabled(self) -> bool:
        return bool(self._services)

    def _ensure_consumer(self) -> Any:
        if self._consumer is None:
            ensure_topics(self._bootstrap, [TopicConfig(topic, 1) for topic in self._services])
            self._consumer = kafka_consumer(
                self._bootstrap,
                logged_features_group(self._spec.name),
                **{"auto.offset.reset": "earliest", "enable.partition.eof": True},
            )
            self._consumer.subscribe(sorted(self._services), on_assign=self._on_assign)
        return self._consumer

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            on_disk = self._max_offset(self._services[tp.topic], tp.partition)
            if on_disk >= 0:
                tp.offset = on_disk + 1
        consumer.assign(partitions)

    def _max_offset(self, service: str, partition: int) -> int:
        highest = -1
        for path in logged_dir(self._root, self._spec.name, service).glob("part-*.parquet"):
            match = _PART.match(path.name)
            if match is not None and int(match["partition"]) == partition:
                highest = max(highest, int(match["last"]))
        return highest

    def poll_once(self, timeout_s: float = 0.5, *, flush: bool = False) -> bool:
        """Consume what is there (up to ``timeout_s``); write and commit when a flush is due (or
        ``flush``). True once every assigned partition reached its end."""
        if not self.enabled:
            return True
        consumer = self._ensure_consumer()
        at_end = False
        for message in consumer.consume(num_messages=10_000, timeout=timeout_s):
            error = message.error()
            if error is not None:
                at_end = error.code() == KafkaError._PARTITION_EOF
                continue
            key = (message.topic() or "", message.partition() or 0)
            self._buffers.setdefault(key, []).append((message.offset() or 0, orjson.loads(message.value() or b"{}")))
            self._buffered += 1
            if self._first_buffered_at is None:
                self._first_buffered_at = time.monotonic()
        due = self._first_buffered_at is not None and (
            self._buffered >= self._flush_records
            or time.monotonic() - self._first_buffered_at >= self._flush_interval_s
        )
        if flush or due:
            self._flush(consumer)
        return at_end

    def run_forever(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.poll_once()
            self.poll_once(0, flush=True)
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _flush(self, consumer: Any) -> None:
        commits = []
        for (topic, partition), entries in self._buffers.items():
            if not entries:
                continue
            service = self._services[topic]
            frame = _frame([document for _, document in entries], self._dtypes[service])
            first, last = entries[0][0], entries[-1][0]
            path = logged_dir(self._root, self._spec.name, service) / f"part-{partition}-{first}-{last}.parquet"
            _write_parquet(path, pa.Table.from_pandas(frame, preserve_index=False))
            self.written_count += len(entries)
            commits.append(TopicPartition(topic, partition, last + 1))
        self._buffers.clear()
        self._buffered = 0
        self._first_buffered_at = None
        if commits:
            consumer.commit(offsets=commits, asynchronous=False)


def read_logged_features(
    root: Path, workspace: str, service: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The logged requests of ``service`` with request time in ``[start, end)``, oldest first."""
    directory = logged_dir(root, workspace, service)
    parts = sorted(directory.glob("part-*.parquet")) if directory.exists() else []
    if not parts:
        raise InvalidRequestError(
            f"no logged features of feature service {service!r} in workspace {workspace!r} under {root}: give the "
            "service logging=LoggingConfig(...), apply, serve requests, and run the offline materializer "
            "(`featurebus up` runs it)"
        )
    frame: pd.DataFrame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    if start is not None:
        frame = frame[frame[TIMESTAMP] >= _utc(start)]
    if end is not None:
        frame = frame[frame[TIMESTAMP] < _utc(end)]
    ordered: pd.DataFrame = frame.sort_values([TIMESTAMP, "request_id"], kind="stable").reset_index(drop=True)
    return ordered


def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write_with(path, lambda target: pq.write_table(table, target, compression="zstd"))


def _utc(value: datetime) -> pd.Timestamp:
    """A naive time is UTC, as everywhere in featurebus."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
