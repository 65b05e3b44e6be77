"""Key remapping and secondary keys end to end (real broker, ``LocalPlatform``): one view joined
twice (sender / recipient) and a view aggregated per category, computed by the stream worker,
served over HTTP under the mapped join keys, and equal to the training set built from what the
offline materializer wrote, for spine rows at the moments serving was asked."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from glob import glob as globbed
from typing import Any

import httpx
import pandas as pd
import pytest

from featurebus import Aggregate, Entity, FeatureService, Field, KafkaConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import format_iso_ms
from featurebus.streams.records import parse_timestamp_ms
from featurebus.types import Float64, String, Timestamp
from tests.support.oracle import close

pytestmark = pytest.mark.kafka

MINUTE = 60_000
SERVICE = "transfers"


def _spec(workspace: str, topic: str) -> WorkspaceSpec:
    user = Entity(name="user", join_keys=[Field("user_id", String)])
    payments = StreamSource(
        name="payments",
        schema=[Field("user_id", String), Field("category", String), Field("amount", Float64), Field("ts", Timestamp)],
        stream_config=KafkaConfig(topics=topic, timestamp_field="ts", watermark_delay_threshold=timedelta(hours=2)),
    )

    @stream_feature_view(
        source=payments,
        entities=[user],
        mode="pandas",
        online=True,
        offline=True,
        features=[
            Aggregate(function=fn, time_window=timedelta(hours=1), input_column=Field("amount", Float64))
            for fn in ("count", "sum")
        ],
    )
    def spend(payments: Any) -> Any:
        return payments[["user_id", "amount", "ts"]]

    @stream_feature_view(
        source=payments,
        entities=[user],
        mode="pandas",
        online=True,
        offline=True,
        aggregation_secondary_key="category",
        features=[
            Aggregate(function=fn, time_window=timedelta(hours=1), input_column=Field("amount", Float64))
            for fn in ("count", "sum", "max")
        ],
    )
    def spend_by_category(payments: Any) -> Any:
        return payments

    transfers = FeatureService(
        name=SERVICE,
        features=[
            spend.with_name("sender").with_join_key_map({"user_id": "sender_id"}),
            spend.with_name("recipient").with_join_key_map({"user_id": "recipient_id"}),
            spend_by_category.with_join_key_map({"user_id": "sender_id"}),
        ],
    )
    return compile_workspace(workspace, [user, payments, spend, spend_by_category, transfers])


class Running:
    def __init__(self, platform: LocalPlatform, spec: WorkspaceSpec, topic: str, key: str) -> None:
        self.platform, self.spec, self.topic = platform, spec, topic
        self.client = httpx.Client(
            base_url=platform.serving_url, timeout=10.0, headers={"Authorization": f"Bearer {key}"}
        )

    def post(self, route: str, params: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            f"/api/v1/feature-service/{route}",
            json={"params": {"workspaceName": self.spec.name, "featureServiceName": SERVICE, **params}},
        )

    def served(self, sender: str, recipient: str) -> dict[str, Any]:
        response = self.post(
            "get-features",
            {
                "joinKeyMap": {"sender_id": sender, "recipient_id": recipient},
                "metadataOptions": {"includeEffectiveTimes": True, "includeNames": True},
            },
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"remap_{suffix}", f"remap_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), _spec(workspace, topic))
    _, key = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
    with LocalPlatform(tmp_path_factory.mktemp("remap"), workspace, bootstrap=kafka_bootstrap) as platform:
        state = Running(platform, spec, topic, key)
        deadline = time.monotonic() + 60
        # The replica learns of the key and workspace from the bus, and catches up first.
        while state.post("get-features", {"joinKeyMap": {"sender_id": "x", "recipient_id": "y"}}).status_code != 200:
            platform.check()
            assert time.monotonic() < deadline, platform.log_tail("serving")
            time.sleep(0.2)
        try:
            yield state
        finally:
            state.client.close()


def _number(value: Any) -> Any:
    """int64 (and int64 array elements) travel as strings; keys stay strings."""
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def _values(body: dict[str, Any]) -> dict[str, Any]:
    names = [f["name"] for f in body["metadata"]["features"]]
    return dict(zip(names, body["result"]["features"], strict=True))


def test_metadata_lists_the_mapped_join_keys(running: Running) -> None:
    response = running.post("metadata", {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [k["name"] for k in body["inputJoinKeys"]] == ["sender_id", "recipient_id"]
    names = [f["name"] for f in body["featureValues"]]
    assert names[:4] == [
        "sender.amount_count_1h_continuous",
        "sender.amount_sum_1h_continuous",
        "recipient.amount_count_1h_continuous",
        "recipient.amount_sum_1h_continuous",
    ]
    assert "spend_by_category.category_keys_1h" in names


def test_served_values_equal_the_training_set(running: Running) -> None:
    now_ms = int(time.time() * 1000)
    alice, bob = f"alice_{running.spec.name}", f"bob_{running.spec.name}"
    events = [
        (alice, "books", 10.0, 40),
        (alice, "toys", 5.0, 30),
        (alice, "books", 2.5, 20),
        (alice, None, 7.0, 15),  # no category: counted by spend, in no per-category array
        (bob, "games", 1.0, 10),
    ]
    records = [
        {"user_id": u, "category": c, "amount": a, "ts": format_iso_ms(now_ms - m * MINUTE)} for u, c, a, m in events
    ]
    assert produce_events(running.platform.bootstrap, running.topic, records) == len(records)
    deadline = time.monotonic() + 90
    while True:
        running.platform.check()
        values = _values(running.served(alice, bob))
        if values["sender.amount_count_1h_continuous"] == "4" and values["recipient.amount_count_1h_continuous"] == "1":
            break
        assert time.monotonic() < deadline, running.platform.log_tail("worker")
        time.sleep(0.3)
    assert values["spend_by_category.category_keys_1h"] == ["books", "toys"]
    assert values["spend_by_category.amount_count_1h_continuous"] == ["2", "1"]
    assert values["spend_by_category.amount_sum_1h_continuous"] == [12.5, 5.0]

    asked = [(alice, bob), (bob, alice), (f"nobody_{running.spec.name}", alice)]
    served = []
    for sender, recipient in asked:
        body = running.served(sender, recipient)
        effective = parse_timestamp_ms(body["metadata"]["features"][0]["effectiveTime"])
        served.append((sender, recipient, effective, _values(body)))
    spine = pd.DataFrame(
        {
            "sender_id": [s for s, _, _, _ in served],
            "recipient_id": [r for _, r, _, _ in served],
            "ts": pd.to_datetime([t for _, _, t, _ in served], unit="ms", utc=True),
        }
    )
    glob = source_glob(running.platform.offline_dir, running.spec.name, "payments")
    deadline = time.monotonic() + 90
    while not globbed(glob) or sum(len(pd.read_parquet(p, columns=["_offset"])) for p in globbed(glob)) < len(records):
        running.platform.check()
        assert time.monotonic() < deadline, running.platform.log_tail("offline")
        time.sleep(0.3)
    result = get_features_for_events(running.spec, SERVICE, spine, running.platform.offline_dir)
    for position, (_, _, _, values) in enumerate(served):
        for name, online in values.items():
            offline = result[name.replace(".", "__")].iloc[position]
            if isinstance(online, list):
                got, want = [_number(v) for v in online], [_number(v) for v in list(offline)]
                assert len(got) == len(want), (position, name, online, offline)
                for a, b in zip(got, want, strict=True):
                    assert close(a, b) if isinstance(a, float) else a == b, (position, name, online, offline)
                continue
            offline = None if offline is None or pd.isna(offline) else offline
            online = int(online) if isinstance(online, str) else online
            assert close(online, offline), (position, name, online, offline)
