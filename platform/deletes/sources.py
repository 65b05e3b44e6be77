"""``include_sources=True``: the deleted entities' records on the source topics, where Kafka can.

Kafka removes single records only from *compacted* topics, and only by key: a tombstone for a
key makes compaction drop every earlier record of that key. So for a compacted source topic the
topic is read, each live record decoded with the source's format, and the keys whose latest
record belongs to a deleted entity get a tombstone (in the record's partition). A topic with
``cleanup.policy=delete`` can only be truncated below an offset (``delete_records``), which would
delete every other entity's records before it too: featurebus does not do that, and the receipt
says so, with when retention will remove the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]  # exported at run time, not in the stubs

from featurebus.platform.deletes.bus import live_records, write_tombstones
from featurebus.platform.deletes.receipt import NotDeleted, TopicTombstones
from featurebus.platform.kafka.clients import admin_client
from featurebus.schemas.encoding import JoinKeyValue, coerce_join_key
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import StreamSourceSpec
from featurebus.streams.records import decode_records

__all__ = ["delete_source_records", "topic_settings"]


def topic_settings(bootstrap: str, topic: str, timeout_s: float = 15.0) -> dict[str, str]:
    """The topic's effective configuration (``cleanup.policy``, ``retention.ms``, ...)."""
    client: Any = admin_client(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = client.describe_configs([resource])[resource].result(timeout=timeout_s)
    except Exception as exc:  # KafkaException, or a timeout
        raise KafkaUnavailableError(f"reading the configuration of topic {topic!r} failed: {exc}") from None
    return {name: entry.value for name, entry in configs.items() if entry.value is not None}


def delete_source_records(
    bootstrap: str,
    source: StreamSourceSpec,
    join_keys: Sequence[str],
    dtypes: Sequence[str],
    keys: set[tuple[JoinKeyValue, ...]],
) -> tuple[list[TopicTombstones], list[NotDeleted]]:
    columns = {f.name for f in source.schema}
    missing = [k for k in join_keys if k not in columns]
    if missing:
        return [], [
            NotDeleted(
                f"source {source.name!r} (topics {list(source.kafka.topics)})",
                f"its records have no field(s) {missing}, so they cannot be matched to the deleted entities",
            )
        ]
    written: list[TopicTombstones] = []
    skipped: list[NotDeleted] = []
    for topic in source.kafka.topics:
        settings = topic_settings(bootstrap, topic)
        policy = settings.get("cleanup.policy", "delete")
        if "compact" not in policy:
            retention_ms = int(settings.get("retention.ms", "-1"))
            expiry = (
                "never (retention.ms=-1)"
                if retention_ms < 0
                else f"after retention.ms={retention_ms} ({retention_ms / 86_400_000:g} days)"
            )
            skipped.append(
                NotDeleted(
                    topic,
                    f"cleanup.policy={policy}: Kafka removes records of such a topic only by truncating a partition "
                    "below an offset (delete_records), which would delete every other entity's earlier records too, "
                    f"so nothing was deleted there; its records of these entities expire {expiry}. Make the topic "
                    "compacted and keyed to delete by key",
                )
            )
            continue

        def of_deleted(batch: list[tuple[bytes, bytes]]) -> list[bool]:
            decoded = decode_records([value for _, value in batch], source)
            verdicts = [False] * len(batch)  # undecodable records belong to no entity
            columns = [decoded.frame[k].tolist() for k in join_keys] if decoded.accepted_indexes else []
            for row, position in enumerate(decoded.accepted_indexes):
                values = tuple(
                    coerce_join_key(column[row], dtype, k)
                    for column, dtype, k in zip(columns, dtypes, join_keys, strict=True)
                )
                verdicts[position] = values in keys
            return verdicts

        matched = list(live_records(bootstrap, topic, of_deleted))
        if matched:  # keyless records never reach here: a compacted topic refuses them
            written.extend(write_tombstones(bootstrap, topic, matched, "source"))
    return written, skipped
