"""No serving process answers from a partial state (issue #13 item 3), against a real broker.

A client hammers a ``featurebus serve`` from the moment it accepts connections. Every answer must
be either a 503 with ``Retry-After`` and a message (still catching up) or a 200 with the complete
counts: never a 401 for a valid key (API keys not read yet) nor a count from a copy that is still
rebuilding (a fresh store) or resuming (a restart after SIGKILL, with records produced meanwhile).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import ensure_topic
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.topics import REGISTRY_TOPIC, feature_topic
from featurebus.platform.registry import KafkaRegistry
from featurebus.schemas.encoding import encode_entity_key, encode_partials, tile_key
from featurebus.serving.main import wait_until_ready
from tests.integration.test_serving_processes import Serve
from tests.support.specs import MINUTE, spending_workspace

VIEW = "user_spending"
USERS = 40
FILLER = 60_000  # other entities' tiles: enough that catching up takes a noticeable while
COUNT_1H = 3  # index of amount_count_1h_continuous among the served features


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        server = Serve(list(args), tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


class Workspace:
    """A workspace whose feature topic holds ``tiles_per_user`` tiles per user (each counted once
    in the 1 h window) among many other entities' tiles, and a reader key created last."""

    def __init__(self, bootstrap: str, topic_factory: Callable[..., str]) -> None:
        self.bootstrap = bootstrap
        self.name = f"catchup{uuid.uuid4().hex[:10]}"
        self.topic = topic_factory(partitions=2, compacted=True, name=feature_topic(self.name, VIEW))
        self.start_ms = time.time_ns() // 1_000_000 - 30 * MINUTE
        self.tiles_per_user = 0
        ensure_topic(bootstrap, REGISTRY_TOPIC, compacted=True)
        with reliable_producer(bootstrap) as producer:
            producer.produce(REGISTRY_TOPIC, key=self.name.encode(), value=spending_workspace(name=self.name).to_json())
        self.add_tiles()
        _, self.secret = create_api_key(KafkaRegistry(bootstrap), self.name, "reader", "catch-up test")

    def add_tiles(self) -> None:
        """One more tile per user (a later start, so the count grows by one), behind the filler."""
        batch = self.tiles_per_user
        with reliable_producer(self.bootstrap) as producer:
            for i in range(FILLER):
                producer.produce(
                    self.topic,
                    key=tile_key(encode_entity_key([f"filler{batch}-{i}"]), self.start_ms),
                    value=encode_partials([1, 1.0, [1.0, 1]] * 2),
                    partition=i % 2,
                )
                if i % 10_000 == 0:
                    producer.poll(0)
            for i in range(USERS):
                producer.produce(
                    self.topic,
                    key=tile_key(encode_entity_key([f"u{i}"]), self.start_ms + batch * 1000 + i),
                    value=encode_partials([1, float(i), [float(i), 1]] * 2),
                    partition=i % 2,
                )
        self.tiles_per_user += 1

    def hammer(self, url: str, complete_answers: int = 30, timeout_s: float = 180) -> dict[int, int]:
        """Batch lookups of every user from before the server listens until ``complete_answers``
        200s; fails on any answer that is neither a clean 503 nor complete. Returns the count of
        each status seen."""
        body = {
            "params": {
                "workspaceName": self.name,
                "featureServiceName": "spending",
                "requestData": [{"joinKeyMap": {"user_id": f"u{i}"}} for i in range(USERS)],
            }
        }
        headers = {"Authorization": f"Tecton-key {self.secret}"}
        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10) as client:
            while seen.get(200, 0) < complete_answers:
                assert time.monotonic() < deadline, (
                    f"no {complete_answers} complete answers within {timeout_s} s: {seen}"
                )
                try:
                    response = client.post(
                        f"{url}/api/v1/feature-service/get-features-batch", json=body, headers=headers
                    )
                except httpx.TransportError:
                    time.sleep(0.002)  # not listening yet
                    continue
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                if response.status_code == 503:
                    assert response.headers.get("retry-after") and response.json()["message"], response.text
                    continue
                assert response.status_code == 200, (
                    f"answered {response.status_code} before catching up: {response.text}"
                )
                counts = [row["features"][COUNT_1H] for row in response.json()["result"]]
                assert counts == [str(self.tiles_per_user)] * USERS, f"served partial counts {counts} (after {seen})"
        return seen


def test_a_fresh_process_on_an_empty_store_answers_only_once_caught_up(
    kafka_bootstrap: str, topic_factory: Callable[..., str], serve: Callable[..., Serve], tmp_path: Path
) -> None:
    workspace = Workspace(kafka_bootstrap, topic_factory)
    port = free_port_pair()[0]
    server = serve("--port", str(port), "--home", str(tmp_path / "home"), "--bootstrap", kafka_bootstrap)
    seen = workspace.hammer(f"http://127.0.0.1:{port}")
    assert server.process.poll() is None, server.log()
    assert 200 in seen


def test_a_process_restarted_after_sigkill_answers_only_once_caught_up_again(
    kafka_bootstrap: str, topic_factory: Callable[..., str], serve: Callable[..., Serve], tmp_path: Path
) -> None:
    workspace = Workspace(kafka_bootstrap, topic_factory)
    port = free_port_pair()[0]
    url = f"http://127.0.0.1:{port}"
    args = ("--port", str(port), "--home", str(tmp_path / "home"), "--bootstrap", kafka_bootstrap)
    first = serve(*args)
    wait_until_ready(url, timeout_s=120)
    workspace.hammer(url, complete_answers=3)

    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    workspace.add_tiles()  # while it is down: the restarted copy must catch up before answering

    second = serve(*args)
    seen = workspace.hammer(url)
    assert second.process.poll() is None, second.log()
    assert 200 in seen
