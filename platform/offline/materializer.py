"""Replay a workspace's source topics into the offline store, exactly once.

One consumer in the group ``offline_group(workspace)`` reads every topic of every stream source,
buffers raw records per partition, and on each flush decodes them (``decode_records``, the
same decoder the stream worker uses, so both accept the same records), writes one Parquet file per
(topic, partition, date) and then commits the offsets synchronously.

Exactly once: files are written before the commit, so a crash in between leaves files the group
has not committed. On assignment each partition is therefore positioned at
``max(committed offset, last offset on disk + 1)``: the file names are the real progress record,
the committed offset only covers what was consumed but not written (rejected records).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from featurebus.platform.kafka.admin import unreachable_hint
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.health import BrokerHealth
from featurebus.platform.kafka.topics import offline_group
from featurebus.platform.monitoring.consumer_lag import ConsumerLag
from featurebus.platform.monitoring.quality_recorder import QualityRecorder
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.platform.offline.progress import TopicKey, high_watermarks, reached_by_commits, reached_by_position
from featurebus.platform.offline.store import max_offsets, open_store, recover_partition, write_partition
from featurebus.platform.registry import KafkaRegistry, Registry
from featurebus.schemas.errors import InvalidRequestError, KafkaUnavailableError, NotFoundError
from featurebus.schemas.specs import StreamSourceSpec
from featurebus.streams.records import decode_records, join_key_fields

__all__ = ["OfflineMaterializer"]

_BATCH = 10_000
_POLL_S = 0.2
_RECORDS = Counter("featurebus_offline_materializer_records_total", "Source records handled", ["workspace", "kind"])

_log = logging.getLogger(__name__)


@dataclass
class _Buffer:
    payloads: list[bytes | None] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int | None] = field(default_factory=list)  # Kafka's, ms (None: not available)


class OfflineMaterializer:
    """Not thread-safe: drive it from one thread (``run_forever`` typically owns one)."""

    def __init__(
        self,
        bootstrap: str,
        root: Path | str,
        workspace: str,
        *,
        flush_records: int = 100_000,
        flush_interval_s: float = 2.0,
        kafka_timeout_s: float = 10.0,
        registry: Registry | None = None,
        data_quality: bool = True,
        quality_check_interval_s: float = 10.0,
    ) -> None:
        """``registry``: where the workspace's sources are read (default: the registry on the bus).
        ``data_quality``: compute the statistics of views with ``data_quality_enabled``
        (``featurebus.platform.monitoring.quality_recorder``); off only to measure its cost.
        ``quality_check_interval_s``: how often at most a view's expectations are re-checked."""
        self._bootstrap = bootstrap
        self._registry = registry or KafkaRegistry(bootstrap)
        self._root = open_store(Path(root))
        self._workspace = workspace
        self._flush_records = flush_records
        self._flush_interval_s = flush_interval_s
        self._kafka_timeout_s = kafka_timeout_s
        self._key_fields: dict[str, tuple[str, ...]] = {}  # per source: join keys every record needs (as the worker)
        self._sources_by_topic = self._load_sources()
        self._quality = (
            QualityRecorder(QualityStore(self._root), self.spec, check_interval_s=quality_check_interval_s)
            if data_quality
            else None
        )
        self.rejected_count = 0
        self.written_count = 0
        self._consumer: Any = None
        self._assigned: set[TopicKey] = set()
        self._buffers: dict[TopicKey, _Buffer] = {}
        self._buffered = 0
        self._first_buffered_at: float | None = None
        self._uncommitted: dict[TopicKey, int] = {}  # next offset per partition, written not committed
        # Highest offset handled per (source, topic, partition): a topic shared by two sources is
        # resumed from the less advanced one, and the other must skip what it already wrote.
        self._floors: dict[tuple[str, TopicKey], int] = {}
        self._eof: dict[TopicKey, int] = {}
        self._health = BrokerHealth(bootstrap)
        self.files_written = 0
        self.lag = ConsumerLag()

    # -- public ------------------------------------------------------------------------------
    def run_until_caught_up(self, timeout_s: float = 60.0) -> int:
        """Consume to the high watermarks current at the call, flush, return the records written."""
        deadline = time.monotonic() + timeout_s
        consumer = self._ensure_consumer()
        written_before = self.written_count
        pending = high_watermarks(consumer, self._sources_by_topic, self._bootstrap, self._kafka_timeout_s)
        next_committed_check = 0.0
        while pending:
            self._raise_if_broken()
            if time.monotonic() > deadline:
                behind = ", ".join(f"{t}[{p}] (target {h})" for (t, p), h in sorted(pending.items()))
                cause = "" if self._health.last_error is None else f" Last Kafka error: {self._health.last_error}."
                raise KafkaUnavailableError(
                    f"the offline materializer for workspace {self._workspace!r} did not catch up within "
                    f"{timeout_s:g} s; behind: {behind}.{cause} Give it more time, or check that Kafka at "
                    f"{self._bootstrap} is reachable and no other member of group "
                    f"{offline_group(self._workspace)!r} is stuck"
                )
            self._poll(consumer)
            done = reached_by_position(consumer, pending, self._assigned, self._eof)
            if time.monotonic() >= next_committed_check:
                next_committed_check = time.monotonic() + 1.0
                try:
                    done |= reached_by_commits(consumer, pending, self._assigned, self._kafka_timeout_s)
                    self._health.reachable()  # the group coordinator answered
                except KafkaException as exc:
                    self._health.last_error = str(exc)
            pending = {key: high for key, high in pending.items() if key not in done}
        self._flush(consumer)
        if self._quality is not None:
            self._quality.check_due(force=True)
        return self.written_count - written_before

    def run_forever(self, stop: threading.Event) -> None:
        """Consume, flush and commit until ``stop`` is set; then flush and leave the group."""
        consumer = self._ensure_consumer()
        try:
            while not stop.is_set():
                self._raise_if_broken(tolerate_broker_loss=True)
                try:
                    self._poll(consumer)
                except KafkaUnavailableError as exc:
                    # Files are on disk already; the next successful commit covers these offsets.
                    _log.warning("offline materializer for %r: %s; retrying", self._workspace, exc)
                    stop.wait(1.0)
                if self._quality is not None:
                    self._quality.check_due()
            self._flush(consumer)
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # leaves the group: its partitions move on without a timeout
            self._consumer = None

    def __enter__(self) -> OfflineMaterializer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- setup -------------------------------------------------------------------------------
    def _load_sources(self) -> dict[str, list[StreamSourceSpec]]:
        spec = self._registry.get(self._workspace)
        if spec is None:
            raise NotFoundError(f"workspace {self._workspace!r} has not been applied; run `featurebus apply` first")
        self.spec = spec
        if not spec.live:
            raise InvalidRequestError(
                f"workspace {self._workspace!r} is a development workspace: it is never materialized; run the offline "
                "materializer for a live workspace (`featurebus workspace list` shows which are live)"
            )
        by_topic: dict[str, list[StreamSourceSpec]] = {}
        for source in spec.stream_sources:
            if not source.log_offline:  # a push source that keeps its records online only
                continue
            if source.kafka.bootstrap_servers not in (None, self._bootstrap):
                _log.warning(
                    "source %r lives on another cluster (%s); skipped", source.name, source.kafka.bootstrap_servers
                )
                continue
            self._key_fields[source.name] = join_key_fields(spec, source)
            for topic in source.kafka.topics:
                by_topic.setdefault(topic, []).append(source)
        return by_topic

    def _ensure_consumer(self) -> Any:
        if self._consumer is None:
            self._consumer = kafka_consumer(
                self._bootstrap,
                offline_group(self._workspace),
                **{
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": True,
                    # Files are written every flush_interval_s anyway: let the broker gather up to
                    # 1 MiB or 500 ms per fetch rather than answer as soon as any record arrives,
                    # which at thousands of events/s woke this process and the broker after every
                    # commit of the worker, taking CPU from the path serving freshness depends on.
                    "fetch.min.bytes": 1 << 20,
                    "fetch.wait.max.ms": 500,
                    "socket.connection.setup.timeout.ms": 5000,
                    "error_cb": self._health.on_error,
                },
            )
            if self._sources_by_topic:
                self._consumer.subscribe(
                    sorted(self._sources_by_topic),
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
        return self._consumer

    def _raise_if_broken(self, tolerate_broker_loss: bool = False) -> None:
        if self._health.fatal is not None:
            raise KafkaUnavailableError(self._health.fatal)
        down_for = self._health.down_for()
        if not tolerate_broker_loss and down_for is not None and down_for > self._kafka_timeout_s:
            raise KafkaUnavailableError(
                f"no Kafka broker reachable for {down_for:.0f} s ({self._health.last_error}). "
                f"{unreachable_hint(self._bootstrap)}"
            )

    # -- rebalancing -------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in consumer.committed(partitions, timeout=self._kafka_timeout_s)
            }
        except KafkaException as exc:
            # Files alone still prevent duplicates; re-reading committed-but-rejected records
            # only recounts them.
            _log.warning("could not read committed offsets (%s); resuming from the files", exc)
            committed = {}
        on_disk: dict[str, dict[TopicKey, int]] = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            resume_points = []
            for source in self._sources_by_topic.get(tp.topic, []):
                recover_partition(self._root, self._workspace, source.name, *key)
                if source.name not in on_disk:
                    on_disk[source.name] = max_offsets(self._root, self._workspace, source.name)
                floor = on_disk[source.name].get(key, -1)
                self._floors[(source.name, key)] = floor
                resume_points.append(floor + 1)
            start = max(committed.get(key, -1), min(resume_points, default=0))
            if start > 0:  # else leave OFFSET_INVALID: the committed offset or auto.offset.reset
                tp.offset = start
            self._assigned.add(key)
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            self._flush(consumer)
        except Exception as exc:  # the next owner resumes from the files and the last commit
            _log.warning("flush on revoke failed: %s", exc)
        self._forget(partitions)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Someone else may own these already: writing now could duplicate what they write.
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.discard(key)
            self._uncommitted.pop(key, None)
            self._eof.pop(key, None)
            buffer = self._buffers.pop(key, None)
            if buffer is not None:
                self._buffered -= len(buffer.offsets)

    # -- consuming ---------------------------------------------------------------------------
    def _poll(self, consumer: Any) -> None:
        for message in consumer.consume(num_messages=_BATCH, timeout=_POLL_S):
            self._take(message)
        self.lag.refresh(consumer, self._assigned)
        if (
            self._buffered
            and self._first_buffered_at is not None
            and (
                self._buffered >= self._flush_records
                or time.monotonic() - self._first_buffered_at >= self._flush_interval_s
            )
        ):
            self._flush(consumer)

    def _take(self, message: Message) -> None:
        key = (message.topic() or "", message.partition() or 0)
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._eof[key] = message.offset() or 0
            elif error.fatal():
                self._health.fatal = f"consuming {key[0]} failed: {error}"
            else:
                self._health.last_error = str(error)
            return
        self._health.reachable()  # a record arrived: a broker is reachable
        if key not in self._assigned:
            return  # fetched before a revoke: the new owner reads it again
        offset = message.offset() or 0
        self._buffers.setdefault(key, _Buffer()).payloads.append(message.value())
        self._buffers[key].offsets.append(offset)
        kind, stamp = message.timestamp()
        self._buffers[key].timestamps.append(stamp if kind != 0 and stamp > 0 else None)  # 0: TIMESTAMP_NOT_AVAILABLE
        self.lag.note(key[0], key[1], stamp if kind != 0 else None)
        self._uncommitted[key] = offset + 1
        self._buffered += 1
        if self._first_buffered_at is None:
            self._first_buffered_at = time.monotonic()

    def _flush(self, consumer: Any) -> None:
        for key, buffer in self._buffers.items():
            offsets = np.asarray(buffer.offsets, dtype=np.int64)
            for source in self._sources_by_topic.get(key[0], []):
                floor = self._floors.get((source.name, key), -1)
                fresh = np.flatnonzero(offsets > floor)
                payloads = [buffer.payloads[i] for i in fresh]
                batch = decode_records(payloads, source, self._key_fields[source.name])
                if batch.rejected:
                    position, reason = batch.rejected[0]
                    _log.info(
                        "source %r: skipped %d malformed records (first: offset %d, %s)",
                        source.name,
                        len(batch.rejected),
                        offsets[fresh[position]],
                        reason,
                    )
                accepted = fresh[np.asarray(batch.accepted_indexes, dtype=np.int64)]
                kept = offsets[accepted]
                files = write_partition(
                    self._root,
                    self._workspace,
                    source,
                    key[0],
                    key[1],
                    batch.frame,
                    kept,
                    [buffer.timestamps[i] for i in accepted.tolist()],
                )
                if self._quality is not None and len(kept):
                    part = f"{key[0]}-{key[1]}-{int(kept.min())}-{int(kept.max())}"
                    self._quality.record(source, part, batch.frame)
                self._floors[(source.name, key)] = max(floor, int(offsets.max()))
                self.written_count += len(kept)
                self.files_written += len(files)
                self.rejected_count += len(batch.rejected)
                _RECORDS.labels(self._workspace, "written").inc(len(kept))
                _RECORDS.labels(self._workspace, "rejected").inc(len(batch.rejected))
        self._buffers.clear()
        self._buffered = 0
        self._first_buffered_at = None
        if not self._uncommitted:
            return
        commits = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        try:
            consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"committing offline offsets of workspace {self._workspace!r} failed: {exc}"
            ) from exc
        self._uncommitted.clear()
