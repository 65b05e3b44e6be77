"""``featurebus demo`` (``make demo``): the fraud example end to end on this machine.

Starts Kafka and the platform, applies ``examples/fraud``, streams transactions, prints live
feature vectors from the HTTP API as they change, then builds a point-in-time-correct training
set from the offline store. Every process it started is stopped when it ends or on Ctrl-C.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, group_lag
from featurebus.platform.kafka.topics import worker_group
from featurebus.platform.local.generator import fraud_events, produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["run_demo"]

WORKSPACE = "demo"
SERVICE = "fraud_detection"
HISTORY_EVENTS = 20_000
LIVE_EVENTS_PER_S = 500
USERS = 200
MERCHANTS = 20


def _get_features(client: httpx.Client, url: str, key: str, join_keys: dict[str, str]) -> dict[str, Any]:
    response = client.post(
        f"{url}/api/v1/feature-service/get-features",
        headers={"Authorization": f"Tecton-key {key}"},
        json={
            "params": {
                "workspaceName": WORKSPACE,
                "featureServiceName": SERVICE,
                "joinKeyMap": join_keys,
                "metadataOptions": {"includeNames": True, "includeEffectiveTimes": True},
            }
        },
    )
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise FeaturebusError(f"get-features answered {response.status_code}: {body.get('message')}")
    return body


def _vector_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    """Features down, entities across: vectors are long and the terminal is narrow."""
    table = Table(title=title)
    table.add_column("feature")
    for label, _ in rows:
        table.add_column(label, justify="right")
    for i, feature in enumerate(rows[0][1]["metadata"]["features"]):
        # Served names are "<view>.<feature>"; the feature part alone is unique in this service.
        table.add_row(feature["name"].split(".", 1)[1], *[_fmt(body["result"]["features"][i]) for _, body in rows])
    return table


def _wait_caught_up(platform: LocalPlatform, console: Console, timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    with console.status("the stream worker is catching up with the history..."):
        while group_lag(platform.bootstrap, worker_group(WORKSPACE), ["transactions"]) > 0:
            platform.check()
            if time.monotonic() - started > timeout_s:
                raise FeaturebusError(
                    f"the worker did not catch up within {timeout_s:g}s:\n{platform.log_tail('worker')}"
                )
            time.sleep(0.25)
    return time.monotonic() - started


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _offline_rows(root: Path) -> int:
    pattern = source_glob(root, WORKSPACE, "transactions")
    try:
        with connect() as con:
            row = con.execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchone()
        return int(row[0]) if row else 0
    except duckdb.Error:
        return 0  # no file written yet


def run_demo(repo: Path, spec: WorkspaceSpec, home: Path, live_seconds: float, console: Console) -> None:
    """``spec`` is ``repo`` compiled for ``WORKSPACE`` (the SDK loads it: this layer sits below it)."""
    console.rule("featurebus demo")
    if home.exists():
        # The demo owns this directory (its Kafka, stores and logs): every run starts from a clean
        # slate, so a demo from an older featurebus (other store formats) never gets in the way.
        shutil.rmtree(home)
    with LocalPlatform(home, WORKSPACE) as platform:
        if platform.kafka_started_in_s is not None:
            console.print(f"Kafka 4.4 (KRaft) up at {platform.bootstrap} in {platform.kafka_started_in_s:.1f}s")
        console.print(f"processes: {platform.pids()}  logs: {home / 'logs'}")
        ensure_topics(platform.bootstrap, [TopicConfig("transactions", partitions=4)])
        registry = KafkaRegistry(platform.bootstrap)
        spec = apply_workspace(registry, spec)
        console.print(
            f"applied {repo} to workspace '{WORKSPACE}' v{spec.version}: "
            f"views {[v.name for v in spec.stream_feature_views]}, services {[s.name for s in spec.feature_services]}"
        )
        _, key = create_api_key(registry, WORKSPACE, "reader", "demo")

        started_ms = now_ms()
        produced = produce_events(
            platform.bootstrap,
            "transactions",
            fraud_events(
                HISTORY_EVENTS,
                started_ms - 2 * 3_600_000,
                2 * 3_600_000,
                users=USERS,
                merchants=MERCHANTS,
                disorder_ms=5_000,
            ),
        )
        console.print(f"produced {produced:,} historical transactions (last 2 hours, some out of order)")

        caught_up_in = _wait_caught_up(platform, console)
        console.print(f"the stream worker caught up with the history in {caught_up_in:.1f}s")

        probes = [("user_0", "merchant_3"), ("user_1", "merchant_7"), ("user_5", "merchant_11")]
        with httpx.Client(timeout=5.0) as client:
            deadline = time.monotonic() + live_seconds
            tick = 0
            while True:
                platform.check()
                rows = [
                    (f"{u}\n{m}", _get_features(client, platform.serving_url, key, {"user_id": u, "merchant_id": m}))
                    for u, m in probes
                ]
                console.print(
                    _vector_table(
                        f"live feature vectors at {time.strftime('%H:%M:%S')} "
                        "(POST /api/v1/feature-service/get-features)",
                        rows,
                    )
                )
                if time.monotonic() >= deadline:
                    break
                live = fraud_events(
                    LIVE_EVENTS_PER_S, now_ms(), 1000, users=USERS, merchants=MERCHANTS, seed=1000 + tick
                )
                produced += produce_events(platform.bootstrap, "transactions", live)
                tick += 1
                time.sleep(1.0)
            started = time.perf_counter()
            _get_features(client, platform.serving_url, key, {"user_id": "user_0", "merchant_id": "merchant_3"})
            console.print(f"one more lookup took {(time.perf_counter() - started) * 1000:.1f} ms over HTTP")

        console.rule("training set")
        deadline = time.monotonic() + 60
        while _offline_rows(platform.offline_dir) < produced and time.monotonic() < deadline:
            platform.check()
            time.sleep(0.5)
        console.print(f"offline store holds {_offline_rows(platform.offline_dir):,} of {produced:,} events")
        spine_ts = pd.Timestamp(started_ms, unit="ms", tz="UTC")
        spine = pd.DataFrame(
            {  # the same user at two times, an earlier time, and an unknown user
                "user_id": ["user_0", "user_0", "user_5", "nobody"],
                "merchant_id": ["merchant_3", "merchant_3", "merchant_11", "merchant_0"],
                "timestamp": [
                    spine_ts - pd.Timedelta(minutes=90),
                    spine_ts,
                    spine_ts - pd.Timedelta(minutes=30),
                    spine_ts,
                ],
            }
        )
        started = time.perf_counter()
        frame = get_features_for_events(spec, SERVICE, spine, platform.offline_dir)
        console.print(
            f"point-in-time training set: {len(frame)} rows in {time.perf_counter() - started:.2f}s "
            "(a user with no events gets count 0 and nulls)"
        )
        table = Table(title="training set (one column per spine row; features as of its timestamp)")
        table.add_column("column", no_wrap=True)
        for i in range(len(frame)):
            table.add_column(f"row {i}", justify="right")
        for column in frame.columns:  # "<view>__<feature>": the feature part is unique here
            table.add_row(column.split("__", 1)[-1], *[_fmt(v) for v in frame[column]])
        console.print(table)
    console.rule("demo finished; every process it started has been stopped")
