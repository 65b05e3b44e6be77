"""Recomputing stream views from the source log when what they compute changed.

An apply that changes a view's window, functions, transformation or source (anything in its
materialization fingerprint, ``featurebus.schemas.materialization``) leaves the view's state
wrong for the past: tiles were folded under the old definition, and state a longer window needs
was already expired. A view that is new to a partition's history (created, or switched online,
after the partition was processed) has no past at all. Either way the stream worker recomputes
the view's shard of that partition before it consumes further:

1. ``recompute_views`` replays the partition from the log's beginning up to the committed
   position through a scratch ``StreamEngine`` that holds only those views (its own scratch
   store, effects discarded: the first pass already dead-lettered and counted), then expires
   it, so the result is exactly the state the worker would hold had the view always been
   defined this way.
2. ``install_rebuilt`` marks the local shard as being rebuilt, publishes the differences to the
   feature topic (new values first, then tombstones for records that no longer exist), in
   transactions of bounded size, the last of which also commits the partition's offset with the
   new fingerprints; only then does it replace the local state.

A crash at any point is safe: until the last transaction commits, the committed fingerprints are
the old ones, so the next owner (after restoring the shard from the feature topic, since the
local progress says "rebuilding") recomputes again; records published by the interrupted attempt
are the same records the next attempt publishes. Serving may see a mix of old and new records
of the view while a rebuild is being published.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from featurebus.platform.kafka.admin import unreachable_hint
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.engine import FeatureSink, Progress, RawRecord, StreamEngine

__all__ = ["REBUILDING", "RebuildResult", "install_rebuilt", "read_source_partition", "recompute_views"]

log = logging.getLogger(__name__)

# Local progress while a shard is being rebuilt: never a committed position, so a worker that
# dies meanwhile restores the shard from the bus instead of trusting its half-replaced cache.
REBUILDING = Progress(-2)
PUBLISH_CHUNK_RECORDS = 20_000  # per transaction: well inside the transaction timeout
STALLED_AFTER_S = 120.0  # no record and no progress for this long while replaying: the broker is gone


class _NoEffects:
    """The scratch replay's sink: its records are not the bus's business until installed."""

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        pass

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        pass  # dead-lettered (and counted) when the record was first processed

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        pass


@dataclass(frozen=True)
class RebuildResult:
    views: tuple[str, ...]
    replayed: int  # source records read from the log
    published: int  # records that changed on the feature topics (values and tombstones)


def recompute_views(
    spec: WorkspaceSpec,
    views: Sequence[str],
    topic: str,
    partition: int,
    batches: Iterable[Sequence[RawRecord]],
    scratch: KeyValueStore,
    feature_topic_of: Callable[[str], tuple[str, int]],
) -> tuple[dict[str, dict[bytes, bytes]], int]:
    """The state of ``views``' shard of ``topic[partition]`` after replaying ``batches`` (the
    partition's log up to the committed position) under ``spec``: view -> record key -> value.
    ``scratch`` must be empty; it is the replay's working store. Also returns the record count."""
    wanted = set(views)
    only_views = dataclasses.replace(
        spec, stream_feature_views=tuple(v for v in spec.stream_feature_views if v.name in wanted)
    )
    engine = StreamEngine(only_views, scratch, _NoEffects(), feature_topic_of)
    replayed = 0
    for batch in batches:
        engine.process(batch)
        replayed += len(batch)
    engine.expire()
    shards = {view: shard for view, _, _, shard in engine.shard_locations(topic, partition)}
    return {view: engine.view_shard(view, shards[view]) for view in views}, replayed


def install_rebuilt(
    engine: StreamEngine,
    sink: FeatureSink,
    topic: str,
    partition: int,
    rebuilt: dict[str, dict[bytes, bytes]],
    progress: Progress,
) -> int:
    """Publish and cache the recomputed views' shard (``recompute_views``), committing
    ``progress`` (the partition's committed position, unchanged) with the last transaction.
    Returns how many feature-topic records changed."""
    engine.set_progress(topic, partition, REBUILDING)
    locations = {
        view: (feature_topic, feature_partition, shard)
        for view, feature_topic, feature_partition, shard in engine.shard_locations(topic, partition)
    }
    changes: list[tuple[str, int, bytes, bytes | None]] = []
    for view, records in rebuilt.items():
        feature_topic, feature_partition, shard = locations[view]
        old = engine.view_shard(view, shard)
        changes.extend(
            (feature_topic, feature_partition, key, value) for key, value in records.items() if old.get(key) != value
        )
        # Tombstones after the new values: a reader in between sees too much, never too little.
        changes.extend((feature_topic, feature_partition, key, None) for key in old.keys() - records.keys())
    for start in range(0, len(changes), PUBLISH_CHUNK_RECORDS):
        if start:
            sink.commit({})
        for change in changes[start : start + PUBLISH_CHUNK_RECORDS]:
            sink.publish(*change)
    sink.commit({(topic, partition): progress})
    engine.replace_view_shards(topic, partition, rebuilt, progress)
    return len(changes)


def read_source_partition(
    bootstrap: str, topic: str, partition: int, end_offset: int, batch_size: int = 10_000
) -> Iterator[list[RawRecord]]:
    """The committed records of ``topic[partition]`` from the oldest retained one up to (not
    including) ``end_offset``, in batches."""
    consumer = kafka_consumer(
        bootstrap,
        f"featurebus.rebuild.{uuid.uuid4().hex}",  # never commits: the id is only required
        **{"enable.auto.offset.store": False, "isolation.level": "read_committed"},
    )
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        if low >= end_offset:
            return
        consumer.assign([TopicPartition(topic, partition, low)])
        position, last_move = low, time.monotonic()
        while position < end_offset:
            messages = consumer.consume(num_messages=batch_size, timeout=0.5)
            records = []
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaUnavailableError(f"replaying {topic}[{partition}] failed: {error.str()}")
                    continue
                if message.offset() < end_offset:  # type: ignore[operator]  # set on records without error
                    offset: int = message.offset()  # type: ignore[assignment]  # set on records without error
                    records.append(RawRecord(topic, partition, offset, message.value(), message.timestamp()[1]))
            if records:
                yield records
            # The position, not the last offset seen, decides: it also steps over transaction markers.
            now_at = consumer.position([TopicPartition(topic, partition)])[0].offset
            if now_at > position:
                position, last_move = now_at, time.monotonic()
            elif time.monotonic() - last_move > STALLED_AFTER_S:
                raise KafkaUnavailableError(
                    f"replaying {topic}[{partition}] stalled at offset {position} "
                    f"(wanted {end_offset}). {unreachable_hint(bootstrap)}"
                )
    finally:
        consumer.close()
