"""A real serving process for hostile-client tests: uvicorn with featurebus's connection guard on a
local port, in a thread of the test process, over an in-memory store and in-memory keys (the
HTTP behaviour under test needs no broker)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pytest
import uvicorn

from featurebus.platform.access.records import ApiKey, Principal, PrincipalKind, principal_key
from featurebus.platform.api_keys import ApiKeyStore, hash_secret
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.connection_guard import guarded_protocol
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.serving.limits import ServingLimits
from featurebus.serving.service import FeatureServer
from tests.support.push_repo import push_workspace
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load

READER, WRITER, OTHER, ADMIN = "fbk_reader-secret", "fbk_writer-secret", "fbk_other-workspace", "fbk_instance-admin"
PUSH_WRITER = "fbk_push-writer"  # a writer of the "pushes" workspace, whose push source is "clicks"

# Short enough for fast tests, long enough that a loaded machine does not trip them by accident.
TEST_LIMITS = ServingLimits(
    header_timeout_s=1.0,
    body_timeout_s=1.0,
    idle_timeout_s=1,
    max_connections=16,
    max_body_bytes=64 * 1024,
    max_batch_rows=10,
    max_ingest_records=5,
)


def security_keys() -> ApiKeyStore:
    """Keys as an earlier release wrote them (format 1: one workspace, one role each), and one key
    of a principal holding the instance admin role."""
    keys = ApiKeyStore()
    for secret, key_id, workspace, role in [
        (READER, "r1", "test", "reader"),
        (WRITER, "w1", "test", "writer"),
        (OTHER, "o1", "other", "admin"),
        (PUSH_WRITER, "p1", "pushes", "writer"),
    ]:
        record = {"version": 1, "key_id": key_id, "workspace": workspace, "role": role, "description": ""}
        keys.apply_record(hash_secret(secret).encode(), orjson.dumps(record))
    keys.apply_record(principal_key("ops"), Principal("ops", PrincipalKind.SERVICE_ACCOUNT, admin=True).to_record())
    keys.apply_record(hash_secret(ADMIN).encode(), ApiKey("a1", "ops").to_record())
    return keys


@dataclass
class Running:
    port: int
    sink: MemoryRecordSink

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def read_until_closed(sock: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - started


@pytest.fixture
def serving() -> Iterator[Callable[..., Running]]:
    """Start a server (``limits`` default to ``TEST_LIMITS``); stopped after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(limits: ServingLimits = TEST_LIMITS) -> Running:
        spec, push = spending_workspace(), push_workspace("pushes")
        store = MemoryStore()
        load(store, spec, EVENTS)
        specs = {"test": spec, "other": spending_workspace(name="other"), "pushes": push}
        sink = MemoryRecordSink()
        app = create_app(
            FeatureServer(lambda: specs, store, Clock(BASE + HOUR)),
            security_keys(),
            ingest=IngestService(lambda: specs, sink),
            limits=limits,
        )
        port = free_port_pair()[0]
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                http=guarded_protocol(limits),
                timeout_keep_alive=limits.idle_timeout_s,
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)
        return Running(port, sink)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
