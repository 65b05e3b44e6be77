"""The Flink job on a standalone cluster (a JobManager and two TaskManagers, `featurebus flink
cluster start`), submitted with `featurebus flink submit`, at parallelism 2: a TaskManager
running the job is SIGKILLed three times at random points of a produced history (a fresh one
joins before each kill); the job restarts from its last checkpoint and the feature topic
(read_committed, what serving reads) equals the brute-force oracle: no event lost or counted
twice."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.flink import (
    add_taskmanager,
    featurebus,
    flink_available,
    kill_taskmanager,
    runs_python_workers,
    taskmanager_pids,
)
from tests.support.specs import spending_workspace
from tests.support.workers import assert_feature_topic_equals_oracle, history, produce_steadily

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not flink_available(),
        reason="the Flink engine needs the flink extra (make bootstrap installs it in .venv-flink)",
    ),
]


def test_taskmanager_killed_three_times_serves_exactly_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"flinkcrash_{suffix}", f"tx_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=2)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    events, users, t_ms = history(topic, 11, 8_000)
    home = ["--home", str(tmp_path)]
    started = featurebus("flink", "cluster", "start", *home)
    try:
        jobmanager = started.split("JobManager ")[1].split(",")[0]
        featurebus(
            "flink",
            "submit",
            "--jobmanager",
            jobmanager,
            "--workspace",
            workspace,
            "--parallelism",
            "2",
            "--bootstrap",
            kafka_bootstrap,
            *home,
        )
        producer = produce_steadily(kafka_bootstrap, topic, events)
        for _ in range(3):
            # A spare joins first, so the job restarts on it as soon as the kill is noticed
            # instead of waiting for a new TaskManager's JVM to start (the kill is the same).
            add_taskmanager(tmp_path)
            time.sleep(rng.uniform(1.0, 4.0))
            deadline = time.monotonic() + 120
            while not (busy := [pid for pid in taskmanager_pids(tmp_path) if runs_python_workers(pid)]):
                assert time.monotonic() < deadline, "no TaskManager started the job's tasks"
                time.sleep(0.5)
            kill_taskmanager(rng.choice(busy))
        producer.join()
        deadline = time.monotonic() + 240
        while True:
            try:
                assert_feature_topic_equals_oracle(kafka_bootstrap, spec, events, users, t_ms)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
    finally:
        featurebus("flink", "cluster", "stop", *home)
