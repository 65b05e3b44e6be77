"""The Faust stream worker: Kafka consumption, consumer-group membership and micro-batching.

Faust is used for what it is good at (a consumer group, partition assignment, batching with
``take_events``); the windows, tiles and their RocksDB state are ours (``StreamEngine``), because
Faust's windowed tables expire by wall clock and read ``.current()`` by wall clock, which gives
wrong values on replay.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from featurebus.exceptions import FeaturebusError, KafkaUnavailableError, NotFoundError
from featurebus.platform.kafka_admin import TopicConfig, ensure_topics
from featurebus.platform.kv import RocksStore
from featurebus.platform.producer import DeliveryTracker, producer_config
from featurebus.platform.registry import read_registry, wait_for_workspace
from featurebus.platform.topics import dead_letter_topic, feature_topic, worker_group
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.engine import RawRecord, StreamEngine

__all__ = ["KafkaFeatureSink", "run_worker"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
REGISTRY_POLL_S = 2.0  # how often a running worker looks for a newly applied version
EXPIRY_INTERVAL_S = 30.0


class KafkaFeatureSink:
    """Publishes tiles and dead letters with an idempotent ``acks=all`` producer."""

    def __init__(self, bootstrap: str, workspace: str) -> None:
        from confluent_kafka import Producer

        self._tracker = DeliveryTracker(Producer(producer_config(bootstrap, **{"linger.ms": 2})), bootstrap)
        self._dead_letter_topic = dead_letter_topic(workspace)

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._tracker.produce(topic, value=value, key=key, partition=partition)

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        headers: list[tuple[str, str | bytes | None]] = [
            ("featurebus.reason", reason.encode()),
            ("featurebus.topic", record.topic.encode()),
            ("featurebus.partition", str(record.partition).encode()),
            ("featurebus.offset", str(record.offset).encode()),
        ]
        self._tracker.produce(self._dead_letter_topic, value=record.value, headers=headers)

    def flush(self) -> None:
        self._tracker.flush(timeout_s=60.0)


class LogStart:
    """First retained offset of a partition (asked once per partition, when it is first seen)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "featurebus.log-start"})

    def __call__(self, topic: str, partition: int) -> int:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            low, _ = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"reading the start of {topic}[{partition}] failed: {exc}") from exc
        return int(low)


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None]
    if missing:
        raise NotFoundError(f"source topics {missing} do not exist on {bootstrap}; create them or fix KafkaConfig(topics=...)")
    return {t: len(metadata.topics[t].partitions) for t in topics}


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


def run_worker(bootstrap: str, workspace: str, data_dir: Path, batch_size: int = 5000, batch_window_s: float = 0.02) -> None:
    """Run the worker until SIGTERM/SIGINT; raises ``FeaturebusError`` if it had to stop on an error."""
    import faust

    faust_dir = data_dir / "faust" / workspace
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    spec = wait_for_workspace(bootstrap, workspace)
    topics = _prepare_topics(bootstrap, spec)
    store = RocksStore(data_dir / "worker" / workspace)
    sink = KafkaFeatureSink(bootstrap, workspace)
    log_start = LogStart(bootstrap)
    state: dict[str, Any] = {"engine": StreamEngine(spec, store, sink, topics.__getitem__, log_start), "spec": spec,
                             "error": None}

    def stop_with(error: FeaturebusError | None) -> None:
        state["error"] = error
        os.kill(os.getpid(), signal.SIGTERM)  # mode's worker turns SIGTERM into a clean stop
        if error is not None:
            # With the broker gone, Faust's clean stop waits out its request timeouts (90 s).
            # State is crash-safe at every point (see StreamEngine), so a stop that hangs is cut
            # short; the error is said here then, since the caller will never get to say it.
            def cut_short() -> None:
                print(f"featurebus: {error}", file=sys.stderr, flush=True)
                os._exit(1)

            watchdog = threading.Timer(SHUTDOWN_GRACE_S, cut_short)
            watchdog.daemon = True
            watchdog.start()

    app = faust.App(
        worker_group(workspace),
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(faust_dir),
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # A killed worker keeps its partitions until the group evicts it: Faust's 60 s default
        # would stall a restarted (or surviving) worker that long. 10 s, heartbeats every 3 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    source_topics = state["engine"].source_topics
    channel = app.topic(*source_topics, key_serializer="raw", value_serializer="raw")

    async def process(stream: Any) -> None:
        async for events in stream.take_events(batch_size, within=batch_window_s):
            records = [RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.value) for e in events]
            try:
                state["engine"].process(records)
            except FeaturebusError as exc:
                log.error("stream worker stopping: %s", exc)
                stop_with(exc)
                return

    app.agent(channel, name="featurebus-process")(process)

    async def expire() -> None:
        try:
            state["engine"].expire()
        except FeaturebusError as exc:
            stop_with(exc)

    async def follow_registry() -> None:
        try:
            latest = read_registry(bootstrap).get(workspace)
        except KafkaUnavailableError as exc:
            stop_with(exc)
            return
        if latest is None or latest.version == state["spec"].version:
            return
        new_topics = sorted({t for s in latest.stream_sources for t in s.kafka.topics})
        if new_topics != sorted({t for s in state["spec"].stream_sources for t in s.kafka.topics}):
            log.warning("workspace %r v%d reads other topics: restarting the worker to resubscribe", workspace, latest.version)
            stop_with(None)
            return
        log.warning("workspace %r: picked up version %d", workspace, latest.version)
        state["engine"] = StreamEngine(latest, store, sink, _prepare_topics(bootstrap, latest).__getitem__, log_start)
        state["spec"] = latest

    app.timer(EXPIRY_INTERVAL_S)(expire)
    app.timer(REGISTRY_POLL_S)(follow_registry)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass  # mode's worker always ends with SystemExit(0); our own outcome is state["error"]
    finally:
        store.close()
    if state["error"] is not None:
        raise state["error"]
