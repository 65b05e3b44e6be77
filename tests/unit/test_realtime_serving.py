"""Realtime feature views served in-process and over HTTP: request context, upstream features, errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurebus.exceptions import InvalidRequestError
from featurebus.platform.api_keys import ApiKey, ApiKeyStore, hash_secret
from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import encode_partials, store_key, tile_key
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.app import create_app
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.streams.tiles import CompiledView, batch_tiles
from tests.support.realtime_repo import SPEC

MINUTE = 60_000
BASE = 1_700_000_000_000 - (1_700_000_000_000 % (60 * MINUTE))
NOW = BASE + 60 * MINUTE + 7 * MINUTE  # 23:07 UTC: alice's three events are in the last hour
EVENTS = [
    ("alice", BASE + 10 * MINUTE, 10.0),
    ("alice", BASE + 50 * MINUTE, 20.0),
    ("alice", BASE + 59 * MINUTE, 30.0),
    ("bob", BASE, 5.0),
]
CONTEXT = {"amount": 50.0, "merchant": "web", "channel_code": "2"}
KEY = "fbk_reader-secret"


def load(store: MemoryStore, spec: WorkspaceSpec, events: Sequence[tuple[str, int, float]]) -> None:
    """Write the tiles the stream worker would publish for ``events`` into the online store."""
    view = CompiledView.compile(spec.view("user_spending"), ["string"])
    rows = pd.DataFrame({"user_id": [e[0] for e in events], "amount": [e[2] for e in events]})
    ts_ms = np.array([e[1] for e in events], dtype=np.int64)
    name = online_view_name(spec.name, "user_spending")
    store.write(
        (store_key(name, tile_key(u.entity_key, u.tile_start_ms)), encode_partials(u.partials))
        for u in batch_tiles(view, rows, ts_ms)
    )


class Clock:
    def __init__(self, t_ms: int) -> None:
        self.t_ms = t_ms

    def __call__(self) -> int:
        return self.t_ms


def server(events: Sequence[tuple[str, int, float]] = EVENTS, t_ms: int = NOW) -> FeatureServer:
    store = MemoryStore()
    load(store, SPEC, events)
    specs = {SPEC.name: SPEC}
    return FeatureServer(lambda: specs, store, Clock(t_ms))


def features(result: dict[str, Any]) -> dict[str, Any]:
    names = [m["name"] for m in result["metadata"]["features"]]
    return dict(zip(names, result["result"]["features"], strict=True))


def test_realtime_features_from_request_context_and_stream_features() -> None:
    result = server().get_features(
        "rt",
        "scoring",
        {"user_id": "alice"},
        request_context_map=CONTEXT,
        metadata_options={"includeServingStatus": True, "includeDataTypes": True, "includeEffectiveTimes": True},
    )
    assert features(result) == {
        "user_spending.amount_count_1h_continuous": "3",
        "ratio.amount_ratio": 2.5,
        "ratio.big": True,
        "ratio.seen_plus": "5",
        "ratio.app_or_web": True,
        "py_view.amount_x2": 100.0,
        "py_view.hour": "23",
        "py_view.mean_or_zero": 20.0,
        "py_view.label": "web:3",
        "py_view.quiet": False,
        "pd_view.amount_minus_mean": 30.0,
        "pd_view.minute": "7",
        "chained.score": 250.0,
    }
    meta = {m["name"]: m for m in result["metadata"]["features"]}
    assert meta["ratio.big"]["dataType"] == {"type": "bool"}
    assert meta["ratio.seen_plus"]["dataType"] == {"type": "int64"}
    assert meta["ratio.amount_ratio"]["status"] == "PRESENT"
    assert meta["chained.score"]["effectiveTime"] == "2023-11-14T23:07:00.000Z"


def test_an_entity_without_history_gets_nulls_where_sql_says_so() -> None:
    result = server().get_features(
        "rt",
        "scoring",
        {"user_id": "carol"},
        request_context_map=CONTEXT,
        metadata_options={"includeServingStatus": True},
    )
    values = features(result)
    assert values["ratio.amount_ratio"] is None  # 50 / null
    assert values["ratio.big"] is False  # count 0: amount > 100
    assert values["py_view.mean_or_zero"] == 0.0 and values["py_view.quiet"] is True
    assert values["pd_view.amount_minus_mean"] is None
    assert values["chained.score"] == 100.0  # COALESCE(null ratio, 1.0)
    statuses = {m["name"]: m["status"] for m in result["metadata"]["features"]}
    assert statuses["ratio.amount_ratio"] == "MISSING_DATA" and statuses["ratio.big"] == "PRESENT"


def test_request_context_is_validated() -> None:
    fs = server()
    with pytest.raises(InvalidRequestError, match=r"requestContextMap is missing 'merchant'.*amount, merchant, "):
        fs.get_features("rt", "scoring", {"user_id": "alice"}, request_context_map={"amount": 1.0})
    with pytest.raises(InvalidRequestError, match="requestContextMap is required"):
        fs.get_features("rt", "scoring", {"user_id": "alice"})
    with pytest.raises(InvalidRequestError, match=r"requestContextMap.amount must be a float64 value, got 'x'"):
        fs.get_features("rt", "scoring", {"user_id": "alice"}, request_context_map={**CONTEXT, "amount": "x"})
    with pytest.raises(InvalidRequestError, match="joinKeyMap is missing join key 'user_id'"):
        fs.get_features("rt", "scoring", {}, request_context_map=CONTEXT)


def test_a_service_of_request_data_only_needs_no_join_keys() -> None:
    result = server().get_features(
        "rt", "no_keys", {}, request_context_map={"amount": 4, "merchant": "x", "channel_code": 1}
    )
    assert features(result) == {"request_only.doubled": 8.0}


def test_batch_and_metadata() -> None:
    fs = server()
    batch = fs.get_features_batch(
        "rt",
        "scoring",
        [{"user_id": "alice"}, {"user_id": "bob"}],
        request_context_maps=[CONTEXT, {**CONTEXT, "amount": 1.0}],
    )
    assert [row["features"][1] for row in batch["result"]] == [2.5, None]  # bob's only event is too old
    meta = fs.metadata("rt", "scoring")
    assert meta["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]
    assert meta["inputRequestContextKeys"] == [
        {"name": "amount", "dataType": {"type": "float64"}},
        {"name": "merchant", "dataType": {"type": "string"}},
        {"name": "channel_code", "dataType": {"type": "int64"}},
    ]


@pytest.fixture
def client() -> Iterator[TestClient]:
    keys = ApiKeyStore()
    keys.apply_record(hash_secret(KEY).encode(), ApiKey("r1", "rt", "reader").to_record())
    with TestClient(create_app(server(), keys)) as test_client:
        yield test_client


def test_http_request_context(client: TestClient) -> None:
    body = {
        "params": {
            "workspaceName": "rt",
            "featureServiceName": "scoring",
            "joinKeyMap": {"user_id": "alice"},
            "requestContextMap": CONTEXT,
        }
    }
    headers = {"Authorization": f"Tecton-key {KEY}"}
    response = client.post("/api/v1/feature-service/get-features", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["features"][1:3] == [2.5, True]
    body["params"]["requestContextMap"] = {"amount": 1.0}
    response = client.post("/api/v1/feature-service/get-features", json=body, headers=headers)
    assert response.status_code == 400
    assert "requestContextMap is missing 'merchant'" in response.json()["message"]
    batch = {
        "params": {
            "workspaceName": "rt",
            "featureServiceName": "scoring",
            "requestData": [{"joinKeyMap": {"user_id": "alice"}, "requestContextMap": CONTEXT}],
        }
    }
    response = client.post("/api/v1/feature-service/get-features-batch", json=batch, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"][0]["features"][1] == 2.5


@pytest.mark.parametrize(
    ("mode", "body", "message"),
    [
        ("python", "return {'a': 1}", r"returned keys \['a'\], but its features are \['x'\]"),
        ("python", "return {'x': 'text'}", "returned 'text' for feature 'x', which is declared int64"),
        ("python", "return [1]", "returned list; a python-mode view returns a dict"),
        ("python", "return 1 / 0", "raised ZeroDivisionError"),
        ("pandas", "return req", r"returned no column\(s\) \['x'\]"),
        ("pandas", "return pd.DataFrame({'x': [1, 2]})", "returned 2 rows for 1 input rows"),
        ("pandas", "return pd.DataFrame({'x': [1.5]})", "returned 1.5 for feature 'x', which is declared int64"),
    ],
)
def test_what_a_transformation_returns_is_checked(mode: str, body: str, message: str) -> None:
    from featurebus.schemas.specs import FieldSpec, RealtimeFeatureViewSpec, RealtimeInputSpec, TransformationSpec
    from featurebus.streams.realtime import CompiledRealtimeView, RealtimeEvaluationError

    spec = RealtimeFeatureViewSpec(
        "v",
        (RealtimeInputSpec("request", "req", (FieldSpec("amount", "float64"),), "req"),),
        (FieldSpec("x", "int64"),),
        mode,
        transformation=TransformationSpec(mode, "f", f"def f(req):\n    {body}\n"),
    )
    with pytest.raises(RealtimeEvaluationError, match=message):
        CompiledRealtimeView(spec).evaluate_row({"req": {"amount": 1.0}}, pd.Timestamp(0, tz="UTC").to_pydatetime())
