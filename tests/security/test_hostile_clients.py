"""Hostile HTTP clients against a real serving process (issue #13 item 4): every keyed route is
admitted from its headers before its body is read; slow, silent and oversized requests are cut off
with JSON errors; batch and ingest sizes are bounded; ``/metrics`` shows a caller only its own
workspace unless it is an instance admin."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.connection_guard import MAX_HEADER_BYTES
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.serving.online_materializer import OnlineMaterializer
from featurebus.serving.service import FeatureServer
from tests.security.conftest import (
    ADMIN,
    OTHER,
    PUSH_WRITER,
    READER,
    TEST_LIMITS,
    WRITER,
    Running,
    read_until_closed,
    security_keys,
)
from tests.support.specs import spending_workspace

FEATURES = "/api/v1/feature-service/get-features"
BATCH = "/api/v1/feature-service/get-features-batch"
METADATA = "/api/v1/feature-service/metadata"
GOOD_CLICK = {"user_id": "u1", "price": 9.5, "quantity": 2, "ts": "2026-11-26T10:00:00.250Z"}


def _lookup(workspace: str = "test", **params: Any) -> dict[str, Any]:
    return {
        "params": {
            "workspaceName": workspace,
            "featureServiceName": "spending",
            "joinKeyMap": {"user_id": "alice"},
            **params,
        }
    }


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Tecton-key {secret}"}


def _status_and_json(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


KEYED_REQUESTS = [
    ("POST", FEATURES, _lookup()),
    (
        "POST",
        BATCH,
        {
            "params": {
                "workspaceName": "test",
                "featureServiceName": "spending",
                "requestData": [{"joinKeyMap": {"user_id": "alice"}}],
            }
        },
    ),
    ("POST", METADATA, {"params": {"workspaceName": "test", "featureServiceName": "spending"}}),
    ("POST", "/ingest", {"workspace_name": "pushes", "records": {"clicks": [{"record": GOOD_CLICK}]}}),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), KEYED_REQUESTS)
def test_no_key_and_unknown_keys_get_401_json(
    serving: Callable[..., Running], method: str, path: str, body: Any
) -> None:
    server = serving()
    for headers in ({}, _auth("fbk_unknown"), {"Authorization": "Basic abc"}):
        response = httpx.request(method, server.url + path, json=body, headers=headers, timeout=10)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["message"]
    assert server.sink.records == []


def test_a_key_of_another_workspace_gets_403_naming_the_workspace(serving: Callable[..., Running]) -> None:
    server = serving()
    for path, body in [(FEATURES, _lookup()), ("/ingest", {"workspace_name": "test", "records": {}})]:
        response = httpx.post(server.url + path, json=body, headers=_auth(OTHER), timeout=10)
        assert response.status_code == 403, response.text
        assert "'other'" in response.json()["message"]


def test_a_reader_may_not_ingest_and_a_writer_of_another_workspace_may_not_either(
    serving: Callable[..., Running],
) -> None:
    server = serving()
    body = {"workspace_name": "pushes", "records": {"clicks": [{"record": GOOD_CLICK}]}}
    for secret in (READER, WRITER):
        response = httpx.post(server.url + "/ingest", json=body, headers=_auth(secret), timeout=10)
        assert response.status_code == 403, response.text
    assert server.sink.records == []
    ok = httpx.post(server.url + "/ingest", json=body, headers=_auth(PUSH_WRITER), timeout=10)
    assert ok.status_code == 200, ok.text
    assert len(server.sink.records) == 1


@pytest.mark.parametrize("path", [FEATURES, "/ingest"])
def test_a_keyless_request_is_refused_from_its_headers_without_waiting_for_its_body(
    serving: Callable[..., Running], path: str
) -> None:
    server = serving()
    with server.connect() as sock:
        # Announce 7.5 MB and send none of it: the answer must not wait for the body.
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {7_500_000}\r\n\r\n".encode()
        )
        sock.settimeout(TEST_LIMITS.body_timeout_s / 2)
        answer = sock.recv(65536)
    status, body = _status_and_json(answer)
    assert status == 401 and "API key" in body["message"]


def test_oversized_bodies_get_413_declared_or_streamed(serving: Callable[..., Running]) -> None:
    server = serving()
    big = b'{"params": {"pad": "' + b"x" * (TEST_LIMITS.max_body_bytes + 10) + b'"}}'
    declared = httpx.post(server.url + FEATURES, content=big, headers=_auth(READER), timeout=10)
    assert declared.status_code == 413 and str(TEST_LIMITS.max_body_bytes) in declared.json()["message"]

    def chunks() -> Any:  # no content-length: counted while it streams in
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = httpx.post(server.url + FEATURES, content=chunks(), headers=_auth(READER), timeout=10)
    assert streamed.status_code == 413 and streamed.json()["message"]


def test_a_slow_body_is_cut_off_with_408(serving: Callable[..., Running]) -> None:
    server = serving()
    body = orjson.dumps(_lookup())
    with server.connect() as sock:
        sock.sendall(
            f"POST {FEATURES} HTTP/1.1\r\nhost: x\r\nauthorization: Tecton-key {READER}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.25)
        for byte in body:  # a byte every 0.25 s: the whole body would take far longer than allowed
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        rest, _ = read_until_closed(sock, 5)
        answer += rest
    elapsed = time.monotonic() - started
    status, payload = _status_and_json(answer)
    assert status == 408 and "body" in payload["message"]
    assert elapsed < TEST_LIMITS.body_timeout_s + 2


def test_slow_headers_are_cut_off_with_408(serving: Callable[..., Running]) -> None:
    server = serving()
    with server.connect() as sock:
        sock.sendall(b"POST /api/v1/feature-service/get-features HTTP/1.1\r\nhost: x\r\n")  # never finished
        answer, took_s = read_until_closed(sock, 10)
    status, payload = _status_and_json(answer)
    assert status == 408 and "headers" in payload["message"]
    assert took_s < TEST_LIMITS.header_timeout_s + 2


def test_silent_and_idle_connections_are_closed(serving: Callable[..., Running]) -> None:
    server = serving()
    silent = [server.connect() for _ in range(5)]  # open, never send a byte
    for sock in silent:
        answer, took_s = read_until_closed(sock, 10)
        assert answer.startswith(b"HTTP/1.1 408") and took_s < TEST_LIMITS.header_timeout_s + 2
        sock.close()
    with server.connect() as sock:  # one request, then idle on a keep-alive connection
        body = orjson.dumps(_lookup())
        sock.sendall(
            f"POST {FEATURES} HTTP/1.1\r\nhost: x\r\nauthorization: Tecton-key {READER}\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer, took_s = read_until_closed(sock, 10)
    assert answer.startswith(b"HTTP/1.1 200")
    assert took_s < TEST_LIMITS.idle_timeout_s + 2


def test_connections_beyond_the_limit_get_503_json_and_are_closed(serving: Callable[..., Running]) -> None:
    limits = TEST_LIMITS.__class__(**{**TEST_LIMITS.__dict__, "header_timeout_s": 10.0, "max_connections": 8})
    server = serving(limits)
    held = [server.connect() for _ in range(limits.max_connections)]
    try:
        time.sleep(0.2)  # every one accepted
        with server.connect() as extra:
            answer, _ = read_until_closed(extra, 5)
        status, payload = _status_and_json(answer)
        assert status == 503 and b"retry-after: 1" in answer.lower() and "8 connections" in payload["message"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)  # the held ones are gone: a new connection is served again
    ok = httpx.post(server.url + FEATURES, json=_lookup(), headers=_auth(READER), timeout=10)
    assert ok.status_code == 200, ok.text


def test_headers_beyond_the_limit_get_431(serving: Callable[..., Running]) -> None:
    server = serving()
    with server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-pad: ")
        try:
            for _ in range(4 * MAX_HEADER_BYTES // 16384):  # a header that never ends, in pieces
                sock.sendall(b"a" * 16384)
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us: the answer is already in the receive buffer
        answer, _ = read_until_closed(sock, 10)
    status, payload = _status_and_json(answer)
    assert status == 431 and payload["message"]


def test_batch_rows_beyond_the_limit_get_413_naming_it(serving: Callable[..., Running]) -> None:
    server = serving()

    def batch(rows: int) -> httpx.Response:
        body = {
            "params": {
                "workspaceName": "test",
                "featureServiceName": "spending",
                "requestData": [{"joinKeyMap": {"user_id": f"u{i}"}} for i in range(rows)],
            }
        }
        return httpx.post(server.url + BATCH, json=body, headers=_auth(READER), timeout=10)

    assert batch(TEST_LIMITS.max_batch_rows).status_code == 200
    refused = batch(TEST_LIMITS.max_batch_rows + 1)
    assert refused.status_code == 413
    assert f"at most {TEST_LIMITS.max_batch_rows}" in refused.json()["message"]


def test_ingest_records_beyond_the_limit_get_400_and_nothing_is_written(serving: Callable[..., Running]) -> None:
    server = serving()
    records = [{"record": GOOD_CLICK}] * (TEST_LIMITS.max_ingest_records + 1)
    response = httpx.post(
        server.url + "/ingest",
        json={"workspace_name": "pushes", "records": {"clicks": records}},
        headers=_auth(PUSH_WRITER),
        timeout=10,
    )
    assert response.status_code == 400 and f"at most {TEST_LIMITS.max_ingest_records}" in response.json()["message"]
    assert server.sink.records == []


def test_metrics_show_a_caller_only_its_workspace_unless_it_is_an_instance_admin(
    serving: Callable[..., Running],
) -> None:
    server = serving()
    for workspace, secret in (("test", READER), ("other", OTHER)):
        assert (
            httpx.post(server.url + FEATURES, json=_lookup(workspace), headers=_auth(secret), timeout=10).status_code
            == 200
        )
    reader = httpx.get(server.url + "/metrics", headers=_auth(READER), timeout=10)
    assert reader.status_code == 200
    assert 'workspace="test"' in reader.text and 'workspace="other"' not in reader.text
    assert "process_" in reader.text or "python_" in reader.text  # series of no workspace stay visible
    admin = httpx.get(server.url + "/metrics", headers=_auth(ADMIN), timeout=10)
    assert 'workspace="test"' in admin.text and 'workspace="other"' in admin.text
    # The instance admin may also act in any workspace.
    assert httpx.post(server.url + FEATURES, json=_lookup("other"), headers=_auth(ADMIN), timeout=10).status_code == 200


def test_a_process_that_has_not_caught_up_answers_503_with_retry_after_even_to_valid_keys() -> None:
    from fastapi.testclient import TestClient

    keys = security_keys()
    store = MemoryStore()
    # A real materializer, never started: it has not caught up, as at the start of every process.
    materializer = OnlineMaterializer("127.0.0.1:1", store, ApiKeyStore())
    spec = spending_workspace()
    app = create_app(
        FeatureServer(lambda: {"test": spec}, store, lambda: 0),
        keys,
        materializer,
        ingest=IngestService(lambda: {"test": spec}, MemoryRecordSink()),
    )
    with TestClient(app) as client:
        for method, path, body in KEYED_REQUESTS:
            response = client.request(method, path, json=body, headers=_auth(ADMIN))
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "1"
            assert "caught up" in response.json()["message"] or "catching up" in response.json()["message"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1" and ready.json()["message"]
        assert client.get("/health").status_code == 200
