"""Feature logging, drift and live parity on the fraud example, end to end on a real broker.

``LocalPlatform`` runs the worker, serving (which logs every request of ``fraud_detection``,
sample rate 1.0) and the offline process (which writes the logging topic and the source topic to
the offline store). Three populations of fresh users get the same number of events each: the
first is served and its training set saved as the reference dataset, the second comes from the
same distribution (no drift), the third has its amounts scaled by 3 (drift on the amount
features). Each population is served within its own 10-second bucket, from several threads at
once. Populations share no user or merchant: a later population's events have event times before
an earlier population's requests, so they would count offline at those request times but could
not have been served then (parity holds for what had arrived). Every logged vector is recomputed through the training-set path (0 mismatches); then one
online tile is overwritten with another user's tile on the feature topic, and parity finds it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from glob import glob as globbed
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client import REGISTRY, generate_latest

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import consumer as kafka_consumer
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.datasets import save_dataset
from featurebus.platform.offline.logged_features import TIMESTAMP, read_logged_features
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.served.drift_monitor import DriftReference, view_drift
from featurebus.platform.served.feature_monitor import FeatureMonitor
from featurebus.platform.served.parity import parity_report
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.repo import load_repo
from featurebus.schemas.encoding import decode_entity_key, split_tile_key
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import LoggingSpec, WorkspaceSpec
from featurebus.schemas.time import format_iso_ms

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud"
SERVICE = "fraud_detection"
VIEW = "user_transaction_stats"
USERS = 150
EVENTS_PER_USER = 5
BUCKET_MS = 10_000


def _spec(workspace: str, topic: str) -> WorkspaceSpec:
    spec = load_repo(EXAMPLE, workspace)
    sources = tuple(
        dataclasses.replace(s, kafka=dataclasses.replace(s.kafka, topics=(topic,))) for s in spec.stream_sources
    )
    services = tuple(
        dataclasses.replace(s, logging=LoggingSpec(1.0)) if s.name == SERVICE else s for s in spec.feature_services
    )
    return dataclasses.replace(spec, stream_sources=sources, feature_services=services)


def _population(prefix: str, scale: float, seed: int) -> list[dict[str, object]]:
    """Five events per user within the last 8 minutes (inside the source's 10-minute watermark
    delay, so later populations are never late), amounts log-normal times ``scale``."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    events = [
        {
            "transaction_id": f"{prefix}-{u}-{k}",
            "user_id": f"{prefix}_{u}",
            "merchant_id": f"{prefix}_m{rng.randrange(20)}",
            "amount": round(math.exp(rng.gauss(3.0, 1.0)) * scale, 2),
            "is_online": rng.random() < 0.35,
            "timestamp": format_iso_ms(now - rng.randrange(5_000, 8 * 60_000)),
        }
        for u in range(USERS)
        for k in range(EVENTS_PER_USER)
    ]
    return sorted(events, key=lambda e: str(e["timestamp"]))


class Running:
    def __init__(self, platform: LocalPlatform, spec: WorkspaceSpec, topic: str, key: str, bootstrap: str) -> None:
        self.platform, self.spec, self.topic, self.bootstrap = platform, spec, topic, bootstrap
        self.headers = {"Authorization": f"Bearer {key}"}
        self.client = httpx.Client(base_url=platform.serving_url, timeout=10.0, headers=self.headers)
        self.produced = 0
        self.served = 0

    def get(self, params: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
        response = (client or self.client).post(
            "/api/v1/feature-service/get-features", json={"params": {"workspaceName": self.spec.name, **params}}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def view_count(self, user: str) -> int:
        """The user's 1 h count through the view alone (not logged: only services log)."""
        body = self.get(
            {"featureViewName": VIEW, "joinKeyMap": {"user_id": user}, "metadataOptions": {"includeNames": True}}
        )
        names = [f["name"] for f in body["metadata"]["features"]]
        return int(body["result"]["features"][names.index(f"{VIEW}.amount_count_1h_continuous")])

    def produce_and_wait(self, events: list[dict[str, object]]) -> None:
        self.produced += produce_events(self.bootstrap, self.topic, events)
        users = sorted({str(e["user_id"]) for e in events})
        deadline = time.monotonic() + 120
        for user in users[:: max(1, len(users) // 10)] + users[-1:]:
            while self.view_count(user) != EVENTS_PER_USER:
                self.platform.check()
                assert time.monotonic() < deadline, self.platform.log_tail("worker")
                time.sleep(0.3)

    def serve_in_one_bucket(self, users: list[str], merchant: str, threads: int = 4) -> int:
        """Serve each user once through the logged service, all within one 10 s bucket; returns
        the bucket's start (ms)."""
        now = time.time() * 1000
        start = (int(now) // BUCKET_MS + 1) * BUCKET_MS
        time.sleep((start - now) / 1000 + 0.05)
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
        assert time.time() * 1000 < start + BUCKET_MS, "serving one population took longer than a bucket"
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


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"logging_{suffix}", f"logging_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), _spec(workspace, topic))
    _, key = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
    with LocalPlatform(tmp_path_factory.mktemp("logging"), workspace, bootstrap=kafka_bootstrap) as platform:
        state = Running(platform, spec, topic, key, kafka_bootstrap)
        deadline = time.monotonic() + 60
        while state.client.post(
            "/api/v1/feature-service/get-features",
            json={"params": {"workspaceName": workspace, "featureViewName": VIEW, "joinKeyMap": {"user_id": "x"}}},
        ).status_code in (401, 404):  # the replica learns of the key and workspace from the bus
            platform.check()
            assert time.monotonic() < deadline, platform.log_tail("serving")
            time.sleep(0.2)
        try:
            yield state
        finally:
            state.client.close()


def _in_bucket(logged: pd.DataFrame, start_ms: int) -> pd.DataFrame:
    times = logged[TIMESTAMP].array.as_unit("ms").asi8
    return logged[(times >= start_ms) & (times < start_ms + BUCKET_MS)]


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f["feature"]: f["latest"]["status"] for f in report["features"] if f["comparable"]}


def test_logging_drift_and_parity(running: Running) -> None:
    spec, root = running.spec, running.platform.offline_dir
    populations = {"a": 1.0, "b": 1.0, "c": 3.0}  # c: the shifted population
    buckets = {}
    for seed, (prefix, scale) in enumerate(populations.items()):
        running.produce_and_wait(_population(prefix, scale, seed))
        buckets[prefix] = running.serve_in_one_bucket([f"{prefix}_{u}" for u in range(USERS)], f"{prefix}_m1")
    # get-features-batch logs each row as its own request.
    response = running.client.post(
        "/api/v1/feature-service/get-features-batch",
        json={
            "params": {
                "workspaceName": spec.name,
                "featureServiceName": SERVICE,
                "requestData": [{"joinKeyMap": {"user_id": f"a_{u}", "merchant_id": "a_m2"}} for u in (3, 4)],
            }
        },
    )
    assert response.status_code == 200, response.text
    running.served += 2
    logged = running.logged()
    assert len(logged[logged["merchant_id"] == "a_m2"]) == 2

    # Logged features are training-set shaped: keys, the request time and one column per feature.
    first = _in_bucket(logged, buckets["a"])
    assert len(first) == USERS
    assert {"user_id", "merchant_id", TIMESTAMP, "request_id", f"{VIEW}__amount_sum_1h_continuous"} <= set(
        logged.columns
    )
    assert (first[f"{VIEW}__amount_count_1h_continuous"] == EVENTS_PER_USER).all()

    # Live parity: every logged vector equals its training-set recomputation at the request time.
    report = parity_report(spec, SERVICE, logged, root)
    assert report["checkedRequests"] == len(logged) == 3 * USERS + 2
    bad = [(f["feature"], f["examples"][:1]) for f in report["features"] if f["mismatches"]]
    assert not bad, bad
    assert all(v["mismatchRatio"] == 0 for v in report["views"].values())

    # The reference: population a's training set, saved as a dataset.
    spine = first[["user_id", "merchant_id", TIMESTAMP]].reset_index(drop=True)
    training = get_features_for_events(spec, SERVICE, spine, root, timestamp_key=TIMESTAMP)
    save_dataset(root, spec.name, "reference", training)
    reference = DriftReference(dataset="reference")

    def drift(prefix: str) -> dict[str, str]:
        start = buckets[prefix]
        return _statuses(
            view_drift(
                root, spec, VIEW, reference=reference, start_ms=start, end_ms=start + BUCKET_MS, bucket_ms=BUCKET_MS
            )
        )

    unshifted, shifted = drift("b"), drift("c")
    assert set(unshifted.values()) == {"ok"}, unshifted
    for feature in ("amount_sum_1h_continuous", "amount_mean_1h_continuous", "amount_sum_1d_continuous"):
        assert shifted[feature] == "drifted", shifted
    assert shifted["amount_count_1h_continuous"] == "ok", shifted  # counts are not scaled

    # The monitor exports both on the Prometheus registry.
    monitor = FeatureMonitor(running.bootstrap, root, spec, settle_s=0)
    monitor.drift(VIEW)
    monitor.parity(SERVICE)
    metrics = generate_latest(REGISTRY).decode()
    assert (
        f'featurebus_feature_drift{{feature="amount_sum_1h_continuous",feature_view="{VIEW}",workspace="{spec.name}"}}'
        in metrics
    )
    assert f'featurebus_parity_mismatch_ratio{{feature_view="{VIEW}",workspace="{spec.name}"}} 0.0' in metrics

    # Corrupt one online tile: user a_0's newest tile gets another user's partials.
    _corrupt_tile(running, "a_0")
    corrupted_at = pd.Timestamp.now(tz="UTC")
    deadline = time.monotonic() + 60
    before = first[first["user_id"] == "a_0"][f"{VIEW}__amount_sum_1h_continuous"].iloc[0]
    while True:
        body = running.get(
            {"featureViewName": VIEW, "joinKeyMap": {"user_id": "a_0"}, "metadataOptions": {"includeNames": True}}
        )
        names = [f["name"] for f in body["metadata"]["features"]]
        if body["result"]["features"][names.index(f"{VIEW}.amount_sum_1h_continuous")] != before:
            break
        assert time.monotonic() < deadline, "the corrupted tile never reached serving"
        time.sleep(0.3)
    running.serve_in_one_bucket(["a_0", "a_1", "a_2"], "a_m1", threads=1)
    after = running.logged()
    after = after[after[TIMESTAMP] >= corrupted_at].reset_index(drop=True)
    report = parity_report(spec, SERVICE, after, root)
    by_feature = {f["feature"]: f for f in report["features"] if f["featureView"] == VIEW}
    sums = by_feature["amount_sum_1h_continuous"]
    assert sums["mismatches"] == 1 and sums["checked"] == 3
    assert sums["examples"][0]["keys"]["user_id"] == "a_0"
    assert by_feature["amount_count_1h_continuous"]["mismatches"] == 0  # one event per tile either way
    assert report["views"][VIEW]["mismatchRatio"] > 0


def _corrupt_tile(running: Running, user: str) -> None:
    """Overwrite ``user``'s newest tile on the view's feature topic with another user's tile."""
    topic = feature_topic(running.spec.name, VIEW)
    reader = kafka_consumer(running.bootstrap, None, **{"auto.offset.reset": "earliest", "enable.partition.eof": True})
    records: dict[bytes, bytes] = {}
    try:
        reader.subscribe([topic])
        idle = 0
        while idle < 10:
            messages = reader.consume(num_messages=10_000, timeout=0.5)
            idle = idle + 1 if not messages else 0
            for message in messages:
                if message.error() is None and message.key() and message.value():
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
