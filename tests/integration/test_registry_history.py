"""The registry keeps every applied version: `registry log` lists them, `apply --version N`
restores one as a new version, and readers only ever see committed versions."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest

from featurebus.platform.registry import KafkaRegistry, SpecFollower, apply_workspace, read_version
from featurebus.platform.workspaces import delete_workspace
from featurebus.schemas.specs import WorkspaceSpec
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka


def test_history_log_and_rollback(kafka_bootstrap: str) -> None:
    workspace = f"hist_{uuid.uuid4().hex[:8]}"
    v1 = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(name=workspace))
    base = spending_workspace(name=workspace)
    view = base.stream_feature_views[0]
    shorter = dataclasses.replace(view, aggregations=view.aggregations[:3], description="fewer features")
    v2 = apply_workspace(
        KafkaRegistry(kafka_bootstrap), dataclasses.replace(base, stream_feature_views=(shorter,), feature_services=())
    )
    assert (v1.version, v2.version) == (1, 2) and v2.applied_at_ms >= v1.applied_at_ms

    assert [s.version for s in KafkaRegistry(kafka_bootstrap).history(workspace)] == [1, 2]
    assert read_version(KafkaRegistry(kafka_bootstrap), workspace, 1).stream_feature_views == v1.stream_feature_views

    log = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "registry",
            "log",
            "--workspace",
            workspace,
            "--bootstrap",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert log.returncode == 0, log.stderr
    assert "v2" in log.stdout and "v1" in log.stdout and "1 update, 1 delete" in log.stdout

    rollback = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "apply",
            "--workspace",
            workspace,
            "--version",
            "1",
            "--bootstrap",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rollback.returncode == 0, rollback.stderr
    assert "+ create" in rollback.stdout and "v3" in rollback.stdout
    current = KafkaRegistry(kafka_bootstrap).list()[workspace]
    assert current.version == 3
    assert current.stream_feature_views == v1.stream_feature_views and current.feature_services == v1.feature_services

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "apply",
            "--workspace",
            workspace,
            "--version",
            "9",
            "--bootstrap",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "no version 9" in missing.stderr and "v1, v2, v3" in missing.stderr


def test_registry_follower_sees_each_committed_version_and_deletion(kafka_bootstrap: str) -> None:
    """The worker's long-lived registry reader: new versions and deletions arrive incrementally,
    and what it holds always equals a fresh read of the registry."""
    workspace = f"follow_{uuid.uuid4().hex[:8]}"
    follower = KafkaRegistry(kafka_bootstrap).follow()
    try:
        assert workspace not in _poll_until(follower, lambda specs: True)
        v1 = apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(name=workspace))
        seen = _poll_until(follower, lambda specs: workspace in specs)
        assert seen[workspace].version == v1.version == 1
        v2 = apply_workspace(
            KafkaRegistry(kafka_bootstrap), dataclasses.replace(spending_workspace(name=workspace), feature_services=())
        )
        seen = _poll_until(follower, lambda specs: specs[workspace].version == 2)
        assert seen[workspace] == v2 and v2.feature_services == ()
        delete_workspace(KafkaRegistry(kafka_bootstrap), workspace, force=True)
        seen = _poll_until(follower, lambda specs: workspace not in specs)
        assert seen == KafkaRegistry(kafka_bootstrap).list()
    finally:
        follower.close()


def _poll_until(
    follower: SpecFollower, done: Callable[[dict[str, WorkspaceSpec]], bool], timeout_s: float = 30.0
) -> dict[str, WorkspaceSpec]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        specs = follower.poll(0.5)
        if done(specs):
            return dict(specs)
    raise AssertionError(f"the registry follower did not reach the expected state within {timeout_s:g} s")
