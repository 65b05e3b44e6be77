"""Online = offline on a hostile history, against the real broker with the worker, serving and the
offline materializer running (issue #14): late events beyond the delay, events hours ahead of the
wall clock, huge values then tiny ones, near-constant values, signed zeros and nulls, produced in
a deliberate order to one partition. Every served cell (>= 100,000) and every training-set cell
(>= 500,000) must equal a brute-force oracle of the arrival rule (``streams/arrival.py``) and the
window rules: counts exactly, sums and means within 1e-12 relative of the exact value, variances
within 1e-9 relative.

Windows are tiled (10-minute interval), so a served value is the one at the start of the
request's interval: requests that straddle an interval edge are retried.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
import time
import uuid
from fractions import Fraction
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
from tests.support.workers import committed

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

MINUTE = 60_000
HOUR = 60 * MINUTE
INTERVAL = 10 * MINUTE
DELAY = 2 * MINUTE
TOLERANCE = MINUTE  # streams.arrival.FUTURE_TOLERANCE_MS
USERS = [f"u{i}" for i in range(2000)]
FUNCTIONS = ("count", "sum", "mean", "var_samp", "stddev_pop")
WINDOWS = (("1h", HOUR), ("3h", 3 * HOUR))
FEATURES = [(f"amount_{fn}_{label}_10m", fn, window) for label, window in WINDOWS for fn in FUNCTIONS]


def _write_repo(root: Path, topic: str) -> Path:
    repo = root / "hostile"
    repo.mkdir(parents=True)
    (repo / "__init__.py").write_text("")
    aggregates = ",\n                ".join(
        f'Aggregate(function="{fn}", time_window=timedelta(hours={window // HOUR}), input_column=Field("amount", Float64))'
        for _, fn, window in FEATURES
    )
    (repo / "features.py").write_text(
        textwrap.dedent(f"""
        from datetime import timedelta
        from featurebus import Aggregate, Entity, FeatureService, Field, KafkaConfig, StreamSource, stream_feature_view
        from featurebus.types import Float64, String, Timestamp

        user = Entity(name="user", join_keys=[Field("user_id", String)])
        payments = StreamSource(
            name="payments",
            schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
            stream_config=KafkaConfig(topics="{topic}", timestamp_field="ts",
                                      watermark_delay_threshold=timedelta(minutes={DELAY // MINUTE})),
        )

        @stream_feature_view(
            source=payments, entities=[user], mode="pandas", online=True, offline=True,
            aggregation_interval=timedelta(minutes={INTERVAL // MINUTE}),
            features=[
                {aggregates}
            ],
        )
        def spend(payments):
            return payments[["user_id", "amount", "ts"]]

        checkout = FeatureService(name="checkout", features=[spend])
    """)
    )
    return repo


def _value(rng: random.Random, age_ms: int) -> float | None:
    """Huge values more than an hour back, then tiny, near-constant or signed-zero ones."""
    kind = rng.random()
    if kind < 0.05:
        return None
    if age_ms > 75 * MINUTE and kind < 0.5:
        return rng.choice([1, -1]) * rng.uniform(1e9, 7e12)
    if kind < 0.6:
        return 1e9 + rng.uniform(-0.003, 0.003)
    if kind < 0.7:
        return rng.choice([0.0, -0.0])
    return rng.uniform(-1, 1)


def _history(now_ms: int, rng: random.Random) -> list[tuple[str, int, float | None]]:
    """(user, event time, amount) in produce order: mostly in time order over the last 4 h, with
    events arriving late within the delay, late beyond it, and hours ahead of the wall clock."""
    start = now_ms - 4 * HOUR
    base = sorted(start + rng.randrange(4 * HOUR - MINUTE) for _ in range(30_000))
    events = []
    for t in base:
        user = rng.choice(USERS)
        roll = rng.random()
        if roll < 0.05:
            t -= rng.randrange(DELAY + 1000, 2 * HOUR)  # late beyond the delay (dropped if behind the watermark)
        elif roll < 0.10:
            t -= rng.randrange(DELAY - 1000)  # late within the delay: counted
        elif roll < 0.11:
            t = now_ms + TOLERANCE + rng.randrange(10_000, 2 * HOUR)  # ahead: dead-lettered
        events.append((user, t, _value(rng, now_ms - t)))
    return events


def _counted(
    events: list[tuple[str, int, float | None]], produced_ms: int
) -> dict[str, list[tuple[int, float | None]]]:
    """The oracle's arrival rule over the one partition, in produce order."""
    by_user: dict[str, list[tuple[int, float | None]]] = {}
    watermark = None
    for user, t, amount in events:
        if t > produced_ms + TOLERANCE:
            continue
        if watermark is not None and t < watermark - DELAY:
            continue
        watermark = t if watermark is None else max(watermark, t)
        by_user.setdefault(user, []).append((t, amount))
    return by_user


def _exact(function: str, values: list[float]) -> float | int | None:
    if function == "count":
        return len(values)
    if not values:
        return None
    if function == "sum":
        return math.fsum(values)
    if function == "mean":
        return float(sum(map(Fraction, values), Fraction(0)) / len(values))
    exact = [Fraction(v) for v in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    ddof = 1 if function.endswith("samp") else 0
    if len(exact) <= ddof:
        return None
    variance = sum(((v - mean) ** 2 for v in exact), Fraction(0)) / (len(exact) - ddof)
    return math.sqrt(variance) if function.startswith("stddev") else float(variance)


def _oracle(counted: dict[str, list[tuple[int, float | None]]], user: str, t_ms: int) -> list[Any]:
    end = t_ms // INTERVAL * INTERVAL
    mine = counted.get(user, [])
    result = []
    for _, function, window in FEATURES:
        values = [float(a) for t, a in mine if end - window <= t < end and a is not None]
        result.append(_exact(function, values))
    return result


def _matches(function: str, got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if function == "count":
        return int(got) == want
    if function in ("sum", "mean"):
        return abs(float(got) - want) <= 1e-12 * abs(want)
    floor = (1e-15 * 7e12) ** 2 if function.startswith("var") else 1e-15 * 7e12
    return abs(float(got) - want) <= 1e-9 * abs(want) + floor


def _serve(client: httpx.Client, url: str, key: str, workspace: str, users: list[str]) -> tuple[int, list[Any]]:
    """One batch request, retried until it did not straddle an interval edge; (request time, rows)."""
    while True:
        before = int(time.time() * 1000)
        response = client.post(
            f"{url}/api/v1/feature-service/get-features-batch",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "params": {
                    "workspaceName": workspace,
                    "featureServiceName": "checkout",
                    "requestData": [{"joinKeyMap": {"user_id": u}} for u in users],
                }
            },
        )
        after = int(time.time() * 1000)
        assert response.status_code == 200, response.text
        if before // INTERVAL == after // INTERVAL:
            return before, [row["features"] for row in response.json()["result"]]


def test_hostile_history_served_and_training_cells_equal_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(14)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"hostile_{suffix}", f"payments_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=1)])
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
        events = _history(now_ms, rng)
        produced = produce_events(
            kafka_bootstrap, topic, [{"user_id": u, "amount": a, "ts": format_iso_ms(t)} for u, t, a in events]
        )
        assert produced == len(events)
        counted = _counted(events, now_ms)
        kept = sum(len(v) for v in counted.values())
        assert 0 < kept < len(events)  # the history does drop events, late and ahead

        deadline = time.monotonic() + 180
        while committed(kafka_bootstrap, workspace, topic) < len(events):
            platform.check()
            assert time.monotonic() < deadline, platform.log_tail("worker")
            time.sleep(0.5)
        served_cells = 0
        with httpx.Client(timeout=60.0) as client:
            deadline = time.monotonic() + 120
            while True:  # serving has materialized everything once the first user's values agree
                t_ms, rows = _serve(client, platform.serving_url, key, workspace, USERS[:50])
                if all(
                    _matches(fn, g, w)
                    for u, row in zip(USERS[:50], rows, strict=True)
                    for (_, fn, _), g, w in zip(FEATURES, row, _oracle(counted, u, t_ms), strict=True)
                ):
                    break
                assert time.monotonic() < deadline, "serving never caught up with the worker"
                time.sleep(1.0)
            for _ in range(5):
                for first in range(0, len(USERS), 250):
                    users = USERS[first : first + 250]
                    t_ms, rows = _serve(client, platform.serving_url, key, workspace, users)
                    for user, row in zip(users, rows, strict=True):
                        for (name, function, _), got, want in zip(
                            FEATURES, row, _oracle(counted, user, t_ms), strict=True
                        ):
                            assert _matches(function, got, want), ("served", user, t_ms, name, got, want)
                            served_cells += 1
        assert served_cells >= 100_000

        deadline = time.monotonic() + 180
        while sum(len(pd.read_parquet(p, columns=["_offset"])) for p in platform.offline_dir.rglob("*.parquet")) < len(
            events
        ):
            platform.check()
            assert time.monotonic() < deadline, platform.log_tail("offline")
            time.sleep(0.5)
        times = [now_ms - rng.randrange(4 * HOUR) for _ in range(25)]
        spine = pd.DataFrame(
            {
                "user_id": [u for u in USERS for _ in times],
                "timestamp": pd.to_datetime([t for _ in USERS for t in times], unit="ms", utc=True),
            }
        )
        client_ws = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=tmp_path / "home")
        frame = client_ws.get_feature_service("checkout").get_features_for_events(spine)
    training_cells = 0
    columns = [frame[f"spend__{name}"].tolist() for name, _, _ in FEATURES]
    for position, (user, t_ms) in enumerate((u, t) for u in USERS for t in times):
        for (name, function, _), column, want in zip(FEATURES, columns, _oracle(counted, user, t_ms), strict=True):
            got = column[position]
            got = None if got is None or pd.isna(got) else got
            assert _matches(function, got, want), ("training", user, t_ms, name, got, want)
            training_cells += 1
    assert training_cells >= 500_000
