"""The whole path against the real broker: define features, apply them with the CLI, stream
events, read them over HTTP, and build a training set, both checked against the oracle.

Events: several users and merchants, a continuous view and a 5-minute-interval view, events
exactly on tile boundaries, and events arriving out of order by up to a few seconds.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import featurebus
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry
from featurebus.schemas.time import format_iso_ms
from featurebus.streams.records import parse_timestamp_ms
from tests.support.oracle import Event, close, feature_value
from tests.support.replica import NOT_YET

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

MINUTE = 60_000
INTERVAL = 5 * MINUTE
USERS = [f"u{i}" for i in range(12)]
MERCHANTS = [f"m{i}" for i in range(4)]


def _write_repo(root: Path, topic: str) -> Path:
    repo = root / "shop"
    (repo / "features").mkdir(parents=True)
    (repo / "__init__.py").write_text("")
    (repo / "features" / "__init__.py").write_text("")
    (repo / "base.py").write_text(
        textwrap.dedent(f"""
        from datetime import timedelta
        from featurebus import Entity, Field, KafkaConfig, StreamSource
        from featurebus.types import Float64, String, Timestamp

        user = Entity(name="user", join_keys=[Field("user_id", String)])
        merchant = Entity(name="merchant", join_keys=[Field("merchant_id", String)])
        payments = StreamSource(
            name="payments",
            schema=[Field("user_id", String), Field("merchant_id", String), Field("amount", Float64),
                    Field("ts", Timestamp)],
            stream_config=KafkaConfig(topics="{topic}", timestamp_field="ts",
                                      watermark_delay_threshold=timedelta(minutes=2)),
        )
    """)
    )
    (repo / "features" / "views.py").write_text(
        textwrap.dedent("""
        from datetime import timedelta
        from featurebus import Aggregate, FeatureService, Field, stream_feature_view
        from featurebus.types import Float64
        from shop.base import merchant, payments, user

        @stream_feature_view(
            source=payments, entities=[user], mode="pandas", online=True, offline=True,
            features=[
                Aggregate(function="count", time_window=timedelta(minutes=10), input_column=Field("amount", Float64)),
                Aggregate(function="sum", time_window=timedelta(minutes=30), input_column=Field("amount", Float64)),
                Aggregate(function="mean", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
            ],
        )
        def user_spend(payments):
            return payments[["user_id", "amount", "ts"]]

        @stream_feature_view(
            source=payments, entities=[merchant], mode="pandas", online=True, offline=True,
            aggregation_interval=timedelta(minutes=5),
            features=[
                Aggregate(function="count", time_window=timedelta(minutes=15), input_column=Field("cents", Float64)),
                Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("cents", Float64)),
            ],
        )
        def merchant_volume(payments):
            return payments.assign(cents=payments["amount"] * 100)[["merchant_id", "cents", "ts"]]

        checkout = FeatureService(name="checkout", features=[user_spend, merchant_volume])
    """)
    )
    return repo


def _events(now_ms: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Events over the last 90 minutes: evenly spread, plus one on every 5-minute tile boundary
    (the interval view's window edges), in time order except that a fifth of them arrive up to
    4 s late (within the source's 2-minute watermark delay, so all must be counted)."""
    start = now_ms - 90 * MINUTE
    spread = [start + (now_ms - 30_000 - start) * i // count for i in range(count)]
    boundaries = list(range(start - start % INTERVAL + INTERVAL, now_ms - 30_000, INTERVAL))
    times = sorted(spread + boundaries)
    times = [t - rng.randrange(4000) if rng.random() < 0.2 else t for t in times]
    return [
        {
            "user_id": rng.choice(USERS),
            "merchant_id": rng.choice(MERCHANTS),
            "amount": round(rng.uniform(1, 500), 2),
            "ts": format_iso_ms(t),
        }
        for t in times
    ]


def _served(client: httpx.Client, url: str, key: str, workspace: str, user: str, merchant: str) -> dict[str, Any]:
    response = client.post(
        f"{url}/api/v1/feature-service/get-features",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "params": {
                "workspaceName": workspace,
                "featureServiceName": "checkout",
                "joinKeyMap": {"user_id": user, "merchant_id": merchant},
                "metadataOptions": {"includeEffectiveTimes": True},
            }
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait_for_key_and_workspace(client: httpx.Client, url: str, key: str, workspace: str) -> None:
    """The replica learns of a new key and workspace from the bus within a second or so."""
    deadline = time.monotonic() + 30
    while True:
        response = client.post(
            f"{url}/api/v1/feature-service/get-features",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "params": {
                    "workspaceName": workspace,
                    "featureServiceName": "checkout",
                    "joinKeyMap": {"user_id": USERS[0], "merchant_id": MERCHANTS[0]},
                }
            },
        )
        if response.status_code not in NOT_YET:
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def _expected(events: list[Event], features: list[dict[str, Any]], user: str, merchant: str) -> list[Any]:
    spec = {
        "user_spend.amount_count_10m_continuous": ("user", "count", 10 * MINUTE, None, 1.0),
        "user_spend.amount_sum_30m_continuous": ("user", "sum", 30 * MINUTE, None, 1.0),
        "user_spend.amount_mean_2h_continuous": ("user", "mean", 120 * MINUTE, None, 1.0),
        "merchant_volume.cents_count_15m_5m": ("merchant", "count", 15 * MINUTE, INTERVAL, 100.0),
        "merchant_volume.cents_sum_1h_5m": ("merchant", "sum", 60 * MINUTE, INTERVAL, 100.0),
    }
    values = []
    for feature in features:
        entity, function, window, interval, scale = spec[feature["name"]]
        t_ms = parse_timestamp_ms(feature["effectiveTime"])
        key = (user,) if entity == "user" else (merchant,)
        scaled = [Event(e.entity, e.ts_ms, e.value * scale) for e in events if e.entity == key]
        values.append(feature_value(scaled, key, t_ms, function, window, interval))
    return values


def test_served_values_and_training_set_equal_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(20261126)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"e2e_{suffix}", f"payments_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    repo = _write_repo(tmp_path, topic)

    with LocalPlatform(tmp_path / "home", workspace, bootstrap=kafka_bootstrap) as platform:
        applied = subprocess.run(
            [
                sys.executable,
                "-m",
                "featurebus",
                "apply",
                "--repo",
                str(repo),
                "--workspace",
                workspace,
                "--bootstrap",
                kafka_bootstrap,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert applied.returncode == 0, applied.stderr
        _, key = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")

        now_ms = int(time.time() * 1000)
        raw = _events(now_ms, 3000, rng)
        assert produce_events(kafka_bootstrap, topic, raw) == len(raw)
        user_events = [Event((e["user_id"],), parse_timestamp_ms(e["ts"]), e["amount"]) for e in raw]
        merchant_events = [Event((e["merchant_id"],), parse_timestamp_ms(e["ts"]), e["amount"]) for e in raw]

        with httpx.Client(timeout=10.0) as client:
            _wait_for_key_and_workspace(client, platform.serving_url, key, workspace)
            # Wait until every user's 2 h mean counts all of its events (everything processed).
            deadline = time.monotonic() + 90
            while True:
                platform.check()
                body = _served(client, platform.serving_url, key, workspace, USERS[0], MERCHANTS[0])
                features = body["metadata"]["features"]
                got = body["result"]["features"]
                want = _expected(user_events + merchant_events, features, USERS[0], MERCHANTS[0])
                if all(close(_num(g), w) for g, w in zip(got, want, strict=False)):
                    break
                assert time.monotonic() < deadline, f"served {got}, expected {want}\n{platform.log_tail('worker')}"
                time.sleep(0.5)
            for user in USERS:
                for merchant in MERCHANTS[:2]:
                    body = _served(client, platform.serving_url, key, workspace, user, merchant)
                    features = body["metadata"]["features"]
                    want = _expected(user_events + merchant_events, features, user, merchant)
                    got = [_num(v) for v in body["result"]["features"]]
                    assert all(close(g, w) for g, w in zip(got, want, strict=False)), (user, merchant, got, want)

        # The training set, for a random spine that includes unknown entities and event times.
        spine_rows = 400
        times = [
            rng.choice([parse_timestamp_ms(e["ts"]) for e in raw[:50]])
            if rng.random() < 0.2
            else now_ms - rng.randrange(100 * MINUTE)
            for _ in range(spine_rows)
        ]
        spine = pd.DataFrame(
            {
                "user_id": [rng.choice([*USERS, "nobody"]) for _ in range(spine_rows)],
                "merchant_id": [rng.choice(MERCHANTS) for _ in range(spine_rows)],
                "timestamp": pd.to_datetime(times, unit="ms", utc=True),
            }
        )
        _wait_offline(platform, len(raw))
        workspace_client = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=tmp_path / "home")
        frame = workspace_client.get_feature_service("checkout").get_features_for_events(spine)
    assert len(frame) == spine_rows
    assert list(frame["user_id"]) == list(spine["user_id"])
    for row, t_ms in zip(frame.itertuples(index=False), times, strict=False):
        row_dict = row._asdict()
        checks = [
            (
                "user_spend__amount_count_10m_continuous",
                user_events,
                (row_dict["user_id"],),
                "count",
                10 * MINUTE,
                None,
                1.0,
            ),
            (
                "user_spend__amount_sum_30m_continuous",
                user_events,
                (row_dict["user_id"],),
                "sum",
                30 * MINUTE,
                None,
                1.0,
            ),
            (
                "user_spend__amount_mean_2h_continuous",
                user_events,
                (row_dict["user_id"],),
                "mean",
                120 * MINUTE,
                None,
                1.0,
            ),
            (
                "merchant_volume__cents_count_15m_5m",
                merchant_events,
                (row_dict["merchant_id"],),
                "count",
                15 * MINUTE,
                INTERVAL,
                100.0,
            ),
            (
                "merchant_volume__cents_sum_1h_5m",
                merchant_events,
                (row_dict["merchant_id"],),
                "sum",
                60 * MINUTE,
                INTERVAL,
                100.0,
            ),
        ]
        for column, events, entity, function, window, interval, scale in checks:
            scaled = [Event(e.entity, e.ts_ms, e.value * scale) for e in events if e.entity == entity]
            want = feature_value(scaled, entity, t_ms, function, window, interval)
            got = row_dict[column]
            assert close(None if pd.isna(got) else got, want), (column, entity, t_ms, got, want)


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, str) else value  # int64 travels as a string


def _wait_offline(platform: LocalPlatform, expected: int) -> None:
    """Wait until the offline materializer has written every produced event to Parquet."""
    deadline = time.monotonic() + 90
    while sum(len(pd.read_parquet(p)) for p in platform.offline_dir.rglob("*.parquet")) < expected:
        platform.check()
        assert time.monotonic() < deadline, f"offline store incomplete\n{platform.log_tail('offline')}"
        time.sleep(0.5)
