"""The feature lookups are answered straight from ASGI; the FastAPI routes behind them (which
document the endpoints in the OpenAPI schema) must give byte-identical answers and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.errors import install_error_handlers
from featurebus.serving.limits import ServingLimits
from featurebus.serving.readiness import Admission, Readiness
from featurebus.serving.routes_features import PREFIX, FeatureEndpoints, features_router
from featurebus.serving.service import FeatureServer
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_http import OTHER, READER, _keys
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load


@pytest.fixture
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    spec = spending_workspace()
    store = MemoryStore()
    load(store, spec, EVENTS)
    server = FeatureServer(lambda: {"test": spec}, store, Clock(BASE + HOUR))
    keys = _keys()
    plain = FastAPI()
    install_error_handlers(plain)
    limits = ServingLimits()
    plain.include_router(
        features_router(FeatureEndpoints(server, keys, limits), Admission(Readiness(None), keys), limits)
    )
    with TestClient(create_app(server, keys)) as fast, TestClient(plain) as slow:
        yield fast, slow


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        (
            "/get-features",
            {
                "params": {
                    "workspaceName": "test",
                    "featureServiceName": "spending",
                    "joinKeyMap": {"user_id": "alice"},
                    "metadataOptions": {"includeServingStatus": True},
                }
            },
            READER,
        ),
        (
            "/get-features-batch",
            {
                "params": {
                    "workspaceName": "test",
                    "featureServiceName": "spending",
                    "requestData": [{"joinKeyMap": {"user_id": "alice"}}, {"joinKeyMap": {"user_id": "nobody"}}],
                }
            },
            READER,
        ),
        ("/metadata", {"params": {"workspaceName": "test", "featureServiceName": "spending"}}, READER),
        (
            "/get-features",
            {"params": {"workspaceName": "test", "featureServiceName": "nope", "joinKeyMap": {"user_id": "alice"}}},
            READER,
        ),
        ("/get-features", {"params": {"workspaceName": "test", "featureServiceName": "spending"}}, READER),
        (
            "/get-features",
            {"params": {"workspaceName": "test", "featureServiceName": "spending", "joinKeyMap": {"user_id": "alice"}}},
            OTHER,
        ),
        (
            "/get-features",
            {"params": {"workspaceName": "test", "featureServiceName": "spending", "joinKeyMap": {"user_id": "alice"}}},
            "fbk_unknown",
        ),
    ],
)
def test_fast_path_and_fastapi_routes_answer_alike(
    clients: tuple[TestClient, TestClient], path: str, body: dict[str, object], secret: str
) -> None:
    fast, slow = clients
    headers = {"Authorization": f"Tecton-key {secret}"}
    a = fast.post(PREFIX + path, json=body, headers=headers)
    b = slow.post(PREFIX + path, json=body, headers=headers)
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert a.headers["content-type"] == "application/json"
    if a.status_code != 200:
        assert a.json()["message"]


def test_invalid_json_is_a_400_with_a_message(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    response = fast.post(
        PREFIX + "/get-features", content=b"{not json", headers={"Authorization": f"Tecton-key {READER}"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_the_openapi_document_still_lists_the_lookups(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    paths = fast.get("/openapi.json", headers={"Authorization": f"Tecton-key {READER}"}).json()["paths"]
    assert {PREFIX + p for p in ("/get-features", "/get-features-batch", "/metadata")} <= set(paths)
    assert "requestBody" in paths[PREFIX + "/get-features"]["post"]


def test_other_methods_on_a_lookup_path_go_to_fastapi(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    response = fast.get(PREFIX + "/get-features")
    assert response.status_code == 405 and response.json()["code"] == "METHOD_NOT_ALLOWED"
