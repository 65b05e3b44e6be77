"""The stream worker: a consumer group over the source topics, micro-batches, Kafka transactions.

Each micro-batch (up to ``batch_size`` records: what arrived while the previous one was processed) goes
through ``StreamEngine.process`` inside one Kafka transaction that holds the batch's tiles, its
dead letters and the consumer offsets (with the partitions' watermarks in the offset metadata):
the effects of a batch become visible exactly once, or not at all (exactly-once, the Kafka
Streams way: consume-transform-produce with ``send_offsets_to_transaction``, fenced by the
consumer group's generation so a zombie worker cannot commit).

Scale-out: workers of one workspace share the source partitions through the consumer group.
Tiles are sharded by source partition, so a partition's state is exactly its shard, kept in the
feature-topic partition of that shard. A worker that is assigned a partition checks its local
RocksDB cache against the committed position; if they differ (a partition that moved here, a
lost state directory, a crash between commit and cache write) it rebuilds the shard from the
feature topic before consuming.

Definitions change under a running worker: it follows the registry, and a view whose tiles an
apply invalidated (or that is new to a partition's history) is recomputed from the source log
before the partition is consumed further (``streams.rebuild``). Which definitions built a
partition's state is committed with its offset (``CommitMetadata``: the watermark and the views'
materialization fingerprints), atomically with the tiles.

The consumer is confluent-kafka's rather than Faust's: Faust's per-event async stream caps one
worker at a few thousand events/s on this hardware (measured: 3.3k/s, see bench/), and its
transactions cannot include our own tile records atomically with the offsets.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from featurebus.platform.kafka.admin import (
    TopicConfig,
    ensure_topics,
    partition_counts,
    read_compacted,
    unreachable_hint,
)
from featurebus.platform.kafka.clients import consumer, producer
from featurebus.platform.kafka.security import access_denied, is_access_denied
from featurebus.platform.kafka.topics import dead_letter_topic, feature_topic, worker_group
from featurebus.platform.kv import RocksStore
from featurebus.platform.registry import KafkaRegistry, Registry
from featurebus.schemas.errors import FeaturebusError, KafkaUnavailableError, NotFoundError
from featurebus.schemas.materialization import CommitMetadata, online_fingerprints
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.delete_follower import DeleteFollower
from featurebus.streams.runtime.engine import NO_WATERMARK, Progress, RawRecord, StreamEngine
from featurebus.streams.runtime.rebuild import install_rebuilt, read_source_partition, recompute_views
from featurebus.streams.runtime.workspace_watch import (
    SOURCE_TOPICS_CHECK_S,
    WorkspaceDeletedError,
    WorkspaceWatch,
    await_source_topics,
    live_workspace,
    missing_source_topics,
    missing_topics_message,
)

__all__ = ["TransactionalSink", "run_worker", "worker_transactional_id"]

log = logging.getLogger(__name__)

EXPIRY_INTERVAL_S = 30.0
TRANSACTION_TIMEOUT_MS = 10_000  # how long a dead worker's open transaction can hold readers back
COMMIT_TIMEOUT_S = 30.0
OFFSET_METADATA_MAX_BYTES = 4096  # the broker's default offset.metadata.max.bytes


class TransactionalSink:
    """Tiles and dead letters produced inside a Kafka transaction that also commits the offsets."""

    def __init__(self, producer: Producer, consumer: Consumer, workspace: str, bootstrap: str) -> None:
        self._producer = producer
        self._consumer = consumer
        self._dead_letter_topic = dead_letter_topic(workspace)
        self._bootstrap = bootstrap
        self._open = False
        # source topic -> view -> materialization fingerprint, committed with every offset
        self.fingerprints: dict[str, dict[str, str]] = {}

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def _produce(self, topic: str, **kwargs: Any) -> None:
        self._begin()
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._produce(topic, key=key, value=value, partition=partition)

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        headers: list[tuple[str, str | bytes | None]] = [
            ("featurebus.reason", reason.encode()),
            ("featurebus.topic", record.topic.encode()),
            ("featurebus.partition", str(record.partition).encode()),
            ("featurebus.offset", str(record.offset).encode()),
        ]
        self._produce(self._dead_letter_topic, value=record.value, headers=headers)

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        self._begin()
        try:
            if progress:
                offsets = [
                    TopicPartition(
                        t,
                        p,
                        pr.offset + 1,
                        metadata=CommitMetadata(
                            pr.watermark, self.fingerprints.get(t, {}), (pr.dropped_late, pr.dropped_ahead)
                        ).encode(),
                    )
                    for (t, p), pr in progress.items()
                ]
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.consumer_group_metadata(), COMMIT_TIMEOUT_S
                )
            self._producer.commit_transaction(COMMIT_TIMEOUT_S)
            self._open = False
        except KafkaException as exc:
            self._fail(exc)

    def abort(self) -> None:
        if self._open:
            self._producer.abort_transaction(COMMIT_TIMEOUT_S)
            self._open = False

    def _fail(self, exc: KafkaException) -> None:
        error: KafkaError = exc.args[0]
        if error.txn_requires_abort():
            self.abort()
            raise TransactionAbortedError(f"transaction aborted: {error.str()}") from exc
        raise KafkaUnavailableError(f"committing a batch to Kafka at {self._bootstrap} failed: {error.str()}") from exc


class TransactionAbortedError(FeaturebusError):
    """The batch's transaction was aborted (e.g. a rebalance fenced it); it must be re-read."""


def worker_transactional_id(workspace: str, state_dir: Path) -> str:
    """Stable per worker *instance*: a restarted worker fences (and aborts) its previous self."""
    identity = f"{socket.gethostname()}:{state_dir.resolve()}"
    return f"featurebus.{workspace}.worker.{hashlib.sha1(identity.encode()).hexdigest()[:12]}"


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    counts = partition_counts(bootstrap, topics)
    missing = [t for t in topics if t not in counts]
    if missing:
        raise NotFoundError(
            f"source topics {missing} do not exist on {bootstrap}; create them or fix KafkaConfig(topics=...)"
        )
    return counts


def _prepare_topics(bootstrap: str, spec: WorkspaceSpec) -> dict[str, tuple[str, int]]:
    """Create the feature and dead-letter topics; feature topics get their source's partitions."""
    source_topics = sorted({t for s in spec.stream_sources for t in s.kafka.topics})
    counts = _partition_counts(bootstrap, source_topics)
    topics: dict[str, tuple[str, int]] = {}
    for view in spec.stream_feature_views:
        partitions = max(counts[t] for t in spec.source(view.source).kafka.topics)
        topics[view.name] = (feature_topic(spec.name, view.name), partitions)
    ensure_topics(
        bootstrap,
        [TopicConfig(name, partitions, compacted=True) for name, partitions in topics.values()]
        + [TopicConfig(dead_letter_topic(spec.name))],
    )
    return topics


class _Worker:
    def __init__(self, registry: Registry, bootstrap: str, workspace: str, data_dir: Path, spec: WorkspaceSpec) -> None:
        self.bootstrap = bootstrap
        self.workspace = workspace
        self.spec = spec
        state_dir = data_dir / "worker" / workspace
        self.scratch_dir = data_dir / "worker" / f"{workspace}.rebuild"  # a recomputation's working store
        self.store = RocksStore(state_dir)
        self.consumer = consumer(
            bootstrap,
            worker_group(workspace),
            **{
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                # A killed worker keeps its partitions until the group evicts it: 10 s, not 45.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                "max.poll.interval.ms": 600_000,  # a restore of a large shard may take minutes
            },
        )
        self.producer = producer(
            bootstrap,
            **{
                "transactional.id": worker_transactional_id(workspace, state_dir),
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "message.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "linger.ms": 5,
                # A batch's first transactional request usually meets CONCURRENT_TRANSACTIONS
                # while the broker still writes the previous commit's markers (a few ms);
                # librdkafka's default backoff (100 ms, growing to 1 s) turned that into the
                # freshness p99 (send_offsets_to_transaction p99 270 ms at 5,000 events/s).
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 25,
                "queue.buffering.max.messages": 1_000_000,
            },
        )
        try:
            self.producer.init_transactions(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            if is_access_denied(exc):
                transactional_id = worker_transactional_id(workspace, state_dir)
                raise access_denied(
                    bootstrap, exc, "write", transactional_id, transactional_id=transactional_id
                ) from exc
            raise KafkaUnavailableError(
                f"starting transactions on {bootstrap} failed: {exc}. {unreachable_hint(bootstrap)}"
            ) from exc
        self.sink = TransactionalSink(self.producer, self.consumer, workspace, bootstrap)
        self.engine = self._engine_for(self.spec)
        self.owned: set[tuple[str, int]] = set()
        self.registry = WorkspaceWatch(registry, workspace)
        self.deletes = DeleteFollower(bootstrap, workspace, self.store)  # platform/deletes/requests.py
        self.stopping = False
        self._next_topics_check = 0.0  # a new version waiting for its source topics is re-checked then
        self._waiting_version: int | None = None

    def _engine_for(self, spec: WorkspaceSpec) -> StreamEngine:
        self.feature_topics = _prepare_topics(self.bootstrap, spec)
        engine = StreamEngine(spec, self.store, self.sink, self.feature_topics.__getitem__)
        self.sink.fingerprints = {topic: online_fingerprints(spec, topic) for topic in engine.source_topics}
        for topic, views in self.sink.fingerprints.items():
            size = len(CommitMetadata(NO_WATERMARK, views).encode())
            if size > OFFSET_METADATA_MAX_BYTES:
                raise FeaturebusError(
                    f"{len(views)} online views read topic {topic!r}: their fingerprints take {size} bytes of offset "
                    f"metadata, more than Kafka's default offset.metadata.max.bytes ({OFFSET_METADATA_MAX_BYTES}); "
                    f"raise that broker setting, or split the views over more source topics"
                )
        return engine

    # -- partition ownership -------------------------------------------------------------------
    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("assigned %s", _names(partitions))
        committed = consumer.committed(partitions, timeout=COMMIT_TIMEOUT_S)
        for tp in committed:
            self._take_over(tp)
            self._rebuild_stale(tp)
            self.owned.add((tp.topic, tp.partition))

    def _take_over(self, tp: TopicPartition) -> None:
        local = self.engine.progress(tp.topic, tp.partition)
        if tp.offset < 0:  # never committed: start from the log's beginning with empty state
            if local != Progress():
                self.engine.forget_partition(tp.topic, tp.partition)
            return
        if local.offset == tp.offset - 1:
            # The local cache is exactly the committed state: committed offsets only move forward,
            # so nobody else applied records of this partition since we cached them.
            return
        started = time.monotonic()
        tiles = {
            view: read_compacted(self.bootstrap, topic, partitions=[partition], timeout_s=300.0)
            for view, topic, partition, _ in self.engine.shard_locations(tp.topic, tp.partition)
        }
        committed = CommitMetadata.decode(tp.metadata, NO_WATERMARK)
        restored = self.engine.replace_shard(
            tp.topic, tp.partition, tiles, Progress(tp.offset - 1, committed.watermark, *committed.dropped)
        )
        log.warning(
            "%s[%d]: restored %d tiles from the feature topics in %.1f s (local state was at offset %d, committed %d)",
            tp.topic,
            tp.partition,
            restored,
            time.monotonic() - started,
            local.offset,
            tp.offset - 1,
        )

    def _rebuild_stale(self, tp: TopicPartition) -> None:
        """Recompute the views of this (taken over) partition whose committed state was built by
        other definitions, or that are new to its history (``streams.rebuild``)."""
        if tp.offset < 0:  # nothing committed: every view starts from the log's beginning anyway
            return
        stale = CommitMetadata.decode(tp.metadata, NO_WATERMARK).stale_views(self.sink.fingerprints.get(tp.topic, {}))
        if not stale:
            return
        log.warning(
            "%s[%d]: recomputing %s from the source log: their definition changed, or they are new to "
            "this partition's history",
            tp.topic,
            tp.partition,
            ", ".join(stale),
        )
        started = time.monotonic()
        progress = self.engine.progress(tp.topic, tp.partition)  # the committed position (see _take_over)
        shutil.rmtree(self.scratch_dir, ignore_errors=True)  # a crashed attempt's leftovers
        scratch = RocksStore(self.scratch_dir)
        try:
            rebuilt, replayed = recompute_views(
                self.spec,
                stale,
                tp.topic,
                tp.partition,
                read_source_partition(self.bootstrap, tp.topic, tp.partition, tp.offset),
                scratch,
                self.feature_topics.__getitem__,
            )
        finally:
            scratch.close()
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
        changed = install_rebuilt(self.engine, self.sink, tp.topic, tp.partition, rebuilt, progress)
        log.warning(
            "%s[%d]: rebuilt %s from %d records in %.1f s (%d feature records changed)",
            tp.topic,
            tp.partition,
            ", ".join(stale),
            replayed,
            time.monotonic() - started,
            changed,
        )

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("revoked %s", _names(partitions))
        self.sink.abort()  # nothing is open between batches; a failed commit may have left one
        # The shards stay cached: if a partition comes back unchanged, no restore is needed
        # (checked against the committed offset on assignment). Expiry leaves them alone.
        self.owned.difference_update((tp.topic, tp.partition) for tp in partitions)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, batch_size: int, batch_window_s: float) -> None:
        # Every batch allocates a few objects per event: with Python's default thresholds the
        # cyclic collector runs every 700 allocations and walks everything alive (measured: a
        # fifth of the engine's CPU). What exists now lives as long as the process: freeze it.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.consumer.subscribe(self.engine.source_topics, on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.registry.start()
        next_expiry = time.monotonic() + EXPIRY_INTERVAL_S
        while not self.stopping:
            # Block for the first record only, then take what is already fetched: consume(n,
            # timeout) waits for n records or the whole timeout, which at 5,000 events/s adds the
            # timeout to every batch. Batches still grow with the load (what arrived while the
            # previous one was processed and committed), up to batch_size.
            first = self.consumer.poll(batch_window_s)
            messages = [] if first is None else [first, *self.consumer.consume(num_messages=batch_size - 1, timeout=0)]
            records = _records(messages)
            # Deletes first: a batch holding a deleted entity's next event must not merge it
            # into the tiles the delete dropped (platform/deletes/requests.py).
            self._apply_deletes()
            if records:
                self._process(records)
            self._follow_registry()
            # Expiry walks the state one bounded slice per loop turn (a whole pass at 100k
            # entities took seconds, holding back every event meanwhile); a pass starts every
            # EXPIRY_INTERVAL_S.
            now = time.monotonic()
            if self.engine.expiry_pending or now >= next_expiry:
                if not self.engine.expiry_pending:
                    next_expiry = now + EXPIRY_INTERVAL_S
                self._expire()

    def _process(self, records: list[RawRecord]) -> None:
        try:
            self.engine.process(records)
        except TransactionAbortedError as exc:
            # Nothing of the batch became visible and the local cache was not written: read the
            # batch again from the committed positions (if the partitions are still ours).
            log.warning("%s; re-reading the batch", exc)
            assignment = self.consumer.assignment()
            for tp in self.consumer.committed(assignment, timeout=COMMIT_TIMEOUT_S):
                if tp.offset >= 0:
                    self.consumer.seek(tp)

    def _apply_deletes(self) -> None:
        try:
            self.deletes.step(self.engine)
        except TransactionAbortedError as exc:  # nothing applied, position not moved: next turn
            log.warning("delete %s; retrying", exc)

    def _expire(self) -> None:
        try:
            self.engine.expire_step(self.owned)
        except TransactionAbortedError as exc:
            log.warning("expiry %s; retrying later", exc)

    def _follow_registry(self) -> None:
        try:
            latest = self.registry.next_version(self.spec)
        except WorkspaceDeletedError as exc:
            log.warning("%s", exc)
            self.stopping = True
            return
        if latest is None or time.monotonic() < self._next_topics_check:
            return
        missing = missing_source_topics(latest, self._existing_topics)
        if missing:  # keep running the current version until they exist
            self._next_topics_check = time.monotonic() + SOURCE_TOPICS_CHECK_S
            if latest.version != self._waiting_version:
                log.warning(
                    "%s; v%d keeps running until then", missing_topics_message(latest, missing), self.spec.version
                )
                self._waiting_version = latest.version
            return
        log.warning("workspace %r: picked up version %d", self.workspace, latest.version)
        old_topics = self.engine.source_topics
        self.engine, self.spec = self._engine_for(latest), latest
        owned = [TopicPartition(topic, partition) for topic, partition in sorted(self.owned)]
        for tp in self.consumer.committed(owned, timeout=COMMIT_TIMEOUT_S) if owned else []:
            self._rebuild_stale(tp)
        if self.engine.source_topics != old_topics:
            self.consumer.subscribe(self.engine.source_topics, on_assign=self.on_assign, on_revoke=self.on_revoke)

    def _existing_topics(self, topics: list[str]) -> list[str]:
        return list(partition_counts(self.bootstrap, topics))

    def close(self) -> None:
        self.registry.stop()
        self.deletes.close()
        try:
            self.sink.abort()
            self.consumer.close()  # leaves the group: the partitions move at once, not after a timeout
        finally:
            self.store.close()


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _records(messages: list[Message]) -> list[RawRecord]:
    """The batch's records (one tuple each: this runs per event), after reporting any errors."""
    records = [
        RawRecord(m.topic(), m.partition(), m.offset(), m.value(), m.timestamp()[1])  # type: ignore[arg-type]  # set when no error
        for m in messages
        if m.error() is None
    ]
    if len(records) < len(messages):
        for message in messages:
            error = message.error()
            if error is not None and error.fatal():
                raise KafkaUnavailableError(f"consuming failed: {error.str()}")
            if error is not None:
                log.warning("consumer: %s", error.str())
    return records


def run_worker(
    bootstrap: str,
    workspace: str,
    data_dir: Path,
    batch_size: int = 10_000,
    batch_window_s: float = 0.1,
    *,
    registry: Registry | None = None,
) -> None:
    """Run the worker until SIGTERM/SIGINT or its workspace is deleted; raises ``FeaturebusError``
    if it had to stop on an error. ``registry``: where it follows its workspace (default: the
    registry on the same bus).

    Returns at once for a development workspace: it is never materialized (workspaces do not
    change kind, so there is nothing to wait for)."""
    registry = registry or KafkaRegistry(bootstrap)
    spec = live_workspace(registry, workspace)
    if spec is None:
        return
    try:
        spec = await_source_topics(registry, spec, lambda topics: list(partition_counts(bootstrap, topics)))
    except WorkspaceDeletedError as exc:
        log.warning("%s", exc)
        return
    if spec is None:
        return
    worker = _Worker(registry, bootstrap, workspace, data_dir, spec)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stopping = True

    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
        sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        worker.run(batch_size, batch_window_s)
    finally:
        worker.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
