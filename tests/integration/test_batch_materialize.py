"""A batch feature view end to end against the real broker: a Parquet BatchSource materialized
online and offline over a range, served over HTTP with the oracle's values, a training set equal
to the same oracle, and a second materialization of the range that changes nothing."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from featurebus import Aggregate, Attribute, BatchSource, Entity, FeatureService, Field, FileConfig, batch_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.api_keys import ApiKeyStore, create_api_key
from featurebus.platform.batch.materialize import materialize_view
from featurebus.platform.kafka.admin import ensure_topic
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import REGISTRY_TOPIC
from featurebus.platform.kv import MemoryStore
from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.specs import FileConfigSpec
from featurebus.serving.app import create_app
from featurebus.serving.online_materializer import OFFSETS_PREFIX, OnlineMaterializer
from featurebus.serving.service import FeatureServer
from featurebus.types import Float64, String

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
SPAN = 2 * 24 * HOUR
USERS = ("a", "b", "c")

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri="/replaced/in/the/test", timestamp_field="ts"))


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(hours=1),
    batch_schedule=timedelta(days=1),
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=6), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
    ],
)
def spend(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    ttl=timedelta(hours=4),
    features=[Attribute("amount", Float64)],
)
def last_amount(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout_s} s"
        time.sleep(0.1)


def _oracle(events: pd.DataFrame, entity: str, t: int) -> list[Any]:
    mine = events[events.user_id == entity]
    ts = mine.ts_ms.to_numpy()
    end = (t // HOUR) * HOUR  # time-interval mode: complete intervals only (docs/design.md §4)
    in6 = mine.amount[(ts >= end - 6 * HOUR) & (ts < end)].tolist()
    in2 = mine.amount[(ts >= end - 2 * HOUR) & (ts < end)].tolist()
    recent = mine[(ts >= t - 4 * HOUR) & (ts < t)].sort_values("ts_ms")
    return [math.fsum(in6) if in6 else None, len(in2), float(recent.amount.iloc[-1]) if len(recent) else None]


def _snapshot(root: Path, store: MemoryStore) -> tuple[dict[str, bytes], list[tuple[bytes, bytes]]]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "batch_views").rglob("*.parquet"))}
    return files, [(k, v) for k, v in store.scan(b"\x01", b"\xff") if not k.startswith(OFFSETS_PREFIX)]


def test_a_batch_view_materialized_online_and_offline(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 400
    stamps = T0 + rng.choice(SPAN, size=n, replace=False)  # distinct times: "last" has no ties
    events = pd.DataFrame(
        {"user_id": rng.choice(USERS, n), "amount": rng.integers(-100, 100, n).astype(float), "ts_ms": stamps}
    )
    data = tmp_path / "tx"
    data.mkdir()
    events.assign(ts=pd.to_datetime(events.ts_ms, unit="ms", utc=True)).drop(columns="ts_ms").to_parquet(
        data / "tx.parquet"
    )
    workspace = f"batch{uuid.uuid4().hex[:10]}"
    spec = compile_workspace(
        workspace, [user, tx, spend, last_amount, FeatureService(name="svc", features=[spend, last_amount])]
    )
    spec = dataclasses.replace(
        spec,
        batch_sources=(
            dataclasses.replace(spec.batch_sources[0], batch_config=FileConfigSpec(str(data), "parquet", "ts")),
        ),
    )
    ensure_topic(kafka_bootstrap, REGISTRY_TOPIC, compacted=True)
    with reliable_producer(kafka_bootstrap) as producer:
        producer.produce(REGISTRY_TOPIC, key=workspace.encode(), value=spec.to_json())

    root = tmp_path / "offline"
    start, end = datetime.fromtimestamp(T0 / 1000, UTC), datetime.fromtimestamp((T0 + SPAN) / 1000, UTC)

    def materialize() -> list[Any]:
        results = []
        for view in ("spend", "last_amount"):
            seen: list[float] = []
            results.append(
                materialize_view(
                    kafka_bootstrap, root, spec, view, start, end, online=True, offline=True, progress=seen.append
                )
            )
            assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
        return results

    first = materialize()
    assert sum(r.rows_written for r in first) == 2 * n  # each view's rows, once
    assert all(r.tiles_written > 0 and not r.cancelled for r in first)

    keys = ApiKeyStore()
    _, secret = create_api_key(KafkaRegistry(kafka_bootstrap), workspace)
    store = MemoryStore()
    materializer = OnlineMaterializer(kafka_bootstrap, store, keys)
    materializer.start()
    try:
        _eventually(lambda: workspace in materializer.specs() and materializer.caught_up(), "serving caught up")
        now = [T0]
        client = TestClient(create_app(FeatureServer(materializer.specs, store, lambda: now[0]), keys, materializer))
        times = [T0 + int(t) for t in rng.integers(0, SPAN + 8 * HOUR, 12)] + [T0 + 10 * HOUR, T0 + SPAN]
        spine_rows = []
        for t in times:
            now[0] = t
            for entity in USERS:
                response = client.post(
                    "/api/v1/feature-service/get-features",
                    headers={"Authorization": f"Tecton-key {secret}"},
                    json={
                        "params": {
                            "workspaceName": workspace,
                            "featureServiceName": "svc",
                            "joinKeyMap": {"user_id": entity},
                        }
                    },
                )
                assert response.status_code == 200, response.text
                served = response.json()["result"]["features"]
                expected = _oracle(events, entity, t)
                assert served[1] == str(expected[1])  # int64 travels as a string, as in Tecton
                for got, want in ((served[0], expected[0]), (served[2], expected[2])):
                    assert (got is None) if want is None else math.isclose(got, want, rel_tol=1e-9), (
                        t,
                        entity,
                        got,
                        want,
                    )
                spine_rows.append((entity, t))

        spine = pd.DataFrame(
            {
                "user_id": [u for u, _ in spine_rows],
                "at": pd.to_datetime([t for _, t in spine_rows], unit="ms", utc=True),
            }
        )
        training = get_features_for_events(spec, "svc", spine, root)
        for i, (entity, t) in enumerate(spine_rows):
            want = _oracle(events, entity, t)
            row = training.iloc[i]
            assert row["spend__amount_count_2h_1h"] == want[1]
            for column, value in (("spend__amount_sum_6h_1h", want[0]), ("last_amount__amount", want[2])):
                assert pd.isna(row[column]) if value is None else math.isclose(row[column], value, rel_tol=1e-9)

        before = _snapshot(root, store)
        offsets = list(store.scan(OFFSETS_PREFIX, OFFSETS_PREFIX + b"\xff"))
        again = materialize()
        assert [(r.rows_written, r.tiles_written, r.offline_files) for r in again] == [
            (r.rows_written, r.tiles_written, r.offline_files) for r in first
        ]
        # Wait until serving has consumed the re-published records, then nothing differs.
        _eventually(lambda: list(store.scan(OFFSETS_PREFIX, OFFSETS_PREFIX + b"\xff")) != offsets, "re-run consumed")
        _eventually(materializer.caught_up, "caught up again")
        assert _snapshot(root, store) == before

        # The source is corrected (user c's rows withdrawn): a re-run deletes their tiles online.
        corrected = events[events.user_id != "c"]
        corrected.assign(ts=pd.to_datetime(corrected.ts_ms, unit="ms", utc=True)).drop(columns="ts_ms").to_parquet(
            data / "tx.parquet"
        )
        offsets = list(store.scan(OFFSETS_PREFIX, OFFSETS_PREFIX + b"\xff"))
        materialize()
        _eventually(
            lambda: list(store.scan(OFFSETS_PREFIX, OFFSETS_PREFIX + b"\xff")) != offsets, "correction consumed"
        )
        _eventually(materializer.caught_up, "caught up after the correction")
        for t in times:
            now[0] = t
            for entity in USERS:
                served = client.post(
                    "/api/v1/feature-service/get-features",
                    headers={"Authorization": f"Tecton-key {secret}"},
                    json={
                        "params": {
                            "workspaceName": workspace,
                            "featureServiceName": "svc",
                            "joinKeyMap": {"user_id": entity},
                        }
                    },
                ).json()["result"]["features"]
                expected = _oracle(corrected, entity, t)
                assert served[1] == str(expected[1])
                assert (
                    (served[0] is None) if expected[0] is None else math.isclose(served[0], expected[0], rel_tol=1e-9)
                )
    finally:
        materializer.stop()
