"""A worker whose source topic does not exist yet waits for it (and says so in its log and in
``featurebus describe``) instead of exiting, then materializes as soon as the topic appears."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.local.generator import produce_events
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.time import format_iso_ms
from tests.support.specs import spending_workspace
from tests.support.workers import start_worker, wait_caught_up

pytestmark = pytest.mark.kafka


def _describe(bootstrap: str, workspace: str) -> str:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "describe",
            "user_spending",
            "--workspace",
            workspace,
            "--bootstrap",
            bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def test_a_worker_waits_for_its_missing_source_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    workspace, topic = f"waiting_{uuid.uuid4().hex[:6]}", f"later_{uuid.uuid4().hex[:6]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    worker = start_worker(kafka_bootstrap, workspace, tmp_path)
    log = tmp_path / "worker.log"
    try:
        deadline = time.monotonic() + 120
        while "do not exist yet" not in log.read_text():
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never reported its missing topic"
            time.sleep(0.3)
        assert f"source topics ['{topic}'] do not exist yet; the stream worker waits" in log.read_text()
        assert f"waiting for source topics that do not exist: {topic}" in _describe(kafka_bootstrap, workspace)
        time.sleep(3)  # a few checks later: still waiting, not exited
        assert worker.poll() is None, log.read_text()[-3000:]

        ensure_topics(kafka_bootstrap, [TopicConfig(topic, 2)])
        now_ms = int(time.time() * 1000)
        produce_events(kafka_bootstrap, topic, [{"user_id": "u1", "amount": 1.0, "ts": format_iso_ms(now_ms)}])
        wait_caught_up(kafka_bootstrap, workspace, topic, worker, tmp_path)
        assert "exist now; starting" in log.read_text()
        assert "waiting for source topics" not in _describe(kafka_bootstrap, workspace)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
