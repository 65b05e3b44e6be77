"""`featurebus up` runs the job runner: a compaction queued with `featurebus jobs compact` merges the
small files the live offline materializer wrote, while it keeps writing (real processes, real broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.store import all_parts, list_parts
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.registry.jobs import KafkaJobStore
from tests.support.specs import spending_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def _offsets(root: Path, workspace: str) -> list[int]:
    return sorted(
        o
        for p in list_parts(root, workspace, "transactions")
        for o in pq.read_table(p.path, columns=["_offset"]).column("_offset").to_pylist()
    )


def test_up_compacts_the_live_offline_store(kafka_bootstrap: str, topic_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    topic = topic_factory()
    workspace = f"up{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    root = home / "offline"
    now = int(time.time() * 1000)
    with LocalPlatform(home, workspace, bootstrap=kafka_bootstrap) as platform:
        assert "jobs" in platform.pids()
        apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
        sent = 0
        for _ in range(5):  # five bursts, more than the materializer's 2 s flush interval apart: small files
            with reliable_producer(kafka_bootstrap) as producer:
                for i in range(20):
                    producer.produce(topic, orjson.dumps({"user_id": f"u{i % 3}", "amount": 1.0, "ts": now + sent}))
                    sent += 1
            time.sleep(2.5)
        deadline = time.monotonic() + 60
        while len(_offsets(root, workspace)) < sent:
            assert time.monotonic() < deadline, "the offline materializer did not write every record"
            time.sleep(0.5)
        # The runner's periodic compaction may have merged the first bursts already.
        assert len(list_parts(root, workspace, "transactions")) >= 2
        queued = subprocess.run(
            [sys.executable, "-m", "featurebus", "jobs", "compact", "-w", workspace, "--bootstrap", kafka_bootstrap],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "FEATUREBUS_HOME": str(home)},
        )
        assert queued.returncode == 0, queued.stderr
        job_id = queued.stdout.split()[-1]
        store = KafkaJobStore(kafka_bootstrap, workspace)
        try:
            while (job := store.get(job_id)) is None or not job.state.terminal:
                assert time.monotonic() < deadline + 60, f"compaction job still {job}"
                platform.check()
                time.sleep(0.5)
            assert job.state.value == "SUCCESS", job.error
        finally:
            store.close()
        assert len(all_parts(root, workspace, "transactions")) == 1  # one date, one partition, inputs deleted
        assert _offsets(root, workspace) == list(range(sent))
