"""Several serving processes against a real broker: ``featurebus serve --workers 2`` and a third
``featurebus serve`` on the same home each claim an online store of their own, build it from the
feature topic, and answer the same requests identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
from featurebus.serving.main import CAUGHT_UP_LOG, claim_store_dir, wait_until_ready
from tests.support.specs import MINUTE, spending_workspace

VIEW = "user_spending"
USERS = 30


class Serve:
    """One ``featurebus serve`` process tree, stopped by its PID (and its own process group)."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "featurebus", "serve", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


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


def _workspace(bootstrap: str, topic_factory: Callable[..., str]) -> tuple[str, str]:
    """A workspace with tiles for USERS users 30 minutes old (stable in the 1 h windows for a
    while) on its feature topic; returns its name and a reader key."""
    workspace = f"procs{uuid.uuid4().hex[:10]}"
    spec = spending_workspace(name=workspace)
    topic = topic_factory(partitions=2, compacted=True, name=feature_topic(workspace, VIEW))
    ensure_topic(bootstrap, REGISTRY_TOPIC, compacted=True)
    start = time.time_ns() // 1_000_000 - 30 * MINUTE
    with reliable_producer(bootstrap) as producer:
        producer.produce(REGISTRY_TOPIC, key=workspace.encode(), value=spec.to_json())
        for i in range(USERS):
            partials = [1, float(i), [float(i), 1]] * 2  # count, sum, mean for the 1 m and 1 h windows
            producer.produce(
                topic,
                key=tile_key(encode_entity_key([f"u{i}"]), start + i),
                value=encode_partials(partials),
                partition=i % 2,
            )
    _, secret = create_api_key(KafkaRegistry(bootstrap), workspace, "reader", "test")
    return workspace, secret


def _answers(url: str, workspace: str, secret: str, fresh_connections: int) -> list[bytes]:
    """The same batch request over ``fresh_connections`` new connections (so the kernel hands
    them to whichever process of a shared socket accepts), plus one single lookup per user."""
    body = {
        "params": {
            "workspaceName": workspace,
            "featureServiceName": "spending",
            "requestData": [{"joinKeyMap": {"user_id": f"u{i}"}} for i in range(USERS + 2)],
            "metadataOptions": {"includeServingStatus": True, "includeDataTypes": True},
        }
    }
    headers = {"Authorization": f"Tecton-key {secret}"}
    answers = []
    for _ in range(fresh_connections):
        response = httpx.post(
            f"{url}/api/v1/feature-service/get-features-batch", json=body, headers=headers, timeout=10
        )
        assert response.status_code == 200, response.text
        answers.append(response.content)
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for i in range(USERS):
            response = client.post(
                "/api/v1/feature-service/get-features",
                json={
                    "params": {
                        "workspaceName": workspace,
                        "featureServiceName": "spending",
                        "joinKeyMap": {"user_id": f"u{i}"},
                    }
                },
            )
            assert response.status_code == 200, response.text
            answers.append(response.content)
    return answers


def test_processes_hold_their_own_copies_and_answer_identically(
    kafka_bootstrap: str, topic_factory: Callable[..., str], serve: Callable[..., Serve], tmp_path: Path
) -> None:
    workspace, secret = _workspace(kafka_bootstrap, topic_factory)
    home = tmp_path / "home"
    pair, single = free_port_pair()[0], free_port_pair()[0]
    two = serve("--workers", "2", "--port", str(pair), "--home", str(home), "--bootstrap", kafka_bootstrap)
    serve("--port", str(single), "--home", str(home), "--bootstrap", kafka_bootstrap)

    deadline = time.monotonic() + 120
    while two.log().count(CAUGHT_UP_LOG) < 2:  # each process of the pair, before it takes requests
        assert two.process.poll() is None, two.log()
        assert time.monotonic() < deadline, two.log()
        time.sleep(0.2)
    wait_until_ready(f"http://127.0.0.1:{single}", timeout_s=120)

    # Three processes, three stores: online, online-1, online-2 (in whichever order they started).
    serving = home / "serving"
    assert sorted(p.name for p in serving.iterdir() if p.is_dir()) == ["online", "online-1", "online-2"]
    assert two.log().count("holds online store") == 2

    from_pair = _answers(f"http://127.0.0.1:{pair}", workspace, secret, fresh_connections=20)
    from_single = _answers(f"http://127.0.0.1:{single}", workspace, secret, fresh_connections=1)
    assert len(set(from_pair[:20])) == 1, "the two processes of --workers 2 answered differently"
    assert from_pair[0] == from_single[0]
    assert from_pair[20:] == from_single[1:]
    assert b'"1"' in from_single[1] and b"MISSING_DATA" in from_single[0]  # data present, unknown users missing


def test_a_store_directory_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    first, first_lock = claim_store_dir(tmp_path)
    second, second_lock = claim_store_dir(tmp_path)
    assert (first.name, second.name) == ("online", "online-1")
    first_lock.close()  # the process holding it ended: the next one takes the free slot again
    third, third_lock = claim_store_dir(tmp_path)
    assert third.name == "online"
    second_lock.close()
    third_lock.close()


def test_the_materializer_tells_listeners_which_entities_it_writes(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from featurebus.platform.api_keys import ApiKeyStore
    from featurebus.platform.kv import MemoryStore
    from featurebus.schemas.encoding import store_prefix
    from featurebus.serving.online_materializer import OnlineMaterializer, online_view_name

    workspace, _ = _workspace(kafka_bootstrap, topic_factory)
    view = store_prefix(online_view_name(workspace, VIEW))
    store = MemoryStore()
    calls: list[tuple[str, set[bytes], int]] = []  # (phase, entities, our tiles in the store then)

    def ours_stored() -> int:
        return sum(1 for _ in store.scan(view, view + b"\xff"))

    class Listener:
        def begin_write(self, prefixes: set[bytes]) -> None:
            calls.append(("begin", prefixes, ours_stored()))

        def end_write(self, prefixes: set[bytes]) -> None:
            calls.append(("end", prefixes, ours_stored()))

    materializer = OnlineMaterializer(kafka_bootstrap, store, ApiKeyStore())
    materializer.add_write_listener(Listener())
    materializer.start()
    try:
        assert materializer.wait_caught_up(60), materializer.lag()
    finally:
        materializer.stop()
    pairs = list(zip(calls[::2], calls[1::2], strict=True))
    assert all(b[0] == "begin" and e[0] == "end" and b[1] == e[1] for b, e in pairs)
    ours = [(b, e) for b, e in pairs if any(p.startswith(view) for p in b[1])]
    assert ours and all(e[2] > b[2] for b, e in ours)  # told before the tiles land, and after
    touched = {p for b, _ in ours for p in b[1] if p.startswith(view)}  # the broker holds other tests' too
    assert touched == {
        store_prefix(online_view_name(workspace, VIEW), encode_entity_key([f"u{i}"])) for i in range(USERS)
    }
