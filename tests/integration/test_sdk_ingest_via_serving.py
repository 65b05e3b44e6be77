"""``FeatureTable.ingest`` from a Python process holding only a control-plane login (no Kafka
setting in its environment): the rows go over HTTP to a real serving process's ``/ingest`` in
batches and land on the table's push topic; a bad row in any batch rejects the whole frame with
nothing written (``RecordValidationError`` with the server's message and the frame's row
indices); a consumer's key is refused naming the ``editor`` role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.access.roles import Role
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.security import client_settings
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.control import wait_answering
from tests.support.table_repo import table_workspace

pytestmark = pytest.mark.kafka

# Five rows sent two per request (three requests); the bad frame's row 3 has visits not an integer,
# sent so (the dry runs of all batches first) and in one request (the server's answer as it is).
_SCRIPT = """
import json, sys
import pandas as pd
import featurebus
import featurebus.ingest_serving
from featurebus.exceptions import PermissionDeniedError, RecordValidationError

featurebus.ingest_serving.BATCH_ROWS = 2
ws = featurebus.get_workspace(sys.argv[1])
table = ws.get_feature_table("user_scores")
frame = pd.DataFrame({
    "user_id": [f"u{i}" for i in range(5)],
    "score": [0.1 * i for i in range(5)],
    "segment": ["a"] * 5,
    "visits": list(range(5)),
    "ts": pd.to_datetime(["2026-01-01T00:00:00Z"] * 5),
})
out = {"via_control": ws.via_control}
try:
    if sys.argv[2] == "good":
        out["answer"] = table.ingest(frame)
    bad = frame.astype({"visits": object})
    bad.loc[3, "visits"] = "three"
    try:
        table.ingest(bad)
    except RecordValidationError as exc:
        out["invalid"] = {"message": str(exc), "errors": exc.record_errors}
    featurebus.ingest_serving.BATCH_ROWS = 10
    table.ingest(bad)
except RecordValidationError as exc:
    out["invalid_one"] = {"message": str(exc), "errors": exc.record_errors}
except PermissionDeniedError as exc:
    out["refused"] = str(exc)
print(json.dumps(out))
"""


def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, **client_settings(bootstrap), "group.id": f"size-{uuid.uuid4().hex}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _start(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 -- the child holds it; closed with the test's tmp dir
    return subprocess.Popen([sys.executable, "-m", "featurebus", *args], stdout=log, stderr=subprocess.STDOUT)


def _wait_for(url: str, tmp_path: Path, name: str) -> None:
    wait_answering(url, tmp_path / f"{name}.log", timeout_s=90)


def _login(home: Path, control_url: str, key: str, serving_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FEATUREBUS_CONTROL_URL", "FEATUREBUS_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "featurebus", "login", "--url", control_url, "--key", key, "--serving-url", serving_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "FEATUREBUS_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((home / "config.json").read_text())["serving_url"] == serving_url


def _sdk(home: Path, workspace: str, case: str) -> dict[str, object]:
    """The script in a process with the login in ``home`` and no Kafka setting: had it gone to
    the bus, the dead bootstrap below would make it fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATUREBUS_", "KAFKA_"))}
    env.update(FEATUREBUS_HOME=str(home), FEATUREBUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port_pair()[0]}")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, workspace, case], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_logged_in_sdk_ingests_through_the_serving_api(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, editor, consumer = f"ing_{suffix}", f"editor-{suffix}", f"consumer-{suffix}"
    registry = KafkaRegistry(kafka_bootstrap)
    apply_workspace(registry, table_workspace(workspace))
    access = AccessAdmin(registry)
    keys = {}
    for name, role in ((editor, Role.EDITOR), (consumer, Role.CONSUMER)):
        access.create_principal(name, PrincipalKind.SERVICE_ACCOUNT)
        access.assign_role(name, workspace, role)
        keys[name] = access.create_key(name)[1]
    topic = push_topic(workspace, "user_scores")
    before = _topic_size(kafka_bootstrap, topic)

    control_port, serving_port = free_port_pair()
    control_url, serving_url = f"http://127.0.0.1:{control_port}", f"http://127.0.0.1:{serving_port}"
    control = _start(
        tmp_path, "control", "control", "--port", str(control_port), "--bootstrap", kafka_bootstrap,
        "--home", str(tmp_path / "control-home"),
    )  # fmt: skip
    serving = _start(
        tmp_path, "serving", "serve", "--port", str(serving_port), "--bootstrap", kafka_bootstrap,
        "--home", str(tmp_path / "serving-home"), "--no-access-log",
    )  # fmt: skip
    try:
        _wait_for(f"{control_url}/health", tmp_path, "control")
        _wait_for(f"{serving_url}/ready", tmp_path, "serving")
        deadline = time.monotonic() + 30
        while True:  # the replica learns of the new workspace and keys within a second or so
            probe = httpx.post(
                f"{serving_url}/ingest",
                json={"workspace_name": workspace, "dry_run": True, "records": {"user_scores": []}},
                headers={"Authorization": f"Bearer {keys[editor]}"},
            )
            if probe.status_code not in (401, 404) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert probe.status_code == 200, probe.text

        editor_home, consumer_home = tmp_path / "editor", tmp_path / "consumer"
        _login(editor_home, control_url, keys[editor], serving_url)
        _login(consumer_home, control_url, keys[consumer], serving_url)

        done = _sdk(editor_home, workspace, "good")
        assert done["via_control"] is True
        assert done["answer"]["ingestMetrics"]["featureViewIngestMetrics"] == [  # type: ignore[index]
            {"featureViewName": "user_scores", "onlineRecordIngestCount": "5", "offlineRecordIngestCount": "5"}
        ]
        invalid = done["invalid"]
        assert isinstance(invalid, dict)
        # Row 3 is in the second batch; the frame's index is reported, and nothing of it was written.
        assert [e["recordIndex"] for e in invalid["errors"]] == [3], invalid
        assert "visits" in invalid["errors"][0]["errorMessage"] and "nothing was written" in invalid["message"]
        one = done["invalid_one"]
        assert isinstance(one, dict) and one["message"] == "1 of 5 records are invalid; nothing was written", one
        assert [e["recordIndex"] for e in one["errors"]] == [3], one
        assert _topic_size(kafka_bootstrap, topic) == before + 5

        refused = _sdk(consumer_home, workspace, "good")
        assert "answer" not in refused and "'editor'" in str(refused["refused"]), refused
        assert _topic_size(kafka_bootstrap, topic) == before + 5
    finally:
        for process in (control, serving):
            process.terminate()
        for process in (control, serving):
            process.wait(30)
