"""What each platform component may do on the bus, as Kafka ACLs, and granting them.

The rights are data (``component_rights``): one ``Right`` per (resource, pattern, operation), so a
test can read them and ``grant_component_rights`` is a plain loop. The split follows who writes
which topic (``topics``):

- control plane: everything under ``featurebus.`` — the registry, its history, principals and
  keys, the audit log, jobs, alert state — with the transactional ids and groups that go with it;
  it also creates the topics an apply needs. It is the only component that writes those topics.
- worker: writes a workspace's feature topics and its dead letters, in transactions under
  ``featurebus.<ws>.worker.*`` (the Flink engine's sink: ``featurebus.<ws>.flink*``); it may create,
  not write, the delete requests topic;
- serving: writes only a workspace's push topics (ingestion);
- job runner: writes a workspace's jobs topic (status, under its transactional id) and its feature
  topics (batch materialization);
- offline materializer: writes nothing on the bus.

Deleting entities with ``include_sources`` writes tombstones to users' (compacted) source topics:
the control plane may do so only where an operator granted its principal WRITE on those topics;
otherwise the delete fails naming the topic and the right.

Every component reads every topic (source topics are named by users, so no prefix covers them)
and uses consumer groups under ``featurebus.``, except that only the control plane and serving
read the principals/keys topic and only the control plane reads the audit log: explicit DENY
entries, which Kafka's authorizer puts above any ALLOW.

Workspace-scoped rights are granted for the workspaces that exist when ``featurebus up`` starts
(and the one it runs); a workspace created later gets them at the next ``featurebus up``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException

# The defining modules: confluent_kafka.admin re-exports these without listing them, which mypy's
# no_implicit_reexport rejects (as for NewTopic, see tests/conftest.py).
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from featurebus.platform.kafka.clients import admin_client
from featurebus.platform.kafka.credentials import BusCredentials, Component
from featurebus.platform.kafka.security import access_denied, is_access_denied
from featurebus.platform.kafka.topics import (
    API_KEYS_TOPIC,
    AUDIT_TOPIC,
    dead_letter_topic,
    deletes_topic,
    feature_topic,
    jobs_runner_transactional_id,
    jobs_topic,
    push_topic,
)
from featurebus.schemas.errors import KafkaUnavailableError

__all__ = ["Right", "component_rights", "grant_component_rights"]

_PREFIX = "featurebus."
_SCRAM_ITERATIONS = 8192
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Right:
    resource: ResourceType
    name: str
    pattern: ResourcePatternType
    operation: AclOperation
    allow: bool = True

    def binding(self, principal: str) -> AclBinding:
        permission = AclPermissionType.ALLOW if self.allow else AclPermissionType.DENY
        return AclBinding(self.resource, self.name, self.pattern, principal, "*", self.operation, permission)


def _topics(names: Iterable[str], *operations: AclOperation, prefixed: bool = False) -> list[Right]:
    pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
    return [Right(ResourceType.TOPIC, name, pattern, op) for name in names for op in operations]


_READ_ALL = [
    Right(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, AclOperation.READ),
    Right(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
    Right(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, AclOperation.DESCRIBE_CONFIGS),
    Right(ResourceType.GROUP, _PREFIX, ResourcePatternType.PREFIXED, AclOperation.READ),
    Right(ResourceType.GROUP, _PREFIX, ResourcePatternType.PREFIXED, AclOperation.DESCRIBE),
]
_DENY_KEYS = Right(ResourceType.TOPIC, API_KEYS_TOPIC, ResourcePatternType.LITERAL, AclOperation.READ, allow=False)
_DENY_AUDIT = Right(ResourceType.TOPIC, AUDIT_TOPIC, ResourcePatternType.LITERAL, AclOperation.READ, allow=False)
_WRITE_AND_CREATE = (AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE)


def component_rights(component: Component, workspaces: Iterable[str]) -> list[Right]:
    """Every ACL entry ``component`` gets, with workspace rights for each of ``workspaces``."""
    names = sorted(set(workspaces))
    if component is Component.CONTROL:
        return [
            Right(resource, _PREFIX, ResourcePatternType.PREFIXED, AclOperation.ALL)
            for resource in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
        ] + _READ_ALL
    rights = [*_READ_ALL, _DENY_AUDIT]
    if component is not Component.SERVING:
        rights.append(_DENY_KEYS)
    for ws in names:
        if component is Component.WORKER:
            rights += _topics([feature_topic(ws, "")], *_WRITE_AND_CREATE, prefixed=True)
            rights += _topics([dead_letter_topic(ws)], *_WRITE_AND_CREATE)
            rights += _transactional_ids(f"{_PREFIX}{ws}.worker.", prefixed=True)
            rights += _transactional_ids(f"{_PREFIX}{ws}.flink", prefixed=True)  # the Flink engine's sink
            # It creates the delete requests topic when missing; only the control plane writes it.
            rights += _topics([deletes_topic(ws)], AclOperation.CREATE, AclOperation.DESCRIBE)
        elif component is Component.SERVING:
            rights += _topics([push_topic(ws, "")], *_WRITE_AND_CREATE, prefixed=True)
        elif component is Component.JOBS:
            rights += _topics([jobs_topic(ws)], *_WRITE_AND_CREATE)
            rights += _topics([feature_topic(ws, "")], *_WRITE_AND_CREATE, prefixed=True)
            rights += _transactional_ids(jobs_runner_transactional_id(ws), prefixed=False)
    return rights


def _transactional_ids(name: str, *, prefixed: bool) -> list[Right]:
    pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
    return [
        Right(ResourceType.TRANSACTIONAL_ID, name, pattern, op) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
    ]


def grant_component_rights(bootstrap: str, credentials: BusCredentials, workspaces: Iterable[str]) -> None:
    """Create (or update) every component's SCRAM principal and grant its ACLs; idempotent.

    Runs with this process's credentials for ``bootstrap``, which must be the broker's admin.
    """
    admin = admin_client(bootstrap)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            component.username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _SCRAM_ITERATIONS),
            credentials.components[component].encode(),
        )
        for component in Component
    ]
    names = list(workspaces)
    bindings = [
        right.binding(f"User:{component.username}")
        for component in Component
        for right in component_rights(component, names)
    ]
    try:
        for future in admin.alter_user_scram_credentials(upserts, request_timeout=_TIMEOUT_S).values():
            future.result(timeout=_TIMEOUT_S)
        for future in admin.create_acls(bindings, request_timeout=_TIMEOUT_S).values():
            future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        if is_access_denied(exc):
            raise access_denied(bootstrap, exc, "alter", "ACLs and SCRAM users") from exc
        raise KafkaUnavailableError(f"granting the components' Kafka rights on {bootstrap} failed: {exc}") from exc
