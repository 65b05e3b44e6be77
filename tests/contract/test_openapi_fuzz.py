"""Schemathesis fuzzes every operation of the served OpenAPI document against a live server on
loopback (ingestion included, over the in-memory sink): with a valid key, a wrong key and none.
Whatever is sent, the answer is never a 5xx, and every error is JSON with a ``"message"``.

Two documents are fuzzed: the one the server publishes, and the same with the workspace, feature
service, join key and push source pinned to ones that exist, so generated requests also get past
the lookups into the deeper validation (join keys, options, records).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.serving.main import wait_until_ready
from featurebus.serving.service import FeatureServer
from tests.support.push_repo import push_workspace
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_http import OTHER, READER, WRITER, _keys
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load

EXAMPLES_PER_OPERATION = 50
KEYS = {"writer": WRITER, "reader": READER, "other workspace": OTHER, "wrong": "fbk_wrong", "none": None}


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    spec = spending_workspace()
    pushable = push_workspace("pushes")
    specs = {"test": spec, "other": spending_workspace(name="other"), "pushes": pushable}
    store = MemoryStore()
    load(store, spec, EVENTS)
    ingest = IngestService(lambda: specs, MemoryRecordSink())
    app = create_app(FeatureServer(lambda: specs, store, Clock(BASE + HOUR)), _keys(), ingest=ingest)
    port = free_port_pair()[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, timeout_s=20)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def document(server_url: str) -> dict[str, Any]:
    response = httpx.get(f"{server_url}/openapi.json", headers={"Authorization": f"Bearer {READER}"})
    assert response.status_code == 200, response.text
    parsed: dict[str, Any] = response.json()
    return parsed


def _pinned(document: dict[str, Any]) -> dict[str, Any]:
    """The document with names pinned to existing objects (the fuzzer still varies the rest)."""
    pinned = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                for name, values in (
                    ("workspaceName", ["test"]),
                    ("featureServiceName", ["spending"]),
                    ("workspace_name", ["pushes"]),
                ):
                    if name in properties:
                        properties[name] = {"enum": values}
                if "joinKeyMap" in properties:
                    properties["joinKeyMap"] = {
                        "type": "object",
                        "required": ["user_id"],
                        "properties": {"user_id": {"type": "string"}},
                    }
                if "records" in properties and "workspace_name" in properties:
                    record = {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "user_id": {"type": ["string", "null"]},
                            "price": {"type": ["number", "null"]},
                            "quantity": {"type": ["integer", "null"]},
                            "ts": {"type": ["string", "number"]},
                        },
                    }
                    item = {"type": "object", "required": ["record"], "properties": {"record": record}}
                    properties["records"] = {
                        "type": "object",
                        "required": ["clicks"],
                        "additionalProperties": False,
                        "properties": {"clicks": {"type": "array", "items": item}},
                    }
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(pinned)
    return pinned


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]  # schemathesis: a list per header
        assert content_type[0].startswith("application/json"), where
        body = orjson.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], where


def _fuzz(url: str, document: dict[str, Any], on_case: Callable[[Any], None] | None = None) -> int:
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/v1/feature-service/get-features", "/ingest", "/metrics"}
    calls = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not len(operation.body):
                continue  # nothing to make invalid in a GET without parameters
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, key=st.sampled_from(sorted(KEYS)))
            def run(case: Any, key: str) -> None:
                nonlocal calls
                secret = KEYS[key]
                headers = {"Authorization": f"Tecton-key {secret}"} if secret else {}
                response = case.call(base_url=url, headers=headers)
                calls += 1
                _check(response, f"{case.method} {case.path} (key {key}): {case.body!r}"[:800])
                if on_case is not None:
                    on_case(response)

            run()
    return calls


def test_no_generated_request_gets_a_5xx_or_a_non_json_error(server_url: str, document: dict[str, Any]) -> None:
    assert _fuzz(server_url, document) > 0


def test_requests_that_name_real_objects_get_deep_and_still_no_5xx(server_url: str, document: dict[str, Any]) -> None:
    statuses: list[int] = []
    _fuzz(server_url, _pinned(document), lambda response: statuses.append(response.status_code))
    # Pinned names make some generated requests valid end to end: the fuzzer reached the service.
    assert 200 in statuses and 400 in statuses
