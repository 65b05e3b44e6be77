"""Realtime feature views reading batch feature views: compiled and planned, served (tiles in the
online store, over HTTP) and trained (computed from the sources or read back materialized), all
equal to one brute-force oracle, so online equals offline for the same events and requests."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurebus import (
    Aggregate,
    Attribute,
    BatchSource,
    Entity,
    FeatureService,
    Field,
    FileConfig,
    RealtimeFeatureView,
    RequestSource,
    batch_feature_view,
    realtime_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.describe import lineage
from featurebus.exceptions import DefinitionError
from featurebus.plan import plan
from featurebus.platform.api_keys import ApiKey, ApiKeyStore, hash_secret
from featurebus.platform.batch.compute import BATCH_SHARD, compute_rows, view_tiles
from featurebus.platform.batch.inputs import read_inputs
from featurebus.platform.batch.materialize import compiled_view, materialize_view
from featurebus.platform.kv import MemoryStore
from featurebus.platform.offline.store import open_store
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.realtime import Calculation
from featurebus.schemas.encoding import encode_partials, store_key, tile_key
from featurebus.schemas.specs import FileConfigSpec, WorkspaceSpec
from featurebus.serving.app import create_app
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.types import Float64, String

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
SPAN = 2 * 24 * HOUR
KEY = "fbk_reader-secret"

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri="/replaced/in/tests", timestamp_field="ts"))
request = RequestSource(schema=[Field("amount", Float64)])


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(hours=1),
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=3), input_column=Field("amount", Float64)),
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
    ttl=timedelta(hours=5),
    features=[Attribute("amount", Float64)],
)
def last_amount(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


@realtime_feature_view(sources=[request, spend], mode="python", features=[Attribute("share", Float64)])
def share(request, spend):  # type: ignore[no-untyped-def]
    total = spend["amount_sum_3h_1h"]
    return {"share": None if not total else request["amount"] / total}


@realtime_feature_view(sources=[request, last_amount], mode="pandas", features=[Attribute("jump", Float64)])
def jump(request, last_amount):  # type: ignore[no-untyped-def]
    import pandas

    return pandas.DataFrame({"jump": request["amount"] - last_amount["amount"]})


above = RealtimeFeatureView(
    name="above",
    sources=[request, spend[["amount_count_2h_1h"]]],
    features=[Calculation(name="busy", expr="spend.amount_count_2h_1h >= 2")],
)
# The service lists only realtime views: the batch views come in as their upstreams.
service = FeatureService(name="svc", features=[share, jump, above])
# A batch view served next to a realtime view reading it.
mixed = FeatureService(name="mixed", features=[spend[["amount_sum_3h_1h"]], share])
BASE = compile_workspace("w", [user, tx, service, mixed])
Event = tuple[str, int, float]  # user, ms after T0, amount
EVENTS: list[Event] = [
    ("a", 10 * 60_000, 4.0),
    ("a", HOUR + 5, 6.0),
    ("a", 2 * HOUR + 1, 10.0),
    ("b", 30 * 60_000, 3.0),
    ("a", 30 * HOUR, 1.5),
    ("b", 31 * HOUR, 2.5),
]
TIMES = [T0 + 3 * HOUR + 7, T0 + 2 * HOUR, T0 + 33 * HOUR, T0, T0 + SPAN + 2 * HOUR, T0 + 8 * HOUR]
AMOUNTS = [10.0, 3.0, 0.5, 1.0, 7.0, 2.0]


def _oracle(entity: str, t: int, amount: float) -> dict[str, Any]:
    end = (t // HOUR) * HOUR  # time-interval mode: complete intervals only
    in3 = [v for e, ts, v in EVENTS if e == entity and end - 3 * HOUR <= T0 + ts < end]
    in2 = [v for e, ts, v in EVENTS if e == entity and end - 2 * HOUR <= T0 + ts < end]
    recent = sorted((T0 + ts, v) for e, ts, v in EVENTS if e == entity and t - 5 * HOUR <= T0 + ts < t)
    total = math.fsum(in3) if in3 else None
    return {
        "share.share": amount / total if total else None,
        "jump.jump": amount - recent[-1][1] if recent else None,
        "above.busy": len(in2) >= 2,
    }


def _spec(folder: Path) -> WorkspaceSpec:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "user_id": [e[0] for e in EVENTS],
            "amount": [e[2] for e in EVENTS],
            "ts": pd.to_datetime([T0 + e[1] for e in EVENTS], unit="ms", utc=True),
        }
    ).to_parquet(folder / "tx.parquet")
    source = dataclasses.replace(BASE.batch_sources[0], batch_config=FileConfigSpec(str(folder), "parquet", "ts"))
    return dataclasses.replace(BASE, batch_sources=(source,))


def _close(got: Any, want: Any) -> bool:
    if want is None:
        return got is None or bool(pd.isna(got))
    if isinstance(want, bool):
        return bool(got) == want
    return math.isclose(got, want, rel_tol=1e-9)


def test_a_realtime_view_over_batch_views_compiles_and_plans() -> None:
    assert [v.name for v in BASE.batch_feature_views] == ["last_amount", "spend"]
    share_spec = BASE.realtime_view("share")
    assert [(i.kind, i.name, [f.name for f in i.fields]) for i in share_spec.inputs] == [
        ("request", "request_source", ["amount"]),
        ("feature_view", "spend", ["amount_sum_3h_1h", "amount_count_2h_1h"]),
    ]
    assert [f.name for f in BASE.realtime_view("above").inputs[1].fields] == ["amount_count_2h_1h"]
    changes = {(c.kind, c.name): c.action for c in plan(None, BASE).changes}
    assert changes[("batch_feature_view", "spend")] == changes[("realtime_feature_view", "share")] == "create"
    assert WorkspaceSpec.from_json(BASE.to_json()) == BASE
    assert lineage(BASE, "batch_feature_view", "spend")["feature_views"] == ["above", "share", "spend"]
    assert lineage(BASE, "batch_source", "tx")["feature_services"] == ["mixed", "svc"]
    assert lineage(BASE, "realtime_feature_view", "jump") == {
        "sources": ["tx"],
        "entities": ["user"],
        "feature_views": ["jump", "last_amount"],
        "feature_services": ["svc"],
    }


def test_a_missing_batch_feature_is_named_at_plan_time() -> None:
    typo = RealtimeFeatureView(
        name="typo",
        sources=[request, spend[["amount_sum_3h"]]],
        features=[Calculation(name="x", expr="request_source.amount")],
    )
    with pytest.raises(DefinitionError, match=r"has no feature 'amount_sum_3h'.*amount_sum_3h_1h"):
        compile_workspace("w", [typo])


def _server(spec: WorkspaceSpec, clock: list[int]) -> FeatureServer:
    """Tiles as ``materialize_view`` publishes them, written into the online store."""
    store = MemoryStore()
    for name in ("spend", "last_amount"):
        view = spec.batch_view(name)
        rows, ts_ms = compute_rows(view, read_inputs(spec, view, T0, T0 + SPAN), T0, T0 + SPAN)
        store.write(
            (
                store_key(online_view_name(spec.name, name), tile_key(u.entity_key, u.tile_start_ms, BATCH_SHARD)),
                encode_partials(u.partials),
            )
            for u in view_tiles(compiled_view(spec, view), rows, ts_ms)
        )
    return FeatureServer(lambda: {spec.name: spec}, store, lambda: clock[0])


def test_served_online_and_trained_offline_equal_the_oracle(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "data")
    clock = [T0]
    server = _server(spec, clock)
    for entity in ("a", "b", "z"):
        for t, amount in zip(TIMES, AMOUNTS, strict=True):
            clock[0] = t
            result = server.get_features("w", "svc", {"user_id": entity}, request_context_map={"amount": amount})
            names = [m["name"] for m in result["metadata"]["features"]]
            served = dict(zip(names, result["result"]["features"], strict=True))
            for name, want in _oracle(entity, t, amount).items():
                assert _close(served[name], want), (entity, t, name, served[name], want)
            both = server.get_features("w", "mixed", {"user_id": entity}, request_context_map={"amount": amount})
            total = [v for e, ts, v in EVENTS if e == entity and (t // HOUR - 3) * HOUR <= T0 + ts < t // HOUR * HOUR]
            assert both["result"]["features"][0] == (math.fsum(total) if total else None)
            assert _close(both["result"]["features"][1], _oracle(entity, t, amount)["share.share"])

    spine = pd.DataFrame(
        {
            "user_id": [e for e in ("a", "b", "z") for _ in TIMES],
            "at": pd.to_datetime([t for _ in range(3) for t in TIMES], unit="ms", utc=True),
            "amount": [a for _ in range(3) for a in AMOUNTS],
        }
    )
    root = tmp_path / "offline"
    open_store(root)
    computed = get_features_for_events(spec, "svc", spine, root)  # from the source files
    start, end = datetime.fromtimestamp(T0 / 1000, UTC), datetime.fromtimestamp((T0 + SPAN) / 1000, UTC)
    for view in ("spend", "last_amount"):
        materialize_view("unused:9", root, spec, view, start, end, online=False, offline=True)
    (tmp_path / "data" / "tx.parquet").unlink()  # from here on only the materialized rows can answer
    materialized = get_features_for_events(spec, "svc", spine, root)
    for training in (computed, materialized):
        for i in range(len(spine)):
            t = int(spine["at"].iloc[i].value // 1_000_000)
            for name, want in _oracle(spine["user_id"].iloc[i], t, spine["amount"].iloc[i]).items():
                got = training[name.replace(".", "__")].iloc[i]
                assert _close(got, want), (i, name, got, want)
    assert np.array_equal(computed.columns, materialized.columns)
    both = get_features_for_events(spec, "mixed", spine, root)
    assert np.allclose(both["share__share"].astype(float), materialized["share__share"].astype(float), equal_nan=True)
    assert both["spend__amount_sum_3h_1h"].notna().sum() > 0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    keys = ApiKeyStore()
    keys.apply_record(hash_secret(KEY).encode(), ApiKey("r1", "w", "reader").to_record())
    with TestClient(create_app(_server(_spec(tmp_path / "data"), [T0 + 3 * HOUR + 7]), keys)) as test_client:
        yield test_client


def test_served_over_http(client: TestClient) -> None:
    response = client.post(
        "/api/v1/feature-service/get-features",
        headers={"Authorization": f"Tecton-key {KEY}"},
        json={
            "params": {
                "workspaceName": "w",
                "featureServiceName": "svc",
                "joinKeyMap": {"user_id": "a"},
                "requestContextMap": {"amount": 10.0},
                "metadataOptions": {"includeNames": True},
            }
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    served = dict(zip([m["name"] for m in body["metadata"]["features"]], body["result"]["features"], strict=True))
    assert served == {"share.share": 0.5, "jump.jump": 0.0, "above.busy": True}
    missing = client.post(
        "/api/v1/feature-service/get-features",
        headers={"Authorization": f"Tecton-key {KEY}"},
        json={"params": {"workspaceName": "w", "featureServiceName": "svc", "joinKeyMap": {"user_id": "a"}}},
    )
    assert missing.status_code == 400 and "requestContextMap" in missing.json()["message"]
