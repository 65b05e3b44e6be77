"""The serving HTTP API over an in-memory store: auth, Tecton request shapes, JSON errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from featurebus.platform.access.roles import Action
from featurebus.platform.api_keys import ApiKey, ApiKeyStore, hash_secret
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.service import FeatureServer
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load

READER, WRITER, OTHER = "fbk_reader-secret", "fbk_writer-secret", "fbk_other-workspace"
URL = "/api/v1/feature-service/get-features"


def _keys() -> ApiKeyStore:
    keys = ApiKeyStore()
    for secret, key_id, workspace, role in [
        (READER, "r1", "test", "reader"),
        (WRITER, "w1", "test", "writer"),
        (OTHER, "o1", "other", "admin"),
    ]:
        keys.apply_record(hash_secret(secret).encode(), ApiKey(key_id, workspace, role).to_record())
    return keys


@pytest.fixture
def client() -> Iterator[TestClient]:
    spec = spending_workspace()
    store = MemoryStore()
    load(store, spec, EVENTS)
    specs = {"test": spec, "other": spending_workspace(name="other")}
    app = create_app(FeatureServer(lambda: specs, store, Clock(BASE + HOUR)), _keys())
    with TestClient(app) as test_client:
        yield test_client


def _body(**params: Any) -> dict[str, Any]:
    return {
        "params": {
            "workspaceName": "test",
            "featureServiceName": "spending",
            "joinKeyMap": {"user_id": "alice"},
            **params,
        }
    }


def _auth(secret: str, scheme: str = "Tecton-key") -> dict[str, str]:
    return {"Authorization": f"{scheme} {secret}"}


def test_get_features_with_a_reader_key(client: TestClient) -> None:
    response = client.post(URL, json=_body(metadataOptions={"includeDataTypes": True}), headers=_auth(READER))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["result"]["features"] == ["1", 30.0, 30.0, "3", 60.0, 20.0]
    assert payload["metadata"]["features"][0] == {
        "name": "user_spending.amount_count_1m_continuous",
        "dataType": {"type": "int64"},
    }


def test_bearer_and_higher_roles_work(client: TestClient) -> None:
    assert client.post(URL, json=_body(), headers=_auth(WRITER, "Bearer")).status_code == 200


def test_snake_case_params_are_accepted(client: TestClient) -> None:
    body = {
        "params": {
            "workspace_name": "test",
            "feature_service_name": "spending",
            "join_key_map": {"user_id": "alice"},
            "metadata_options": {"include_serving_status": True},
        }
    }
    response = client.post(URL, json=body, headers=_auth(READER))
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["features"][0]["status"] == "PRESENT"


@pytest.mark.parametrize(
    ("headers", "status", "code", "hint"),
    [
        ({}, 401, "UNAUTHENTICATED", "Tecton-key <key>"),
        (_auth("fbk_unknown"), 401, "UNAUTHENTICATED", "unknown or revoked"),
        ({"Authorization": READER}, 401, "UNAUTHENTICATED", "Bearer <key>"),
        (_auth(OTHER), 403, "PERMISSION_DENIED", "scoped to workspace 'other'"),
    ],
)
def test_auth_failures_are_json_with_a_message(
    client: TestClient, headers: dict[str, str], status: int, code: str, hint: str
) -> None:
    response = client.post(URL, json=_body(), headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert hint in response.json()["message"]


def test_request_errors_are_json_with_a_message(client: TestClient) -> None:
    cases: list[tuple[bytes, int, str]] = [
        (b"not json", 400, "not valid JSON"),
        (b"[]", 400, '{"params"'),
        (orjson.dumps({"params": {"workspaceName": "test"}}), 400, "featureServiceName is required"),
        (orjson.dumps(_body(joinKeyMap={"uid": "x"})), 400, "missing join key 'user_id'"),
        (orjson.dumps(_body(featureServiceName="nope")), 404, "known: spending"),
    ]
    for body, status, fragment in cases:
        response = client.post(URL, content=body, headers=_auth(READER))
        assert response.status_code == status, (body, response.text)
        assert fragment in response.json()["message"], response.text


def test_unknown_routes_are_json_too(client: TestClient) -> None:
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert "message" in response.json()


def test_batch_and_metadata(client: TestClient) -> None:
    body = {
        "params": {
            "workspaceName": "test",
            "featureServiceName": "spending",
            "requestData": [{"joinKeyMap": {"user_id": "alice"}}, {"joinKeyMap": {"user_id": "bob"}}],
        }
    }
    batch = client.post("/api/v1/feature-service/get-features-batch", json=body, headers=_auth(READER))
    assert batch.status_code == 200, batch.text
    assert [row["features"][3] for row in batch.json()["result"]] == ["3", "1"]
    bad = {"params": {**body["params"], "requestData": [{"user_id": "alice"}]}}
    response = client.post("/api/v1/feature-service/get-features-batch", json=bad, headers=_auth(READER))
    assert response.status_code == 400
    assert "requestData[0].joinKeyMap" in response.json()["message"]
    meta = client.post("/api/v1/feature-service/metadata", json=_body(), headers=_auth(READER))
    assert meta.json()["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]


def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200


def test_metrics_need_a_key_and_count_requests(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    client.post(URL, json=_body(), headers=_auth(READER))
    client.post(URL, json=_body(), headers=_auth(OTHER))
    metrics = client.get("/metrics", headers=_auth(READER, "Bearer"))
    assert metrics.status_code == 200
    assert 'featurebus_serving_request_seconds_count{endpoint="get-features",feature_service="spending"' in metrics.text
    assert 'featurebus_serving_auth_failures_total{code="PERMISSION_DENIED"}' in metrics.text


def test_openapi_document_needs_a_key_and_lists_the_routes(client: TestClient) -> None:
    denied = client.get("/openapi.json")
    assert denied.status_code == 401 and "message" in denied.json()
    assert client.get("/docs").status_code == 404  # the Swagger page cannot send a key: not served
    paths = client.get("/openapi.json", headers=_auth(READER)).json()["paths"]
    assert {"/api/v1/feature-service/get-features", "/health", "/ready", "/metrics"} <= set(paths)
    assert "/openapi.json" not in paths
    # The documented bodies are Tecton's, so generated clients and the fuzz test send real requests.
    body = paths["/api/v1/feature-service/get-features"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    params = body["properties"]["params"]
    assert {
        "workspaceName",
        "featureServiceName",
        "joinKeyMap",
        "metadataOptions",
        "requestOptions",
        "allowPartialResults",
    } <= set(params["properties"])
    assert "includeSloInfo" in params["properties"]["metadataOptions"]["properties"]
    assert paths["/api/v1/feature-service/get-features"]["post"]["responses"]["401"]["content"]["application/json"][
        "schema"
    ]["required"] == ["message", "code"]
    assert paths["/health"]["get"]["security"] == [] and paths["/metrics"]["get"]["security"] == [{"TectonKey": []}]


def test_roles_are_ordered_and_revocation_applies() -> None:
    from featurebus.exceptions import AuthenticationError, PermissionDeniedError

    keys = _keys()
    writer, reader = f"Bearer {WRITER}", f"Tecton-key {READER}"
    assert keys.authorize(writer, "test", Action.INGEST).key_id == "w1"
    assert keys.authorize(writer, "test", Action.READ_ONLINE).key_id == "w1"
    with pytest.raises(PermissionDeniedError, match="needs 'editor'"):
        keys.authorize(reader, "test", Action.INGEST)
    with pytest.raises(PermissionDeniedError):
        keys.authorize(writer, "test", Action.DELETE_WORKSPACE)
    keys.apply_record(hash_secret(READER).encode(), None)  # the revocation tombstone
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.authorize(reader, "test", Action.READ_ONLINE)
    keys.apply_record(b"garbage", b"{not json")  # skipped, never fatal
    assert len(keys) == 2


def test_oversized_bodies_are_refused_with_413_json(client: TestClient) -> None:
    from featurebus.serving.http import MAX_BODY_BYTES

    response = client.post(URL, content=b" " * (MAX_BODY_BYTES + 1), headers=_auth(READER))
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE" and "limit" in response.json()["message"]


def test_every_request_leaves_one_json_access_line_without_the_key(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="featurebus.access"):
        client.post(URL, json=_body(), headers=_auth(READER))
        client.get("/health")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "featurebus.access"]
    assert [(line["path"], line["status"]) for line in lines] == [(URL, 200), ("/health", 200)]
    assert all(line["duration_ms"] >= 0 for line in lines)
    assert READER not in caplog.text


def test_failed_and_forbidden_auth_are_counted_by_reason(client: TestClient) -> None:
    from prometheus_client import REGISTRY

    def count(code: str) -> float:
        return REGISTRY.get_sample_value("featurebus_serving_auth_failures_total", {"code": code}) or 0.0

    before = {code: count(code) for code in ("UNAUTHENTICATED", "PERMISSION_DENIED")}
    client.post(URL, json=_body())  # no key
    client.post(URL, json=_body(), headers=_auth("fbk_unknown"))  # a wrong key
    client.get("/metrics", headers=_auth("fbk_unknown"))
    client.post(URL, json=_body(), headers=_auth(OTHER))  # a key of another workspace
    client.post(URL, json=_body(), headers=_auth(READER))  # allowed: not counted
    assert count("UNAUTHENTICATED") - before["UNAUTHENTICATED"] == 3
    assert count("PERMISSION_DENIED") - before["PERMISSION_DENIED"] == 1
    text = client.get("/metrics", headers=_auth(READER)).text
    assert 'featurebus_serving_auth_failures_total{code="UNAUTHENTICATED"}' in text


def test_slo_info_descriptions_and_tags_in_snake_case_and_for_batches(client: TestClient) -> None:
    body = {
        "params": {
            "workspace_name": "test",
            "feature_service_name": "spending",
            "join_key_map": {"user_id": "alice"},
            "allow_partial_results": False,
            "request_options": {"read_from_cache": True, "latency_budget_ms": 150},
            "metadata_options": {
                "include_slo_info": True,
                "include_feature_descriptions": True,
                "include_feature_tags": True,
            },
        }
    }
    metadata = client.post(URL, json=body, headers=_auth(READER)).json()["metadata"]
    assert metadata["sloInfo"]["sloEligible"] is True and metadata["sloInfo"]["serverTimeSeconds"] > 0
    assert set(metadata["sloInfo"]) == {"sloEligible", "sloServerTimeSeconds", "serverTimeSeconds", "storeMaxLatency"}
    assert metadata["features"][0] == {
        "name": "user_spending.amount_count_1m_continuous",
        "description": "",
        "tags": {},
    }
    batch = {
        "params": {
            "workspaceName": "test",
            "featureServiceName": "spending",
            "requestData": [{"joinKeyMap": {"user_id": "alice"}}, {"joinKeyMap": {"user_id": "bob"}}],
            "metadataOptions": {"includeSloInfo": True, "includeServingStatus": True},
        }
    }
    answer = client.post("/api/v1/feature-service/get-features-batch", json=batch, headers=_auth(READER)).json()
    assert answer["metadata"]["sloInfo"]["sloEligible"] is True
    assert [row["metadata"]["features"][0]["status"] for row in answer["result"]] == ["PRESENT", "MISSING_DATA"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"metadataOptions": {"includeSloInfo": "yes"}}, "metadataOptions.includeSloInfo must be true or false"),
        ({"metadataOptions": ["includeNames"]}, "metadataOptions must be an object"),
        ({"allowPartialResults": 1}, "allowPartialResults must be true or false"),
        ({"requestOptions": {"readFromCash": True}}, "readFromCash is not a request option; known: readFromCache"),
        ({"requestOptions": {"latencyBudgetMs": True}}, "latencyBudgetMs must be an integer"),
        ({"requestOptions": {"latencyBudgetMs": -1}}, "must not be negative"),
        ({"requestOptions": {"writeToCache": 0}}, "writeToCache must be true or false"),
        ({"requestOptions": "fast"}, "requestOptions must be an object"),
    ],
)
def test_bad_options_are_400_naming_the_option(client: TestClient, params: dict[str, Any], fragment: str) -> None:
    response = client.post(URL, json=_body(**params), headers=_auth(READER))
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]
