"""Small, reusable Kafka chores: create topics idempotently, read a compacted topic to its end.

Everything here turns "the cluster is not there" into ``KafkaUnavailableError`` with a hint, so
callers (CLI, serving, control plane) never see a raw ``KafkaException`` or hang forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.cimpl import NewTopic

from featurebus.platform.kafka.clients import admin_client, consumer
from featurebus.platform.kafka.security import access_denied, is_access_denied
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = [
    "TopicConfig",
    "ensure_topic",
    "ensure_topics",
    "group_lag",
    "partition_counts",
    "partition_bounds",
    "read_compacted",
    "topic_end_offsets",
    "unreachable_hint",
]


@dataclass(frozen=True)
class TopicConfig:
    name: str
    partitions: int = 1
    compacted: bool = False
    config: Mapping[str, str] = field(default_factory=dict)  # extra topic configs


def unreachable_hint(bootstrap: str) -> str:
    return (
        f"Kafka at {bootstrap} is not reachable; start it (`featurebus up` runs a local broker) or "
        "point FEATUREBUS_KAFKA_BOOTSTRAP at a running cluster"
    )


def partition_counts(bootstrap: str, topics: Iterable[str], timeout_s: float = 10.0) -> dict[str, int]:
    """``{topic: partitions}`` of those of ``topics`` that exist (a missing one is left out)."""
    try:
        metadata = admin_client(bootstrap, **{"socket.connection.setup.timeout.ms": 5000}).list_topics(
            timeout=timeout_s
        )
    except KafkaException as exc:
        raise KafkaUnavailableError(f"listing topics failed: {exc}. {unreachable_hint(bootstrap)}") from exc
    found = {name: meta for name, meta in metadata.topics.items() if meta.error is None}
    return {topic: len(found[topic].partitions) for topic in topics if topic in found}


def ensure_topic(
    bootstrap: str, name: str, partitions: int = 1, compacted: bool = False, timeout_s: float = 15.0
) -> None:
    """Create ``name`` unless it exists (an existing topic is left as it is)."""
    ensure_topics(bootstrap, [TopicConfig(name, partitions, compacted)], timeout_s)


def ensure_topics(bootstrap: str, topics: Iterable[TopicConfig], timeout_s: float = 15.0) -> None:
    """Create every missing topic in one admin request; already existing ones are fine."""
    wanted = list(topics)
    if not wanted:
        return
    # Only the missing ones: a component may read a topic without the right to create it.
    existing = partition_counts(bootstrap, [topic.name for topic in wanted], timeout_s)
    wanted = [topic for topic in wanted if topic.name not in existing]
    if not wanted:
        return
    admin = admin_client(bootstrap, **{"socket.connection.setup.timeout.ms": 5000})
    new_topics = []
    for topic in wanted:
        config = dict(topic.config)
        if topic.compacted:
            config.setdefault("cleanup.policy", "compact")
        # replication_factor=-1: the broker's default.replication.factor (1 on a dev broker).
        new_topics.append(NewTopic(topic.name, num_partitions=topic.partitions, replication_factor=-1, config=config))
    futures = admin.create_topics(new_topics, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s + 1.0)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if is_access_denied(error):
                raise access_denied(bootstrap, error, "create", name) from exc
            hint = unreachable_hint(bootstrap)
            raise KafkaUnavailableError(f"could not create topic {name!r}: {exc}. {hint}") from exc
        except TimeoutError as exc:
            raise KafkaUnavailableError(
                f"creating topic {name!r} timed out after {timeout_s:g} s. {unreachable_hint(bootstrap)}"
            ) from exc


def read_compacted(
    bootstrap: str, topic: str, timeout_s: float = 15.0, partitions: Iterable[int] | None = None
) -> dict[bytes, bytes]:
    """The latest value per key of ``topic`` (or of some of its ``partitions``), read from the
    beginning to the current end of committed records.

    Tombstones remove their key, as compaction eventually would. A missing topic is empty.
    """
    reader = consumer(
        bootstrap,
        **{
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",  # registry versions are written in transactions
            "socket.connection.setup.timeout.ms": 5000,
        },
    )
    deadline = time.monotonic() + timeout_s
    try:
        ends = _partition_ends(reader, bootstrap, topic, timeout_s)
        if partitions is not None:
            wanted = set(partitions)
            ends = {p: bounds for p, bounds in ends.items() if p in wanted}
        latest: dict[bytes, bytes] = {}
        if not ends:
            return latest
        reader.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        remaining = {p: high for p, (_, high) in ends.items()}
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading topic {topic!r} did not reach its end within {timeout_s:g} s. "
                    f"{unreachable_hint(bootstrap)}"
                )
            messages = reader.consume(num_messages=500, timeout=0.1)
            for msg in messages:
                if msg.error() is not None:
                    raise KafkaUnavailableError(f"reading topic {topic!r} failed: {msg.error()}")
                key = msg.key()
                if key is not None:
                    value = msg.value()
                    if value is None:
                        latest.pop(key, None)
                    else:
                        latest[key] = value
            # The position, not the last offset seen, decides: it also steps over transaction
            # markers and compacted-away offsets at the end of a partition.
            positions = reader.position([TopicPartition(topic, p) for p in remaining])
            for tp in positions:
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        return latest
    finally:
        reader.close()


_TRANSIENT = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})


def _watermarks(client: Any, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """A just-created topic's leader may not answer for a moment (NOT_LEADER_FOR_PARTITION on a
    fresh broker, e.g. ``apply`` right after ``kafka start``): retry those until ``deadline``."""
    while True:
        try:
            low, high = client.get_watermark_offsets(partition, timeout=max(0.1, deadline - time.monotonic()))
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() in _TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _partition_ends(client: Any, bootstrap: str, topic: str, timeout_s: float) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` of the non-empty partitions of ``topic`` ({} if missing)."""
    try:
        metadata = client.list_topics(topic, timeout=timeout_s)
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None:
            return {}
        ends: dict[int, tuple[int, int]] = {}
        deadline = time.monotonic() + timeout_s
        for partition in topic_meta.partitions:
            low, high = _watermarks(client, TopicPartition(topic, partition), deadline)
            if high > low:
                ends[partition] = (low, high)
        return ends
    except KafkaException as exc:
        raise KafkaUnavailableError(f"reading topic {topic!r} failed: {exc}. {unreachable_hint(bootstrap)}") from exc


def topic_end_offsets(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` of the non-empty partitions of ``topic`` ({} if missing)."""
    reader = consumer(bootstrap, **{"socket.connection.setup.timeout.ms": 5000})
    try:
        return _partition_ends(reader, bootstrap, topic, timeout_s)
    finally:
        reader.close()


def committed_positions(
    bootstrap: str, group: str, topics: Iterable[str], timeout_s: float = 10.0
) -> list[TopicPartition]:
    """Consumer ``group``'s committed offsets (with their metadata) of every partition of ``topics``."""
    group_reader = consumer(bootstrap, group)
    try:
        wanted = [
            TopicPartition(topic, p)
            for topic in topics
            for p in _partition_ends(group_reader, bootstrap, topic, timeout_s)
        ]
        return list(group_reader.committed(wanted, timeout=timeout_s)) if wanted else []
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"reading the progress of {group!r} failed: {exc}. {unreachable_hint(bootstrap)}"
        ) from exc
    finally:
        group_reader.close()


def group_lag(bootstrap: str, group: str, topics: Iterable[str], timeout_s: float = 10.0) -> int:
    """Records in ``topics`` not yet committed by consumer ``group`` (all of them if it never committed)."""
    # committed() asks the group's coordinator for this group.id without joining the group.
    group_reader = consumer(bootstrap, group)
    try:
        lag = 0
        for topic in topics:
            ends = _partition_ends(group_reader, bootstrap, topic, timeout_s)
            committed = group_reader.committed([TopicPartition(topic, p) for p in ends], timeout=timeout_s)
            for tp in committed:
                low, high = ends[tp.partition]
                lag += high - max(tp.offset, low)
        return lag
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"reading the progress of {group!r} failed: {exc}. {unreachable_hint(bootstrap)}"
        ) from exc
    finally:
        group_reader.close()


# A just-created topic: its leader, or the client's metadata of it, may lag for a moment.
_TRANSIENT_METADATA = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def partition_bounds(reader: Any, bootstrap: str, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """``(low, high)`` offsets of one partition as ``reader`` sees them (with read_committed, high
    is the last stable offset), retried while a just-created topic's leader settles."""
    target = TopicPartition(topic, partition)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = reader.get_watermark_offsets(target, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() in _TRANSIENT_METADATA and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise KafkaUnavailableError(f"reading {topic} failed: {exc}. {unreachable_hint(bootstrap)}") from exc
