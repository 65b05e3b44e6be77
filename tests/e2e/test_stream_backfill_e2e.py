"""A stream view with batch history, end to end (issue 16's acceptance): its ``batch_config``
files hold four days of events, its topic the last six hours, and the two overlap for four hours.
Applied to a live workspace, the view's cut-over is fixed from the topic's earliest records, its
backfill jobs run in the platform's job runner while the worker consumes the topic; then serving
(for now) and a training set (for spine times before, across and after the cut-over) both return
the brute-force value over the union of the files and the topic, each event counted once and
nothing before ``feature_start_time`` counted. One view transforms in pandas mode, one in python
mode: the files' rows go through the same transformation as the topic's records. A third reads
``tx.select_range(MATERIALIZATION_START_TIME + 6h, MATERIALIZATION_END_TIME)``: of the files it
counts each day's events from 06:00 on only, while the topic's (from the cut-over) all count."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from glob import glob as globbed
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from featurebus import (
    Aggregate,
    Entity,
    FeatureService,
    Field,
    FileConfig,
    KafkaConfig,
    StreamSource,
    TectonTimeConstant,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.jobs.client import enqueue_stream_backfills, wait_for_job
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import feature_column, get_features_for_events
from featurebus.schemas.jobs import JobState
from featurebus.schemas.specs import FileConfigSpec, WorkspaceSpec
from featurebus.schemas.time import now_ms
from featurebus.streams.records import parse_timestamp_ms
from featurebus.types import Float64, String, Timestamp

pytestmark = pytest.mark.kafka

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
TILE = 10 * MINUTE
NOW = now_ms() // TILE * TILE
FEATURE_START = NOW - 3 * DAY
FILES_END = NOW - 2 * HOUR  # the files hold events before this
TOPIC_START = NOW - 6 * HOUR  # the topic holds events from this on
USERS = [f"u{i}" for i in range(8)]
WINDOWS = {"1h": HOUR, "12h": 12 * HOUR, "5d": 5 * DAY}  # after, across, and before the cut-over

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = StreamSource(
    name="tx",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="replaced_in_the_test", timestamp_field="ts"),
    batch_config=FileConfig(uri="/replaced/in/the/test", timestamp_field="ts"),
)
_FEATURES = [
    Aggregate(function="sum", time_window=timedelta(milliseconds=w), input_column=Field("amount", Float64))
    for w in WINDOWS.values()
] + [Aggregate(function="count", time_window=timedelta(days=5), input_column=Field("amount", Float64))]


@stream_feature_view(
    source=tx,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(minutes=10),
    features=_FEATURES,
    feature_start_time=datetime.fromtimestamp(FEATURE_START / 1000, UTC),
    batch_schedule=timedelta(days=1),
    max_backfill_interval=timedelta(days=2),
)
def spend(tx):  # type: ignore[no-untyped-def]
    out = tx[["user_id", "ts"]].copy()
    out["amount"] = tx["amount"] * 2
    return out


@stream_feature_view(
    source=tx,
    entities=[user],
    mode="python",
    online=True,
    offline=True,
    aggregation_interval=timedelta(minutes=10),
    features=_FEATURES,
    feature_start_time=datetime.fromtimestamp(FEATURE_START / 1000, UTC),
    batch_schedule=timedelta(days=1),
    incremental_backfills=True,
)
def spend_py(tx):  # type: ignore[no-untyped-def]
    return {"user_id": tx["user_id"], "ts": tx["ts"], "amount": tx["amount"] + 1}


RANGE_SKIP = 6 * HOUR  # the ranged view reads each daily window's files from its start + 6h


@stream_feature_view(
    source=tx.select_range(
        start_time=TectonTimeConstant.MATERIALIZATION_START_TIME + timedelta(milliseconds=RANGE_SKIP),
        end_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
    ),
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(minutes=10),
    features=_FEATURES,
    feature_start_time=datetime.fromtimestamp(FEATURE_START / 1000, UTC),
    batch_schedule=timedelta(days=1),
)
def spend_ranged(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


VIEWS = ("spend", "spend_py", "spend_ranged")
service = FeatureService(name="svc", features=[spend, spend_py, spend_ranged])
TRANSFORMED: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "spend": lambda a: a * 2,
    "spend_py": lambda a: a + 1,
    "spend_ranged": lambda a: a,
}


def _events() -> pd.DataFrame:
    rng = np.random.default_rng(16)
    n = 6000
    ts = np.sort(NOW - 4 * DAY + rng.integers(0, 4 * DAY - 10_000, n))
    # Events exactly on the tile edges and around the topic's start, where off-by-ones would show.
    edges = np.array([TOPIC_START, TOPIC_START + 1, FILES_END - 1, FILES_END, FEATURE_START - 1, FEATURE_START])
    ts = np.sort(np.concatenate([ts, edges]))
    return pd.DataFrame(
        {
            "user_id": rng.choice(USERS, len(ts)),
            "amount": rng.integers(-50, 100, len(ts)).astype(float),
            "ts_ms": ts,
        }
    )


def _oracle(events: pd.DataFrame, view: str, entity: str, t_ms: int, cutover: int) -> dict[str, Any]:
    """Brute force over the union (each event once), from feature_start_time, window end E; the
    ranged view drops the history's (below the cut-over) events of each day's first hours."""
    end = t_ms // TILE * TILE
    mine = events[(events.user_id == entity) & (events.ts_ms >= FEATURE_START) & (events.ts_ms < end)]
    if view == "spend_ranged":
        mine = mine[(mine.ts_ms >= cutover) | (mine.ts_ms % DAY >= RANGE_SKIP)]
    values = TRANSFORMED[view](mine.amount.to_numpy())
    result: dict[str, Any] = {}
    for label, width in WINDOWS.items():
        inside = values[mine.ts_ms.to_numpy() >= end - width]
        result[f"amount_sum_{label}_10m"] = math.fsum(inside) if len(inside) else None
    result["amount_count_5d_10m"] = int((mine.ts_ms.to_numpy() >= end - 5 * DAY).sum())
    return result


def _same(got: Any, want: Any) -> bool:
    missing = got is None or (isinstance(got, float) and math.isnan(got))
    if want is None or missing:
        return want is None and missing
    return math.isclose(float(got), float(want), rel_tol=1e-9)


def _eventually(check: Callable[[], str | None], timeout_s: float, platform: LocalPlatform) -> None:
    deadline = time.monotonic() + timeout_s
    while (problem := check()) is not None:
        platform.check()
        assert time.monotonic() < deadline, f"{problem}\n{platform.log_tail('worker')}\n{platform.log_tail('jobs')}"
        time.sleep(0.5)


def _workspace(name: str, topic: str, files: Path) -> WorkspaceSpec:
    spec = compile_workspace(name, [user, tx, spend, spend_py, spend_ranged, service])
    source = spec.stream_sources[0]
    source = dataclasses.replace(
        source,
        kafka=dataclasses.replace(source.kafka, topics=(topic,)),
        batch_config=FileConfigSpec(str(files), "parquet", "ts"),
    )
    return dataclasses.replace(spec, stream_sources=(source,))


def test_batch_history_and_topic_overlap_and_every_event_counts_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    events = _events()
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"history_{suffix}", f"history_{suffix}"
    files = tmp_path / "history"
    files.mkdir()
    in_files = events[events.ts_ms < FILES_END]
    in_files.assign(ts=pd.to_datetime(in_files.ts_ms, unit="ms", utc=True)).drop(columns="ts_ms").to_parquet(
        files / "part-0.parquet"
    )
    on_topic = events[events.ts_ms >= TOPIC_START]
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    with reliable_producer(kafka_bootstrap) as producer:
        for row in on_topic.itertuples():
            producer.produce(
                topic,
                key=row.user_id.encode(),
                value=orjson.dumps({"user_id": row.user_id, "amount": row.amount, "ts": int(row.ts_ms)}),
            )

    registry = KafkaRegistry(kafka_bootstrap)
    spec = apply_workspace(registry, _workspace(workspace, topic, files))
    cutovers = {v.name: v.stream_cutover_ms for v in spec.stream_feature_views}
    cutover = cutovers["spend"]
    # The latest of the partitions' first event times: a topic event's time in the overlap.
    assert cutover is not None and set(cutovers.values()) == {cutover}
    assert TOPIC_START <= cutover < FILES_END and cutover in set(on_topic.ts_ms.tolist())
    jobs, notes = enqueue_stream_backfills(registry.jobs(workspace), spec, [(v, False) for v in VIEWS], now_ms())
    assert notes == []
    first_day = FEATURE_START // DAY * DAY  # periods are aligned to batch_schedule from the epoch
    # max_backfill_interval: 2-day jobs; incremental_backfills: one job per daily period.
    assert len([j for j in jobs if j.view == "spend"]) == -(-(cutover - first_day) // (2 * DAY))
    assert len([j for j in jobs if j.view == "spend_py"]) == -(-(cutover - first_day) // DAY)
    assert len([j for j in jobs if j.view == "spend_ranged"]) == 1
    _, key = create_api_key(registry, workspace, "reader")

    with LocalPlatform(tmp_path / "platform", workspace, bootstrap=kafka_bootstrap) as platform:
        store = registry.jobs(workspace)
        for job in jobs:
            finished = wait_for_job(store, job.id, timeout_s=240)
            assert finished.state is JobState.SUCCESS, (finished, platform.log_tail("jobs"))
        client = httpx.Client(base_url=platform.serving_url, timeout=10.0, headers={"Authorization": f"Bearer {key}"})

        def served_mismatch() -> str | None:
            for entity in USERS:
                response = client.post(
                    "/api/v1/feature-service/get-features",
                    json={
                        "params": {
                            "workspaceName": workspace,
                            "featureServiceName": "svc",
                            "joinKeyMap": {"user_id": entity},
                            "metadataOptions": {"includeNames": True, "includeEffectiveTimes": True},
                        }
                    },
                )
                if response.status_code != 200:
                    return f"{response.status_code}: {response.text}"
                body = response.json()
                for meta, value in zip(body["metadata"]["features"], body["result"]["features"], strict=True):
                    view, feature = meta["name"].split(".")
                    want = _oracle(events, view, entity, parse_timestamp_ms(meta["effectiveTime"]), cutover)[feature]
                    got = int(value) if isinstance(value, str) else value
                    if not _same(got, want):
                        return f"{entity} {meta['name']}: served {got}, brute force {want}"
            return None

        _eventually(served_mismatch, 180, platform)

        glob = source_glob(platform.offline_dir, workspace, "tx")

        def offline_behind() -> str | None:
            written = sum(len(pd.read_parquet(p, columns=["_offset"])) for p in globbed(glob))
            return None if written >= len(on_topic) else f"offline store holds {written} of {len(on_topic)} records"

        _eventually(offline_behind, 120, platform)

        spine_times = [
            FEATURE_START - HOUR,  # before feature_start_time: nothing counts
            NOW - 2 * DAY,  # before the cut-over: the files only
            cutover - TILE,
            cutover,  # across it
            cutover + 7 * MINUTE,
            FILES_END + TILE,  # the overlap is behind: files and topic, once each
            NOW - 30 * MINUTE,  # after it: 1h from the topic only
            NOW,
        ]
        spine = pd.DataFrame(
            {
                "user_id": [u for _ in spine_times for u in USERS],
                "ts": pd.to_datetime([t for t in spine_times for _ in USERS], unit="ms", utc=True),
            }
        )
        training = get_features_for_events(spec, "svc", spine, platform.offline_dir)
        for i, (entity, t) in enumerate(zip(spine.user_id, [t for t in spine_times for _ in USERS], strict=True)):
            for view in VIEWS:
                for feature, want in _oracle(events, view, entity, t, cutover).items():
                    got = training.iloc[i][feature_column(view, feature)]
                    assert _same(got, want), (entity, t - cutover, view, feature, got, want)
        client.close()
