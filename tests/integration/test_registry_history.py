"""The registry keeps every applied version: `registry log` lists them, `apply --version N`
restores one as a new version, and readers only ever see committed versions."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid

import pytest

from featurebus.platform.registry import apply_workspace, read_history, read_registry, read_version
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka


def test_history_log_and_rollback(kafka_bootstrap: str) -> None:
    workspace = f"hist_{uuid.uuid4().hex[:8]}"
    v1 = apply_workspace(kafka_bootstrap, spending_workspace(name=workspace))
    base = spending_workspace(name=workspace)
    view = base.stream_feature_views[0]
    shorter = dataclasses.replace(view, aggregations=view.aggregations[:3], description="fewer features")
    v2 = apply_workspace(kafka_bootstrap, dataclasses.replace(base, stream_feature_views=(shorter,), feature_services=()))
    assert (v1.version, v2.version) == (1, 2) and v2.applied_at_ms >= v1.applied_at_ms

    assert [s.version for s in read_history(kafka_bootstrap, workspace)] == [1, 2]
    assert read_version(kafka_bootstrap, workspace, 1).stream_feature_views == v1.stream_feature_views

    log = subprocess.run([sys.executable, "-m", "featurebus", "registry", "log", "--workspace", workspace,
                          "--bootstrap", kafka_bootstrap], capture_output=True, text=True, timeout=120)
    assert log.returncode == 0, log.stderr
    assert "v2" in log.stdout and "v1" in log.stdout and "1 update, 1 delete" in log.stdout

    rollback = subprocess.run([sys.executable, "-m", "featurebus", "apply", "--workspace", workspace, "--version", "1",
                               "--bootstrap", kafka_bootstrap], capture_output=True, text=True, timeout=120)
    assert rollback.returncode == 0, rollback.stderr
    assert "+ create" in rollback.stdout and "v3" in rollback.stdout
    current = read_registry(kafka_bootstrap)[workspace]
    assert current.version == 3
    assert current.stream_feature_views == v1.stream_feature_views and current.feature_services == v1.feature_services

    missing = subprocess.run([sys.executable, "-m", "featurebus", "apply", "--workspace", workspace, "--version", "9",
                              "--bootstrap", kafka_bootstrap], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no version 9" in missing.stderr and "v1, v2, v3" in missing.stderr
