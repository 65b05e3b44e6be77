"""Deletes against the real broker.

The acceptance case of issue 16, item 7: with the whole platform running and a second serving
replica, ``delete_keys`` through the control plane makes both replicas answer count 0 /
MISSING_DATA for the deleted entities, training sets stop seeing them, the other entities keep
every value, the receipt lists exactly the feature records and files that held them, the stream
worker starts a deleted entity afresh on its next event, and a consumer's key is refused (403).
Also: ``include_sources`` tombstones a compacted, keyed source topic and says what it cannot do
on a plain one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

import featurebus
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.control.audit import KafkaAuditLog
from featurebus.platform.deletes import service
from featurebus.platform.deletes.bus import live_records
from featurebus.platform.deletes.service import DeleteOptions, delete_keys
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, read_compacted
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import encode_entity_key
from featurebus.schemas.time import format_iso_ms
from tests.support.specs import MINUTE, spending_workspace

pytestmark = pytest.mark.kafka

USERS = ["u1", "u2", "u3", "u4"]
DELETED = ["u1", "u2"]
EVENTS_PER_USER = 6
COUNT = "user_spending.amount_count_1h_continuous"
SUM = "user_spending.amount_sum_1h_continuous"


def _served(client: httpx.Client, url: str, key: str, workspace: str, user: str) -> dict[str, tuple[Any, str]]:
    """Served values and statuses by feature name; {} while the replica is not answering yet."""
    try:
        response = _get_features(client, url, key, workspace, user)
    except httpx.TransportError:
        return {}
    if response.status_code != 200:
        return {}
    body = response.json()
    names = [f["name"] for f in body["metadata"]["features"]]
    statuses = [f.get("status", "") for f in body["metadata"]["features"]]
    return dict(zip(names, zip(body["result"]["features"], statuses, strict=True), strict=True))


def _get_features(client: httpx.Client, url: str, key: str, workspace: str, user: str) -> httpx.Response:
    return client.post(
        f"{url}/api/v1/feature-service/get-features",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "params": {
                "workspaceName": workspace,
                "featureServiceName": "spending",
                "joinKeyMap": {"user_id": user},
                "metadataOptions": {"includeServingStatus": True},
            }
        },
    )


def _count(served: dict[str, tuple[Any, str]]) -> int | None:
    return None if COUNT not in served else int(served[COUNT][0])


def _wait_until(what: str, check: Any, platform: LocalPlatform, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        platform.check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{platform.log_tail('worker')}"
        time.sleep(0.3)


def _start_replica(home: Path, bootstrap: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port_pair()[0]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurebus",
            "serve",
            "--port",
            str(port),
            "--bootstrap",
            bootstrap,
            "--home",
            str(home),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.mark.e2e
def test_delete_keys_removes_entities_everywhere_and_the_receipt_says_exactly_what(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"del_{suffix}", f"payments_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    home = tmp_path / "home"
    with LocalPlatform(home, workspace, bootstrap=kafka_bootstrap) as platform:
        registry = KafkaRegistry(kafka_bootstrap)
        apply_workspace(registry, spending_workspace(topic=topic, name=workspace))
        _, reader = create_api_key(registry, workspace, "reader")  # the consumer role
        replica, replica_url = _start_replica(tmp_path / "replica2", kafka_bootstrap)
        try:
            urls = [platform.serving_url, replica_url]
            now = int(time.time() * 1000)
            events = [
                {"user_id": user, "amount": float(i + 1), "ts": format_iso_ms(now - (10 + i) * MINUTE)}
                for user in USERS
                for i in range(EVENTS_PER_USER)
            ]
            assert produce_events(kafka_bootstrap, topic, events) == len(events)
            with httpx.Client(timeout=10.0) as client:

                def every_replica_counts(user: str, expected: int) -> bool:
                    return all(_count(_served(client, url, reader, workspace, user)) == expected for url in urls)

                for user in USERS:
                    _wait_until(
                        f"{user} served everywhere", lambda u=user: every_replica_counts(u, EVENTS_PER_USER), platform
                    )
                _wait_until(
                    "the offline store",
                    lambda: (
                        sum(pq.read_metadata(p).num_rows for p in platform.offline_dir.rglob("part-*.parquet"))
                        >= len(events)
                    ),
                    platform,
                )
                # What the receipt must list: every feature record and every file holding u1/u2.
                deleted_keys = {encode_entity_key((u,)) for u in DELETED}
                records_before = live_records(
                    kafka_bootstrap,
                    feature_topic(workspace, "user_spending"),
                    lambda batch: [k[:-10] in deleted_keys for k, _ in batch],
                )
                files_before = {
                    str(p): int(pq.read_table(p).column("user_id").to_pandas().isin(DELETED).sum())
                    for p in platform.offline_dir.rglob("part-*.parquet")
                }
                untouched_files = {p: Path(p).read_bytes() for p, n in files_before.items() if n == 0}

                # A consumer's key may read but not delete. The control plane learns of a key from
                # the bus on its own schedule (serving knowing it says nothing): 401 until then.
                deadline = time.monotonic() + 30
                while True:
                    refused = client.post(
                        f"{platform.control_url}/v1/workspaces/{workspace}/deletes",
                        headers={"Authorization": f"Bearer {reader}"},
                        json={"view": "user_spending", "keys": [{"user_id": "u1"}]},
                    )
                    if refused.status_code != 401 or time.monotonic() > deadline:
                        break
                    time.sleep(0.3)
                assert refused.status_code == 403 and "editor" in refused.json()["message"]

                ws = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=home)
                receipt = ws.get_feature_view("user_spending").delete_keys(pd.DataFrame({"user_id": DELETED}))

                assert receipt.entities == 2
                assert {(t.topic, t.kind) for t in receipt.topics} == {
                    (feature_topic(workspace, "user_spending"), "feature")
                }
                assert receipt.tombstones == len(records_before) > 0
                assert {(t.partition) for t in receipt.topics} == {p for p, _ in records_before}
                assert {f.old_path: f.rows_removed for f in receipt.files} == {
                    p: n for p, n in files_before.items() if n
                }
                assert receipt.rows_removed == len(DELETED) * EVENTS_PER_USER
                assert any("include_sources=False" in n.reason for n in receipt.not_deleted)
                assert set(receipt.to_pandas()["action"]) == {"tombstones", "rewrite", "not_deleted"}
                assert all(Path(p).read_bytes() == b for p, b in untouched_files.items())
                # Audited with what changed, never with the deleted keys themselves.
                (audited,) = [
                    r
                    for r in KafkaAuditLog(kafka_bootstrap).records()
                    if r.workspace == workspace and r.action == "keys.delete" and r.outcome.value == "ok"
                ]
                assert audited.detail["entities"] == 2 and audited.detail["tombstones"] == receipt.tombstones
                assert b'"u1"' not in orjson.dumps(audited.detail) and b'"u2"' not in orjson.dumps(audited.detail)

                # Every replica: the deleted entities are gone, the others untouched.
                for user in DELETED:
                    _wait_until(f"{user} deleted everywhere", lambda u=user: every_replica_counts(u, 0), platform)
                    for url in urls:
                        served = _served(client, url, reader, workspace, user)
                        assert served[COUNT][1] == "MISSING_DATA" and served[SUM][0] is None
                for user in USERS[2:]:
                    assert every_replica_counts(user, EVENTS_PER_USER)

                # Training sets no longer see them.
                spine = pd.DataFrame(
                    {"user_id": USERS, "timestamp": pd.to_datetime([now] * len(USERS), unit="ms", utc=True)}
                )
                frame = ws.get_feature_service("spending").get_features_for_events(spine)
                counts = dict(zip(frame["user_id"], frame["user_spending__amount_count_1h_continuous"], strict=True))
                assert counts == {"u1": 0, "u2": 0, "u3": EVENTS_PER_USER, "u4": EVENTS_PER_USER}

                # The worker dropped its cached tiles: u1's next event is counted alone.
                _wait_until(
                    "the worker to apply the delete request",
                    lambda: receipt.request_id in platform.log_tail("worker"),
                    platform,
                )
                produce_events(kafka_bootstrap, topic, [{"user_id": "u1", "amount": 9.0, "ts": format_iso_ms(now)}])
                _wait_until("u1's new event served", lambda: every_replica_counts("u1", 1), platform)
                time.sleep(1.0)
                assert every_replica_counts("u1", 1) and every_replica_counts("u3", EVENTS_PER_USER)

                # Re-running the delete finds nothing left offline (only u1's new event online).
                again = ws.get_feature_view("user_spending").delete_keys(
                    pd.DataFrame({"user_id": ["u2"]}), online=True, offline=True
                )
                assert again.files == () and again.tombstones == 0
        finally:
            replica.send_signal(signal.SIGTERM)
            try:
                replica.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.kill()
                replica.wait()


def test_include_sources_tombstones_compacted_topics_and_reports_the_others(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    compacted, plain = f"profiles_{suffix}", f"payments_{suffix}"
    ensure_topics(
        kafka_bootstrap, [TopicConfig(compacted, partitions=2, compacted=True), TopicConfig(plain, partitions=1)]
    )
    now = int(time.time() * 1000)
    produce_events(
        kafka_bootstrap,
        compacted,
        [{"user_id": u, "amount": 1.0, "ts": format_iso_ms(now - MINUTE)} for u in USERS],
    )
    registry = KafkaRegistry(kafka_bootstrap)
    for topic, name in ((compacted, f"c_{suffix}"), (plain, f"p_{suffix}")):
        spec = apply_workspace(registry, spending_workspace(topic=topic, name=name))
        receipt = delete_keys(
            kafka_bootstrap,
            tmp_path / "offline",
            spec,
            "user_spending",
            [{"user_id": "u1"}, {"user_id": "u2"}],
            DeleteOptions(online=False, offline=False, include_sources=True),
        )
        if topic == compacted:
            assert {t.kind for t in receipt.topics} == {"source"} and receipt.tombstones == 2
            assert receipt.not_deleted == ()
            assert set(read_compacted(kafka_bootstrap, compacted)) == {b"u3", b"u4"}
        else:
            assert receipt.topics == ()
            (note,) = receipt.not_deleted
            assert note.where == plain and "cleanup.policy=delete" in note.reason and "delete_records" in note.reason

    # An offline store behind its source topic: the receipt names what the rewrite could not cover.
    monkeypatch.setattr(service, "OFFLINE_WAIT_S", 0.5)
    produce_events(kafka_bootstrap, plain, [{"user_id": "u1", "amount": 1.0, "ts": format_iso_ms(now)}] * 3)
    receipt = delete_keys(
        kafka_bootstrap,
        tmp_path / "offline",
        spec,
        "user_spending",
        [{"user_id": "u1"}],
        DeleteOptions(online=False, offline=True),
    )
    behind = [n for n in receipt.not_deleted if n.where.startswith(f"{plain}[0]")]
    assert len(behind) == 1 and "offsets 0..2" in behind[0].where and "run it again" in behind[0].reason


def test_a_worker_applies_each_delete_request_once_per_state_and_fresh_state_starts_at_the_end(
    kafka_bootstrap: str,
) -> None:
    from featurebus.platform.deletes.requests import DeleteRequest, publish_request
    from featurebus.platform.kv import MemoryStore
    from featurebus.streams.runtime.delete_follower import POSITION_KEY, DeleteFollower
    from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine

    workspace = f"follow_{uuid.uuid4().hex[:8]}"
    spec = spending_workspace(name=workspace)
    store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", 1))
    now = int(time.time() * 1000)
    event = {"user_id": "u1", "amount": 1.0, "ts": now - MINUTE}
    engine.process([RawRecord("transactions", 0, 0, orjson.dumps(event))])

    # An earlier request: a follower with no position yet starts at the end, after it.
    u0 = encode_entity_key(("u0",))
    publish_request(kafka_bootstrap, workspace, DeleteRequest("r0", "user_spending", (u0,), now))
    follower = DeleteFollower(kafka_bootstrap, workspace, store)
    try:
        assert store.get(POSITION_KEY) == b"1"  # pinned at once
        u1 = encode_entity_key(("u1",))
        publish_request(kafka_bootstrap, workspace, DeleteRequest("r1", "user_spending", (u1,), now))
        deadline = time.monotonic() + 30
        while follower.applied == 0:
            follower.step(engine)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        tombstones = [r for r in sink.records if r[3] is None]
        assert tombstones and all(key[:-10] == u1 for _, _, key, _ in tombstones)
        assert follower.applied == 1 and store.get(POSITION_KEY) == b"2"
    finally:
        follower.close()

    # The same state directory again: the request is not applied a second time (u1's new tiles stay).
    engine.process([RawRecord("transactions", 0, 1, orjson.dumps(event))])
    published = len(sink.records)
    again = DeleteFollower(kafka_bootstrap, workspace, store)
    try:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            assert again.step(engine) == 0
            time.sleep(0.1)
        assert again.applied == 0 and len(sink.records) == published
    finally:
        again.close()


def test_a_batch_views_feature_records_and_files_are_deleted(kafka_bootstrap: str, tmp_path: Path) -> None:
    from datetime import timedelta

    import pyarrow as pa

    from featurebus import Attribute, BatchSource, Entity, Field, FileConfig, batch_feature_view
    from featurebus.compile import compile_workspace
    from featurebus.platform.batch.offline import list_view_parts, replace_range
    from featurebus.platform.batch.online import publish_tiles
    from featurebus.streams.tiles import TileUpdate
    from featurebus.types import Float64, String

    user = Entity(name="user", join_keys=[Field("user_id", String)])
    tx = BatchSource(name="tx", batch_config=FileConfig(uri="/nowhere", timestamp_field="ts"))

    @batch_feature_view(
        sources=[tx], entities=[user], mode="pandas", online=True, offline=True, ttl=timedelta(hours=6),
        features=[Attribute("amount", Float64)],
    )  # fmt: skip
    def latest(tx):  # type: ignore[no-untyped-def]
        return tx[["user_id", "amount", "ts"]]

    workspace = f"batchdel_{uuid.uuid4().hex[:8]}"
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), compile_workspace(workspace, [user, tx, latest]))
    now = int(time.time() * 1000) // 3_600_000 * 3_600_000
    tiles = [TileUpdate(encode_entity_key((u,)), now - h * 3_600_000, [1.0]) for u in ("a", "b") for h in range(3)]
    publish_tiles(kafka_bootstrap, workspace, "latest", tiles)
    rows = pa.table(
        {
            "user_id": ["a", "b", "a"],
            "amount": [1.0, 2.0, 3.0],
            "ts": pa.array([now - 3_600_000, now - 1_800_000, now - 60_000], pa.timestamp("ms", tz="UTC")),
        }
    )
    root = tmp_path / "offline"
    replace_range(root, workspace, "latest", "ts", now - 3_600_000, now, rows)
    (old,) = list_view_parts(root, workspace, "latest")

    receipt = delete_keys(kafka_bootstrap, root, spec, "latest", [{"user_id": "a"}], DeleteOptions())

    assert receipt.tombstones == 3 and {t.kind for t in receipt.topics} == {"feature"}
    left = read_compacted(kafka_bootstrap, feature_topic(workspace, "latest"))
    assert {k[:-10] for k in left} == {encode_entity_key(("b",))} and len(left) == 3
    (rewrite,) = receipt.files
    (new,) = list_view_parts(root, workspace, "latest")
    assert (rewrite.kind, rewrite.old_path, rewrite.new_path, rewrite.rows_removed) == (
        "batch_view",
        str(old.path),
        str(new.path),
        2,
    )
    assert pq.read_table(new.path).column("user_id").to_pylist() == ["b"]
    assert [n.where for n in receipt.not_deleted] == ["batch source 'tx'"]
