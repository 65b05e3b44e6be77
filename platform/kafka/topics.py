"""Every Kafka topic name featurebus derives, in one place.

Names are ``featurebus.<workspace>.<kind>.<object>``; user-owned source topics keep the names the
user gave them in ``KafkaConfig(topics=...)``.
"""

from __future__ import annotations

__all__ = [
    "REGISTRY_TOPIC",
    "REGISTRY_HISTORY_TOPIC",
    "API_KEYS_TOPIC",
    "ALERT_STATE_TOPIC",
    "ALERTS_TOPIC",
    "AUDIT_TOPIC",
    "feature_topic",
    "push_topic",
    "logging_topic",
    "logged_features_group",
    "dead_letter_topic",
    "worker_group",
    "flink_group",
    "offline_group",
    "jobs_topic",
    "deletes_topic",
    "jobs_runner_transactional_id",
]

# Compacted: one record per workspace, the latest applied WorkspaceSpec (key = workspace name).
REGISTRY_TOPIC = "featurebus.registry"
# Compacted, never shrinking: every applied version of every workspace (key = "<workspace>@<version>"),
# written in the same transaction as the registry record; `featurebus registry log` reads it.
REGISTRY_HISTORY_TOPIC = "featurebus.registry-history"
# Compacted: the access records (API keys by secret hash, principals, role bindings; see
# featurebus.platform.access.records), a tombstone once revoked or deleted.
API_KEYS_TOPIC = "featurebus.api-keys"
# Compacted: the alert evaluator's state of every alert rule (key = rule name), with the
# notifications it owes (its outbox), so a restarted evaluator neither loses nor repeats them.
ALERT_STATE_TOPIC = "featurebus.alert-state"
# Every alert notification sent (key = notification id), the "alerts topic" channel.
ALERTS_TOPIC = "featurebus.alerts"
# Compacted with a unique key per record (so compaction never removes one), retention unlimited:
# the control plane's audit log, one record per mutating call or refused request.
AUDIT_TOPIC = "featurebus.audit"


def feature_topic(workspace: str, view: str) -> str:
    """Compacted topic of a stream feature view's tiles (key = entity key + tile start)."""
    return f"featurebus.{workspace}.features.{view}"


def push_topic(workspace: str, source: str) -> str:
    """Where the ingestion API writes a push source's records (JSON), for the stream worker."""
    return f"featurebus.{workspace}.push.{source}"


def logging_topic(workspace: str, service: str) -> str:
    """Sampled served requests of a feature service with logging (JSON, key = request id),
    written by serving (``serving/feature_logging.py``), read into the offline store."""
    return f"featurebus.{workspace}.logging.{service}"


def logged_features_group(workspace: str) -> str:
    return f"featurebus.{workspace}.logged-features"


def dead_letter_topic(workspace: str) -> str:
    """Malformed source records, with the reason in a header and the original bytes as value."""
    return f"featurebus.{workspace}.dead-letter"


def worker_group(workspace: str) -> str:
    return f"featurebus.{workspace}.worker"


def flink_group(workspace: str) -> str:
    """The group the Flink job's Kafka source commits its checkpointed offsets under (for lag only:
    the job's own position lives in its checkpoints)."""
    return f"featurebus.{workspace}.flink"


def offline_group(workspace: str) -> str:
    return f"featurebus.{workspace}.offline"


def jobs_topic(workspace: str) -> str:
    """Compacted: the workspace's materialization and compaction jobs (key = ``job/<id>``) and
    cancel requests (key = ``cancel/<id>``), see ``featurebus.platform.registry.jobs``."""
    return f"featurebus.{workspace}.jobs"


def jobs_runner_transactional_id(workspace: str) -> str:
    """Shared by every job runner of the workspace: a starting runner fences the previous one."""
    return f"featurebus.{workspace}.jobs-runner"


def deletes_topic(workspace: str) -> str:
    """The workspace's delete requests (``featurebus.platform.deletes.requests``): every stream
    worker follows it to drop the deleted entities from its local state."""
    return f"featurebus.{workspace}.deletes"
