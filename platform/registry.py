"""The registry on the bus: each workspace's applied ``WorkspaceSpec``, versioned, on a compacted
topic keyed by workspace name. Applying writes version N+1; readers keep the latest per key."""

from __future__ import annotations

import dataclasses
import logging
import time

from featurebus.platform.kafka_admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.producer import reliable_producer
from featurebus.platform.topics import REGISTRY_TOPIC
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["apply_workspace", "read_registry", "wait_for_workspace"]

log = logging.getLogger(__name__)

PUSH_TOPIC_PARTITIONS = 4


def read_registry(bootstrap: str, timeout_s: float = 15.0) -> dict[str, WorkspaceSpec]:
    """Every workspace's latest applied spec, read from the registry topic."""
    latest = read_compacted(bootstrap, REGISTRY_TOPIC, timeout_s)
    return {key.decode("utf-8"): WorkspaceSpec.from_json(value) for key, value in latest.items()}


def apply_workspace(bootstrap: str, spec: WorkspaceSpec) -> WorkspaceSpec:
    """Publish ``spec`` as the workspace's next version; returns it with its version number."""
    # Push topics exist from the moment a push source is applied, so ingestion can write at once.
    push_topics = [TopicConfig(t, PUSH_TOPIC_PARTITIONS) for s in spec.stream_sources if s.push for t in s.kafka.topics]
    ensure_topics(bootstrap, [TopicConfig(REGISTRY_TOPIC, 1, compacted=True), *push_topics])
    current = read_registry(bootstrap).get(spec.name)
    versioned = dataclasses.replace(spec, version=(current.version if current else 0) + 1)
    with reliable_producer(bootstrap) as producer:
        producer.produce(REGISTRY_TOPIC, key=spec.name.encode("utf-8"), value=versioned.to_json())
    return versioned


def wait_for_workspace(bootstrap: str, workspace: str, poll_s: float = 1.0) -> WorkspaceSpec:
    """Block until the workspace has been applied: processes may start before ``apply``."""
    announced = False
    while True:
        spec = read_registry(bootstrap).get(workspace)
        if spec is not None:
            return spec
        if not announced:
            log.warning("waiting for workspace %r to be applied (`featurebus apply`)", workspace)
            announced = True
        time.sleep(poll_s)
