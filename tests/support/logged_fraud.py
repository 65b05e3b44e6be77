"""The fraud example run by ``LocalPlatform`` with feature logging on, for the drift, parity and
alert tests: populations of fresh users, serving a population within one drift bucket, reading
back what was logged, and corrupting an online tile behind the platform's back.

Populations share no user or merchant: a later population's events have event times before an
earlier population's requests, so they would count offline at those request times but could not
have been served then (parity holds for what had arrived).
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from glob import glob as globbed
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from confluent_kafka import KafkaError

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.logged_features import read_logged_features
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.repo import load_repo
from featurebus.schemas.encoding import decode_entity_key, split_tile_key
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import LoggingSpec, WorkspaceSpec
from featurebus.schemas.time import format_iso_ms
from tests.support.replica import wait_until_served

__all__ = [
    "EVENTS_PER_USER",
    "SERVICE",
    "USERS",
    "VIEW",
    "Running",
    "corrupt_tile",
    "logged_fraud_spec",
    "population",
    "running_fraud_platform",
]

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud"
SERVICE = "fraud_detection"
VIEW = "user_transaction_stats"
USERS = 150
EVENTS_PER_USER = 5


def logged_fraud_spec(workspace: str, topic: str) -> WorkspaceSpec:
    """The fraud example reading ``topic``, its ``fraud_detection`` service logging every request."""
    spec = load_repo(EXAMPLE, workspace)
    sources = tuple(
        dataclasses.replace(s, kafka=dataclasses.replace(s.kafka, topics=(topic,))) for s in spec.stream_sources
    )
    services = tuple(
        dataclasses.replace(s, logging=LoggingSpec(1.0)) if s.name == SERVICE else s for s in spec.feature_services
    )
    return dataclasses.replace(spec, stream_sources=sources, feature_services=services)


def population(
    prefix: str, scale: float, seed: int, *, null_amounts: bool = False, within_ms: int = 8 * 60_000
) -> list[dict[str, object]]:
    """Five events per user within the last ``within_ms`` (by default 8 minutes: inside the
    source's 10-minute watermark delay, so later populations are never late), amounts log-normal
    times ``scale`` (or null: ``null_amounts``)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    events = [
        {
            "transaction_id": f"{prefix}-{u}-{k}",
            "user_id": f"{prefix}_{u}",
            "merchant_id": f"{prefix}_m{rng.randrange(20)}",
            "amount": None if null_amounts else round(math.exp(rng.gauss(3.0, 1.0)) * scale, 2),
            "is_online": rng.random() < 0.35,
            "timestamp": format_iso_ms(now - rng.randrange(min(5_000, within_ms // 2), within_ms)),
        }
        for u in range(USERS)
        for k in range(EVENTS_PER_USER)
    ]
    return sorted(events, key=lambda e: str(e["timestamp"]))


class Running:
    def __init__(
        self, platform: LocalPlatform, spec: WorkspaceSpec, topic: str, key: str, bootstrap: str, bucket_ms: int
    ) -> None:
        self.platform, self.spec, self.topic, self.bootstrap = platform, spec, topic, bootstrap
        self.bucket_ms = bucket_ms
        self.headers = {"Authorization": f"Bearer {key}"}
        self.client = httpx.Client(base_url=platform.serving_url, timeout=10.0, headers=self.headers)
        self.produced = 0
        self.served = 0
        self._last_bucket = -1

    def get(self, params: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
        response = (client or self.client).post(
            "/api/v1/feature-service/get-features", json={"params": {"workspaceName": self.spec.name, **params}}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def view_feature(self, user: str, feature: str) -> Any:
        """One feature of the user through the view alone (not logged: only services log)."""
        body = self.get(
            {"featureViewName": VIEW, "joinKeyMap": {"user_id": user}, "metadataOptions": {"includeNames": True}}
        )
        names = [f["name"] for f in body["metadata"]["features"]]
        return body["result"]["features"][names.index(f"{VIEW}.{feature}")]

    def view_count(self, user: str) -> int:
        return int(self.view_feature(user, "amount_count_1h_continuous"))

    def produce(self, events: list[dict[str, object]]) -> None:
        self.produced += produce_events(self.bootstrap, self.topic, events)

    def produce_and_wait(self, events: list[dict[str, object]]) -> None:
        """Produce, then wait until serving counts every event of a sample of the users."""
        self.produce(events)
        users = sorted({str(e["user_id"]) for e in events})
        deadline = time.monotonic() + 120
        for user in users[:: max(1, len(users) // 10)] + users[-1:]:
            while self.view_count(user) != EVENTS_PER_USER:
                self.platform.check()
                assert time.monotonic() < deadline, self.platform.log_tail("worker")
                time.sleep(0.3)

    def serve_in_one_bucket(self, users: list[str], merchant: str, threads: int = 4) -> int:
        """Serve each user once through the logged service, all within one drift bucket (the
        current one when at least half of it is left, else the next); returns its start (ms)."""
        now = time.time() * 1000
        start = int(now) // self.bucket_ms * self.bucket_ms
        if now - start > self.bucket_ms / 2 or start <= self._last_bucket:  # a bucket of its own
            start = max(start + self.bucket_ms, self._last_bucket + self.bucket_ms)
            time.sleep((start - now) / 1000 + 0.05)
        self._last_bucket = start
        chunks = [users[i::threads] for i in range(threads)]

        def serve(chunk: list[str]) -> None:
            with httpx.Client(base_url=self.platform.serving_url, timeout=10.0, headers=self.headers) as client:
                for user in chunk:
                    self.get(
                        {"featureServiceName": SERVICE, "joinKeyMap": {"user_id": user, "merchant_id": merchant}},
                        client,
                    )

        workers = [threading.Thread(target=serve, args=(chunk,)) for chunk in chunks]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert time.time() * 1000 < start + self.bucket_ms, "serving one population took longer than a bucket"
        self.served += len(users)
        return start

    def logged(self) -> pd.DataFrame:
        """Every logged request, once all served ones and all source records are offline."""
        deadline = time.monotonic() + 120
        glob = source_glob(self.platform.offline_dir, self.spec.name, "transactions")
        while True:
            self.platform.check()
            try:
                logged = read_logged_features(self.platform.offline_dir, self.spec.name, SERVICE)
            except InvalidRequestError:
                logged = pd.DataFrame()
            files = globbed(glob)
            stored = sum(len(pd.read_parquet(p, columns=["_offset"])) for p in files)
            if len(logged) >= self.served and stored >= self.produced:
                return logged
            assert time.monotonic() < deadline, (len(logged), self.served, self.platform.log_tail("offline"))
            time.sleep(0.5)


@contextmanager
def running_fraud_platform(
    bootstrap: str,
    home: Path,
    *,
    bucket_ms: int,
    customize: Callable[[WorkspaceSpec], WorkspaceSpec] = lambda spec: spec,
) -> Iterator[Running]:
    """``LocalPlatform`` (every process, the evaluator included, configured by this process's
    environment) over a fresh fraud workspace, once serving answers with a reader key."""
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"logging_{suffix}", f"logging_{suffix}"
    ensure_topics(bootstrap, [TopicConfig(topic, partitions=2)])
    spec = apply_workspace(KafkaRegistry(bootstrap), customize(logged_fraud_spec(workspace, topic)))
    _, key = create_api_key(KafkaRegistry(bootstrap), workspace, "reader")
    with LocalPlatform(home, workspace, bootstrap=bootstrap) as platform:
        state = Running(platform, spec, topic, key, bootstrap, bucket_ms)
        wait_until_served(
            platform,
            state.client,
            {"workspaceName": workspace, "featureViewName": VIEW, "joinKeyMap": {"user_id": "x"}},
        )
        try:
            yield state
        finally:
            state.client.close()


def corrupt_tile(running: Running, user: str) -> None:
    """Overwrite ``user``'s newest tile on the view's feature topic with another user's tile."""
    topic = feature_topic(running.spec.name, VIEW)
    reader = kafka_consumer(running.bootstrap, None, **{"auto.offset.reset": "earliest", "enable.partition.eof": True})
    records: dict[bytes, bytes] = {}
    try:
        partitions = len(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        reader.subscribe([topic])
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < partitions:  # the whole topic as of now: every partition to its end
            assert time.monotonic() < deadline, f"reading {topic} did not reach its end"
            for message in reader.consume(num_messages=10_000, timeout=0.2):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                elif message.key() and message.value():
                    at_end.discard(message.partition())
                    records[message.key()] = message.value()
    finally:
        reader.close()

    def owner(key: bytes) -> str | None:
        try:
            entity, _, _ = split_tile_key(key)
            return str(decode_entity_key(entity)[0][0])
        except Exception:
            return None  # not a tile record (e.g. a watermark)

    own = sorted((k for k in records if owner(k) == user), key=lambda k: split_tile_key(k)[1])
    other = next(v for k, v in records.items() if owner(k) not in (None, user) and v != records[own[-1]])
    with reliable_producer(running.bootstrap) as producer:
        producer.produce(topic, other, key=own[-1])
