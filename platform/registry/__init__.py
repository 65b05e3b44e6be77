"""The registry of workspaces' specs, API keys and job records (see ``base``)."""

from featurebus.platform.registry.base import Registry, SpecFollower, SpecRecord, history_key
from featurebus.platform.registry.kafka import KafkaRegistry, KafkaSpecFollower, registry_topics
from featurebus.platform.registry.memory import MemoryRegistry
from featurebus.platform.registry.specs import PUSH_TOPIC_PARTITIONS, apply_workspace, read_version, wait_for_workspace

__all__ = [
    "PUSH_TOPIC_PARTITIONS",
    "KafkaRegistry",
    "KafkaSpecFollower",
    "MemoryRegistry",
    "Registry",
    "SpecFollower",
    "SpecRecord",
    "apply_workspace",
    "history_key",
    "read_version",
    "registry_topics",
    "wait_for_workspace",
]
