"""Schemathesis fuzzes every operation of the control plane's OpenAPI document against a live
server on loopback (over the in-memory registry and audit log), with the admin's key, a
consumer's, a wrong one and none: never a 5xx, and every error is JSON with a ``"message"``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
from featurebus.serving.control.app import create_control_app
from tests.support.control import ControlFixture, control_fixture

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ControlFixture]]:
    fixture = control_fixture()
    port = free_port_pair()[0]
    server = uvicorn.Server(
        uvicorn.Config(create_control_app(fixture.plane), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        for _ in range(200):
            try:
                if client.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                threading.Event().wait(0.05)
    yield url, fixture
    server.should_exit = True
    thread.join(10)


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/json"), where
        body = orjson.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], where


def test_no_generated_request_gets_a_5xx_or_a_non_json_error(served: tuple[str, ControlFixture]) -> None:
    url, fixture = served
    document = httpx.get(f"{url}/openapi.json").json()
    assert document["components"]["securitySchemes"]["TectonKey"]["name"] == "Authorization"
    keys = {
        "admin": fixture.secrets["admin"],
        "consumer": fixture.secrets["p-consumer"],
        "wrong": "fbk_wrong",
        "none": None,
    }
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/workspaces", "/v1/workspaces/{workspace}/apply", "/v1/audit"}
    statuses: set[int] = set()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not len(operation.body) and not operation.query:
                continue

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), key=st.sampled_from(sorted(keys)))
            def run(case: Any, key: str) -> None:
                secret = keys[key]
                headers = {"Authorization": f"Bearer {secret}"} if secret else {}
                response = case.call(base_url=url, headers=headers)
                statuses.add(response.status_code)
                _check(response, f"{case.method} {case.path} (key {key}): {case.body!r}"[:800])

            run()
    assert {200, 400, 401, 403} <= statuses
