"""The registry on the bus: each workspace's applied ``WorkspaceSpec``, versioned.

``featurebus.registry`` (compacted, key = workspace) holds the current version, which workers and
serving replicas follow; ``featurebus.registry-history`` (compacted, key = "<workspace>@<version>",
so nothing is ever compacted away) keeps every version. An apply writes both in one Kafka
transaction: readers (read_committed) see the new version everywhere or nowhere.

Workspaces are these same records (see ``featurebus.platform.workspaces``): ``workspace create``
writes version 0, an empty spec carrying the ``live`` flag; every apply keeps the flag of the
version it replaces; ``workspace delete`` writes tombstones for the registry record and every
history record. One topic is the single source of truth, so a reader never sees a workspace
without its flag, or a spec of a workspace that does not exist.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from featurebus.platform.kafka_admin import TopicConfig, ensure_topics, read_compacted, unreachable_hint
from featurebus.platform.producer import producer_config
from featurebus.platform.topics import REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.schemas.errors import KafkaUnavailableError, NotFoundError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = [
    "RegistryFollower",
    "apply_workspace",
    "publish_records",
    "read_history",
    "read_registry",
    "read_version",
    "registry_topics",
    "wait_for_workspace",
]

log = logging.getLogger(__name__)

PUSH_TOPIC_PARTITIONS = 4
_TRANSACTION_TIMEOUT_S = 30.0


def read_registry(bootstrap: str, timeout_s: float = 15.0) -> dict[str, WorkspaceSpec]:
    """Every workspace's current spec."""
    latest = read_compacted(bootstrap, REGISTRY_TOPIC, timeout_s)
    return {key.decode("utf-8"): WorkspaceSpec.from_json(value) for key, value in latest.items()}


class RegistryFollower:
    """The registry followed by one long-lived consumer: each ``poll`` applies what was committed
    since the last.

    For processes that watch for new versions all the time (the stream worker): a fresh
    ``read_registry`` pays a consumer's start-up (connection, metadata, offsets) on every call,
    which at one call every 2 s cost a worker about 5% of its CPU and the broker a stream of
    short-lived clients, competing with the events being processed. Not thread-safe: one thread
    polls it.
    """

    def __init__(self, bootstrap: str, unavailable_timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._unavailable_timeout_s = unavailable_timeout_s
        self._down_since: float | None = None
        self.specs: dict[str, WorkspaceSpec] = {}
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"featurebus.reader.{uuid.uuid4().hex}",  # assigned, never joins or commits
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",  # versions are written in transactions
            "socket.connection.setup.timeout.ms": 5000,
            "error_cb": self._on_kafka_error,
        })
        # One partition (``registry_topics``), read from its beginning: compaction keeps the
        # latest version of every workspace there.
        self._partition = TopicPartition(REGISTRY_TOPIC, 0, OFFSET_BEGINNING)
        self._consumer.assign([self._partition])

    def _on_kafka_error(self, error: KafkaError) -> None:
        unreachable = error.fatal() or error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE)
        if unreachable and self._down_since is None:
            self._down_since = time.monotonic()

    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        """Wait up to ``timeout_s`` for new registry records; return every workspace's latest spec.

        Raises ``KafkaUnavailableError`` once no broker has answered for ``unavailable_timeout_s``
        (as a ``read_registry`` would have failed), or on a fatal client error."""
        for message in self._consumer.consume(num_messages=500, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaUnavailableError(f"following the registry on {self._bootstrap} failed: {error.str()}")
                log.warning("registry follower: %s", error.str())
                continue
            key, value = message.key(), message.value()
            if key is None:
                continue
            if value is None:  # a deleted workspace
                self.specs.pop(key.decode("utf-8"), None)
            else:
                self.specs[key.decode("utf-8")] = WorkspaceSpec.from_json(value)
        if self._down_since is not None:
            self._check_reachable(self._down_since)
        return self.specs

    def _check_reachable(self, down_since: float) -> None:
        """After a connection error: clear it if the broker answers again, else fail in time."""
        try:
            self._consumer.get_watermark_offsets(self._partition, timeout=1.0)
            self._down_since = None
        except KafkaException as exc:
            if time.monotonic() - down_since > self._unavailable_timeout_s:
                raise KafkaUnavailableError(
                    f"following the registry failed: no broker answered for {self._unavailable_timeout_s:g} s "
                    f"({exc}). {unreachable_hint(self._bootstrap)}") from exc

    def close(self) -> None:
        self._consumer.close()


def read_history(bootstrap: str, workspace: str, timeout_s: float = 15.0) -> list[WorkspaceSpec]:
    """Every applied version of ``workspace``, oldest first."""
    prefix = f"{workspace}@".encode()
    records = read_compacted(bootstrap, REGISTRY_HISTORY_TOPIC, timeout_s)
    versions = [WorkspaceSpec.from_json(v) for k, v in records.items() if k.startswith(prefix)]
    return sorted(versions, key=lambda spec: spec.version)


def read_version(bootstrap: str, workspace: str, version: int) -> WorkspaceSpec:
    history = read_history(bootstrap, workspace)
    for spec in history:
        if spec.version == version:
            return spec
    known = ", ".join(f"v{s.version}" for s in history) or "none"
    raise NotFoundError(f"workspace {workspace!r} has no version {version} (applied versions: {known})")


def registry_topics() -> list[TopicConfig]:
    return [TopicConfig(REGISTRY_TOPIC, 1, compacted=True), TopicConfig(REGISTRY_HISTORY_TOPIC, 1, compacted=True)]


def history_key(workspace: str, version: int) -> bytes:
    return f"{workspace}@{version:010d}".encode()


def publish_records(bootstrap: str, workspace: str, records: list[tuple[str, bytes, bytes | None]], action: str) -> None:
    """Write ``(topic, key, value or None for a tombstone)`` records in one Kafka transaction."""
    # One transactional id per workspace: a second apply racing this one fences it off instead
    # of interleaving with it.
    producer = Producer(producer_config(bootstrap, **{"transactional.id": f"featurebus.registry.{workspace}"}))
    try:
        producer.init_transactions(_TRANSACTION_TIMEOUT_S)
        producer.begin_transaction()
        for topic, key, value in records:
            producer.produce(topic, key=key, value=value)
        producer.commit_transaction(_TRANSACTION_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"{action} workspace {workspace!r} failed: {exc}. {unreachable_hint(bootstrap)}") from exc


def apply_workspace(bootstrap: str, spec: WorkspaceSpec, *, create_live: bool = True) -> WorkspaceSpec:
    """Publish ``spec`` as the workspace's next version, atomically with its history record.

    The workspace keeps the ``live`` flag it was created with. Applying to a workspace that does
    not exist creates it live (this library call backs ``featurebus up``, the demo and tests),
    unless ``create_live=False``: then it fails as ``featurebus apply`` does, naming the command
    that creates it.
    """
    # Push topics exist from the moment a push source is applied, so ingestion can write at once.
    push_topics = [TopicConfig(t, PUSH_TOPIC_PARTITIONS) for s in spec.stream_sources if s.push for t in s.kafka.topics]
    ensure_topics(bootstrap, [*registry_topics(), *push_topics])
    current = read_registry(bootstrap).get(spec.name)
    if current is None and not create_live:
        raise NotFoundError(
            f"workspace {spec.name!r} does not exist; create it first with `featurebus workspace create {spec.name}` "
            f"(development: definitions only) or `featurebus workspace create {spec.name} --live` (materialized and served)"
        )
    versioned = dataclasses.replace(
        spec,
        version=(current.version if current else 0) + 1,
        applied_at_ms=now_ms(),
        live=current.live if current else True,
    )
    payload = versioned.to_json()
    publish_records(bootstrap, spec.name, [(REGISTRY_HISTORY_TOPIC, history_key(spec.name, versioned.version), payload),
                                           (REGISTRY_TOPIC, spec.name.encode("utf-8"), payload)], "applying")
    return versioned


def wait_for_workspace(bootstrap: str, workspace: str, poll_s: float = 1.0) -> WorkspaceSpec:
    """Block until the workspace has been applied: processes may start before ``apply``.

    A development workspace is returned as soon as it exists (callers refuse to materialize
    it); a live one once its first version is applied (version 0 is the empty created record).
    """
    announced = False
    while True:
        spec = read_registry(bootstrap).get(workspace)
        if spec is not None and (spec.version > 0 or not spec.live):
            return spec
        if not announced:
            log.warning("waiting for workspace %r to be applied (`featurebus apply`)", workspace)
            announced = True
        time.sleep(poll_s)
