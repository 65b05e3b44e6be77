"""``plan`` and ``apply`` check that a workspace's Kafka source topics exist, and ``apply`` creates
the missing ones on a local development broker (``--create-topics``).

Without this, a newcomer's first ``apply`` after ``featurebus up`` left the stream worker waiting
for a ``transactions`` topic nobody had created. On an external cluster topics are the
operators' (partitions, retention, ACLs): featurebus only says which are missing unless asked.
Push sources' topics are always created by ``apply`` (they belong to featurebus).
"""

from __future__ import annotations

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, partition_counts
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["DEFAULT_PARTITIONS", "create_source_topics", "missing_source_topics", "missing_topics_note"]

DEFAULT_PARTITIONS = 4  # the partitions a created source topic gets: up to 4 workers share it


def missing_source_topics(spec: WorkspaceSpec, bootstrap: str) -> list[str]:
    """The spec's Kafka source topics on this cluster that do not exist (sorted)."""
    wanted = sorted(
        {
            t
            for s in spec.stream_sources
            if not s.push and s.kafka.bootstrap_servers in (None, bootstrap)
            for t in s.kafka.topics
        }
    )
    if not wanted:
        return []
    existing = partition_counts(bootstrap, wanted)
    return [t for t in wanted if t not in existing]


def missing_topics_note(missing: list[str], bootstrap: str) -> str:
    return (
        f"source topics missing on {bootstrap}: {', '.join(missing)}. The stream worker waits for them; "
        "create them, or re-run apply with --create-topics (on by default on the local development broker)"
    )


def create_source_topics(topics: list[str], bootstrap: str, partitions: int) -> None:
    ensure_topics(bootstrap, [TopicConfig(topic, partitions) for topic in topics])
