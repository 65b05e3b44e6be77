"""The online materializer against a real broker: registry, feature records, tombstones, API keys,
resuming from the offsets kept in the store, and failing loudly when Kafka is not there."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from featurebus.exceptions import AuthenticationError, KafkaUnavailableError
from featurebus.platform.api_keys import ApiKeyStore, create_api_key, list_api_keys, revoke_api_key
from featurebus.platform.kafka import LocalKafka
from featurebus.platform.kafka.admin import ensure_topic
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import REGISTRY_TOPIC, feature_topic
from featurebus.platform.kv import MemoryStore
from featurebus.platform.registry import KafkaRegistry
from featurebus.schemas.encoding import encode_entity_key, encode_partials, store_key, tile_key
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.app import create_app
from featurebus.serving.online_materializer import OFFSETS_PREFIX, OnlineMaterializer, online_view_name
from featurebus.serving.service import FeatureServer
from tests.support.specs import MINUTE, spending_workspace

VIEW = "user_spending"
T0 = 1_700_000_000_000 - (1_700_000_000_000 % MINUTE)
PARTIALS = [1, 5.0, [5.0, 1]] * 2  # count, sum, mean for the 1 m and 1 h windows
Start = Callable[[OnlineMaterializer], OnlineMaterializer]


def eventually(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        time.sleep(0.05)


def tile(user: str, start_ms: int) -> bytes:
    return tile_key(encode_entity_key([user]), start_ms)


class Bus:
    """A workspace of our own on the session broker: registry record + its feature topic."""

    def __init__(self, bootstrap: str, topic_factory: Callable[..., str]) -> None:
        self.bootstrap = bootstrap
        self.workspace = f"mat{uuid.uuid4().hex[:10]}"
        self.spec = spending_workspace(name=self.workspace)
        self.topic = topic_factory(partitions=2, compacted=True, name=feature_topic(self.workspace, VIEW))
        ensure_topic(bootstrap, REGISTRY_TOPIC, compacted=True)

    def apply(self, spec: WorkspaceSpec | None = None) -> None:
        spec = spec or self.spec
        with reliable_producer(self.bootstrap) as producer:
            producer.produce(REGISTRY_TOPIC, key=spec.name.encode(), value=spec.to_json())

    def publish(self, records: Sequence[tuple[bytes, bytes | None]], topic: str | None = None) -> None:
        with reliable_producer(self.bootstrap) as producer:
            for i, (key, value) in enumerate(records):
                producer.produce(topic or self.topic, key=key, value=value, partition=i % 2)

    def key(self, user: str, start_ms: int) -> bytes:
        return store_key(online_view_name(self.workspace, VIEW), tile(user, start_ms))


@pytest.fixture
def bus(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> Bus:
    return Bus(kafka_bootstrap, topic_factory)


@pytest.fixture
def started() -> Iterator[Start]:
    running: list[OnlineMaterializer] = []

    def start(materializer: OnlineMaterializer) -> OnlineMaterializer:
        materializer.start()
        running.append(materializer)
        return materializer

    yield start
    for materializer in running:
        materializer.stop()


def test_store_follows_the_feature_topic_and_tombstones_delete(bus: Bus, started: Start) -> None:
    bus.apply()
    records = [(tile(f"u{i}", T0), encode_partials(PARTIALS)) for i in range(20)]
    bus.publish(records)
    store = MemoryStore()
    materializer = started(OnlineMaterializer(bus.bootstrap, store, ApiKeyStore()))
    assert materializer.wait_caught_up(60), materializer.lag()
    assert materializer.caught_up() and materializer.error is None
    assert materializer.specs()[bus.workspace] == bus.spec
    assert all(store.get(bus.key(f"u{i}", T0)) == encode_partials(PARTIALS) for i in range(20))
    assert len(list(store.scan(OFFSETS_PREFIX, OFFSETS_PREFIX + b"\xff"))) >= 2  # one per partition

    # Served straight from what the materializer wrote.
    server = FeatureServer(materializer.specs, store, lambda: T0 + 30_000)
    assert server.get_features(bus.workspace, "spending", {"user_id": "u3"})["result"]["features"][0] == "1"

    bus.publish([(tile("u0", T0), None), (tile("u1", T0), None)])
    eventually(lambda: store.get(bus.key("u0", T0)) is None and store.get(bus.key("u1", T0)) is None, what="tombstones")
    assert store.get(bus.key("u2", T0)) is not None


def test_a_restarted_replica_resumes_from_its_stored_offsets(bus: Bus, started: Start) -> None:
    bus.apply()
    bus.publish([(tile("u0", T0), encode_partials(PARTIALS)), (tile("u1", T0), encode_partials(PARTIALS))])
    store = MemoryStore()
    first = OnlineMaterializer(bus.bootstrap, store, ApiKeyStore())
    first.start()
    try:
        assert first.wait_caught_up(60)
    finally:
        first.stop()
    # Were the topic replayed, this marker would be overwritten by the record at offset 0.
    store.write([(bus.key("u0", T0), b"kept")])
    bus.publish([(tile("u2", T0), encode_partials(PARTIALS))])
    second = started(OnlineMaterializer(bus.bootstrap, store, ApiKeyStore()))
    assert second.wait_caught_up(60)
    eventually(lambda: store.get(bus.key("u2", T0)) is not None, what="new record after restart")
    assert store.get(bus.key("u0", T0)) == b"kept"


def test_new_views_are_picked_up_from_registry_changes(
    bus: Bus, topic_factory: Callable[..., str], started: Start
) -> None:
    store = MemoryStore()
    materializer = started(OnlineMaterializer(bus.bootstrap, store, ApiKeyStore()))
    assert materializer.wait_caught_up(60)
    generation = materializer.generation
    bus.publish([(tile("late", T0), encode_partials(PARTIALS))])  # before the view is applied
    bus.apply()
    eventually(lambda: materializer.generation > generation, what="registry change seen")
    began = time.monotonic()
    eventually(lambda: store.get(bus.key("late", T0)) is not None, timeout_s=10, what="new view's topic consumed")
    assert time.monotonic() - began < 3  # subscribed on the registry change, not on a slow poll

    # Deleting the workspace (registry tombstone) forgets its specs.
    with reliable_producer(bus.bootstrap) as producer:
        producer.produce(REGISTRY_TOPIC, key=bus.workspace.encode(), value=None)
    eventually(lambda: bus.workspace not in materializer.specs(), what="workspace removed")
    # Offline views are not materialized.
    base = spending_workspace(name=f"off{uuid.uuid4().hex[:8]}")
    views = tuple(dataclasses.replace(v, online=False) for v in base.stream_feature_views)
    offline_ws = dataclasses.replace(base, stream_feature_views=views)
    topic = topic_factory(partitions=1, compacted=True, name=feature_topic(offline_ws.name, VIEW))
    bus.apply(offline_ws)
    bus.publish([(tile("x", T0), encode_partials(PARTIALS))], topic=topic)
    eventually(lambda: offline_ws.name in materializer.specs(), what="offline workspace seen")
    eventually(materializer.caught_up, what="caught up")
    assert store.get(store_key(online_view_name(offline_ws.name, VIEW), tile("x", T0))) is None


def test_api_key_records_authorize(bus: Bus, started: Start) -> None:
    keys = ApiKeyStore()
    key_id, secret = create_api_key(KafkaRegistry(bus.bootstrap), bus.workspace, role="writer", description="ci")
    materializer = started(OnlineMaterializer(bus.bootstrap, MemoryStore(), keys))
    assert materializer.wait_caught_up(60)
    header = f"Tecton-key {secret}"
    assert keys.authorize(header, bus.workspace, "writer").key_id == key_id
    listed = {k["key_id"]: k for k in list_api_keys(KafkaRegistry(bus.bootstrap))}
    assert listed[key_id]["workspace"] == bus.workspace and listed[key_id]["role"] == "writer"
    assert secret not in repr(listed)
    revoke_api_key(KafkaRegistry(bus.bootstrap), key_id)
    assert key_id not in {k["key_id"] for k in list_api_keys(KafkaRegistry(bus.bootstrap))}

    def revoked() -> bool:
        try:
            keys.authenticate(header)
        except AuthenticationError:
            return True
        return False

    eventually(revoked, what="revocation applied")


def test_kafka_unavailable_fails_loudly_instead_of_hanging(started: Start) -> None:
    materializer = started(OnlineMaterializer("127.0.0.1:1", MemoryStore(), ApiKeyStore(), unavailable_timeout_s=1.0))
    began = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match=r"127\.0\.0\.1:1"):
        materializer.wait_caught_up(30)
    assert time.monotonic() - began < 15
    assert materializer.error is not None and not materializer.caught_up()


def test_a_broker_that_disappears_turns_ready_into_503(tmp_path: Path, started: Start) -> None:
    broker = LocalKafka(tmp_path / "kafka")  # our own: the session broker must stay up
    try:
        broker.start(timeout_s=120)
        keys = ApiKeyStore()
        materializer = started(OnlineMaterializer(broker.bootstrap, MemoryStore(), keys, unavailable_timeout_s=2.0))
        server = FeatureServer(materializer.specs, MemoryStore(), lambda: T0)
        client = TestClient(create_app(server, keys, materializer))
        assert materializer.wait_caught_up(60)
        assert client.get("/ready").status_code == 200
        broker.stop()
        eventually(lambda: materializer.error is not None, timeout_s=30, what="error reported")
        response = client.get("/ready")
        assert response.status_code == 503
        assert "no Kafka broker reachable" in response.json()["message"]
    finally:
        broker.stop()
