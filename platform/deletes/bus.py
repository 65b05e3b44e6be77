"""Reading a topic's live keys per partition, and writing tombstones with their offsets.

Tombstones must land in the partition the key's records are in: the stream worker places a
tile by its shard, not by the key's hash, so a tombstone produced by key hash could land beside
the tile instead of over it (and compaction would keep both). Hence the reader keeps partitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from featurebus.platform.deletes.receipt import TopicTombstones
from featurebus.platform.kafka.admin import topic_end_offsets, unreachable_hint
from featurebus.platform.kafka.clients import consumer, producer
from featurebus.platform.kafka.security import access_denied, is_access_denied
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = ["live_records", "write_tombstones"]

_FLUSH_TIMEOUT_S = 30.0


def live_records(
    bootstrap: str,
    topic: str,
    wanted: Callable[[list[tuple[bytes, bytes]]], list[bool]],
    timeout_s: float = 120.0,
) -> dict[tuple[int, bytes], bytes]:
    """``(partition, key) -> latest value`` of the keyed records of ``topic`` whose latest version
    is not a tombstone and is ``wanted``, read to the current end. ``wanted`` judges a fetched
    batch of ``(key, value)`` at once (decoding source records is per batch), so only the
    matching records are held in memory, whatever the topic's size."""
    ends = topic_end_offsets(bootstrap, topic)
    found: dict[tuple[int, bytes], bytes] = {}
    if not ends:
        return found
    reader = consumer(bootstrap, **{"enable.auto.offset.store": False, "isolation.level": "read_committed"})
    deadline = time.monotonic() + timeout_s
    try:
        reader.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        remaining = {p: high for p, (_, high) in ends.items()}
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading topic {topic!r} did not reach its end within {timeout_s:g} s. {unreachable_hint(bootstrap)}"
                )
            batch = []
            for msg in reader.consume(num_messages=1000, timeout=0.1):
                if msg.error() is not None:
                    raise KafkaUnavailableError(f"reading topic {topic!r} failed: {msg.error()}")
                key = msg.key()
                if key is not None:  # a record without a key can be neither compacted nor tombstoned
                    batch.append((msg.partition() or 0, key, msg.value()))
            values = [(key, value) for _, key, value in batch if value is not None]
            verdicts = iter(wanted(values) if values else [])
            for partition, key, value in batch:
                if value is not None and next(verdicts):
                    found[(partition, key)] = value
                else:  # a tombstone, or a newer version that is not wanted
                    found.pop((partition, key), None)
            for tp in reader.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        return found
    finally:
        reader.close()


def write_tombstones(
    bootstrap: str, topic: str, slots: Iterable[tuple[int, bytes]], kind: str
) -> list[TopicTombstones]:
    """Produce a tombstone for each ``(partition, key)`` (idempotent, ``acks=all``) and return
    what Kafka acknowledged, per partition with the first and last offset; raises if any failed."""
    offsets: dict[int, list[int]] = {}
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            offsets.setdefault(message.partition() or 0, []).append(message.offset() or 0)

    writer: Any = producer(bootstrap)
    for partition, key in sorted(slots):
        while True:
            try:
                writer.produce(topic, value=None, key=key, partition=partition, on_delivery=delivered)
                break
            except BufferError:
                writer.poll(0.05)
    remaining = writer.flush(_FLUSH_TIMEOUT_S)
    if errors and is_access_denied(errors[0]):
        # A user's source topic: the control plane's principal writes it only if granted WRITE there.
        raise access_denied(bootstrap, errors[0], "write", topic)
    if errors or remaining:
        raise KafkaUnavailableError(
            f"writing tombstones to {topic!r} at {bootstrap} failed ({errors[0] if errors else f'{remaining} unacknowledged'}); "
            "nothing is lost by re-running the delete: it writes them again"
        )
    return [
        TopicTombstones(topic, partition, len(found), min(found), max(found), kind)
        for partition, found in sorted(offsets.items())
    ]
