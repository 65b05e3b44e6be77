"""The registry on the bus: ``KafkaRegistry``.

``featurebus.registry`` (compacted, key = workspace) holds the current version, which workers and
serving replicas follow; ``featurebus.registry-history`` (compacted, key = "<workspace>@<version>",
so nothing is ever compacted away) keeps every version. Spec records are written in one Kafka
transaction: readers (read_committed) see a new version everywhere or nowhere. API keys live on
``featurebus.api-keys`` and jobs on each workspace's jobs topic (``KafkaJobStore``).

Constructing one opens no connection: each call opens (and closes) what it needs, so a process
may hold one for its whole life and pass it around.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from featurebus.platform.kafka.admin import TopicConfig, ensure_topic, ensure_topics, read_compacted, unreachable_hint
from featurebus.platform.kafka.clients import consumer, producer, reliable_producer
from featurebus.platform.kafka.health import BrokerHealth
from featurebus.platform.kafka.security import access_denied, is_access_denied
from featurebus.platform.kafka.topics import API_KEYS_TOPIC, REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.platform.registry.base import SpecRecord
from featurebus.platform.registry.jobs import KafkaJobStore
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["KafkaRegistry", "KafkaSpecFollower", "registry_topics"]

log = logging.getLogger(__name__)

_TRANSACTION_TIMEOUT_S = 30.0


def registry_topics() -> list[TopicConfig]:
    return [TopicConfig(REGISTRY_TOPIC, 1, compacted=True), TopicConfig(REGISTRY_HISTORY_TOPIC, 1, compacted=True)]


class KafkaRegistry:
    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"KafkaRegistry({self.bootstrap!r})"

    def list(self) -> dict[str, WorkspaceSpec]:
        latest = read_compacted(self.bootstrap, REGISTRY_TOPIC, self.timeout_s)
        return {key.decode("utf-8"): WorkspaceSpec.from_json(value) for key, value in latest.items()}

    def get(self, workspace: str) -> WorkspaceSpec | None:
        return self.list().get(workspace)

    def history(self, workspace: str) -> builtins.list[WorkspaceSpec]:
        prefix = f"{workspace}@".encode()
        records = read_compacted(self.bootstrap, REGISTRY_HISTORY_TOPIC, self.timeout_s)
        versions = [WorkspaceSpec.from_json(v) for k, v in records.items() if k.startswith(prefix)]
        return sorted(versions, key=lambda spec: spec.version)

    def apply(
        self, workspace: str, records: Sequence[SpecRecord], action: str, topics: Sequence[TopicConfig] = ()
    ) -> None:
        ensure_topics(self.bootstrap, [*registry_topics(), *topics])
        # One transactional id per workspace: a second apply racing this one fences it off instead
        # of interleaving with it.
        transactional_id = f"featurebus.registry.{workspace}"
        writer = producer(self.bootstrap, **{"transactional.id": transactional_id})
        try:
            writer.init_transactions(_TRANSACTION_TIMEOUT_S)
            writer.begin_transaction()
            for topic, key, value in records:
                writer.produce(topic, key=key, value=value)
            writer.commit_transaction(_TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            if is_access_denied(exc):  # only the control plane's principal may write the registry
                raise access_denied(
                    self.bootstrap, exc, "write", REGISTRY_TOPIC, transactional_id=transactional_id
                ) from exc
            raise KafkaUnavailableError(
                f"{action} workspace {workspace!r} failed: {exc}. {unreachable_hint(self.bootstrap)}"
            ) from exc

    def follow(self) -> KafkaSpecFollower:
        return KafkaSpecFollower(self.bootstrap, self.timeout_s)

    def api_keys(self) -> dict[bytes, bytes]:
        return read_compacted(self.bootstrap, API_KEYS_TOPIC, self.timeout_s)

    def put_api_key(self, key_hash: bytes, record: bytes | None) -> None:
        ensure_topic(self.bootstrap, API_KEYS_TOPIC, partitions=1, compacted=True)
        # Flushed and checked on exit: a failed delivery raises KafkaUnavailableError.
        with reliable_producer(self.bootstrap) as writer:
            writer.produce(API_KEYS_TOPIC, key=key_hash, value=record)

    def jobs(self, workspace: str, *, runner: bool = False) -> KafkaJobStore:
        return KafkaJobStore(self.bootstrap, workspace, runner=runner, timeout_s=self.timeout_s)


class KafkaSpecFollower:
    """The registry followed by one long-lived consumer: each ``poll`` applies what was committed
    since the last.

    For processes that watch for new versions all the time (the stream worker): a fresh
    ``KafkaRegistry.list`` pays a consumer's start-up (connection, metadata, offsets) on every
    call, which at one call every 2 s cost a worker about 5% of its CPU and the broker a stream of
    short-lived clients, competing with the events being processed. Not thread-safe: one thread
    polls it.
    """

    def __init__(self, bootstrap: str, unavailable_timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._unavailable_timeout_s = unavailable_timeout_s
        self._health = BrokerHealth(bootstrap)
        self.specs: dict[str, WorkspaceSpec] = {}
        self._consumer = consumer(
            bootstrap,
            **{
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",  # versions are written in transactions
                "socket.connection.setup.timeout.ms": 5000,
                "error_cb": self._health.on_error,
            },
        )
        # One partition (``registry_topics``), read from its beginning: compaction keeps the
        # latest version of every workspace there.
        self._partition = TopicPartition(REGISTRY_TOPIC, 0, OFFSET_BEGINNING)
        self._consumer.assign([self._partition])

    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        """Wait up to ``timeout_s`` for new registry records; return every workspace's latest spec.

        Raises ``KafkaUnavailableError`` once no broker has answered for ``unavailable_timeout_s``
        (as a ``KafkaRegistry.list`` would have failed), or on a fatal client error."""
        for message in self._consumer.consume(num_messages=500, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaUnavailableError(f"following the registry on {self._bootstrap} failed: {error.str()}")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("registry follower: %s", error.str())
                continue
            key, value = message.key(), message.value()
            if key is None:
                continue
            if value is None:  # a deleted workspace
                self.specs.pop(key.decode("utf-8"), None)
            else:
                self.specs[key.decode("utf-8")] = WorkspaceSpec.from_json(value)
        if self._health.fatal is not None:
            raise KafkaUnavailableError(f"following the registry on {self._bootstrap} failed: {self._health.fatal}")
        if self._health.down_since is not None:
            self._check_reachable()
        return self.specs

    def _check_reachable(self) -> None:
        """After a connection error: clear it if the broker answers again, else fail in time."""
        try:
            self._consumer.get_watermark_offsets(self._partition, timeout=1.0)
            self._health.reachable()
        except KafkaException as exc:
            down_for = self._health.down_for() or 0.0
            if down_for > self._unavailable_timeout_s:
                raise KafkaUnavailableError(
                    f"following the registry failed: no broker answered for {self._unavailable_timeout_s:g} s "
                    f"({exc}). {unreachable_hint(self._bootstrap)}"
                ) from exc

    def close(self) -> None:
        self._consumer.close()
