"""Workspaces against the real broker: create (live or development), list, select as the default
of every command, apply only into an existing workspace, delete (refused while it holds objects),
and development workspaces never materialized by the worker or the offline materializer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.config import selected_workspace
from featurebus.platform.registry import KafkaRegistry, apply_workspace, wait_for_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.worker import run_worker
from tests.support.push_repo import push_workspace

pytestmark = pytest.mark.kafka

ADS = Path(__file__).resolve().parents[2] / "examples" / "ads"


def _cli(home: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurebus", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "FEATUREBUS_HOME": str(home)},
    )


def test_workspace_lifecycle_and_selection(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    dev, live, missing = f"dev_{suffix}", f"live_{suffix}", f"missing_{suffix}"
    boot = ["--bootstrap", kafka_bootstrap]

    assert _cli(tmp_path, "workspace", "create", dev, *boot).returncode == 0
    created = _cli(tmp_path, "workspace", "create", live, "--live", *boot)
    assert created.returncode == 0 and "live workspace" in created.stdout, created.stderr
    again = _cli(tmp_path, "workspace", "create", live, *boot)
    assert again.returncode == 1 and "already exists (live)" in again.stderr
    bad = _cli(tmp_path, "workspace", "create", "no/slash", *boot)
    assert bad.returncode == 1 and "invalid workspace name" in bad.stderr

    # apply into a workspace nobody created says how to create it, and creates nothing.
    refused = _cli(tmp_path, "apply", "--repo", str(ADS), "--workspace", missing, *boot)
    assert refused.returncode == 1
    assert f"featurebus workspace create {missing} --live" in refused.stderr.replace("\n", " ")
    assert missing not in KafkaRegistry(kafka_bootstrap).list()

    # select makes the workspace the default of every command (here: plan and apply).
    assert _cli(tmp_path, "workspace", "select", f"nope_{suffix}", *boot).returncode == 1
    assert _cli(tmp_path, "workspace", "select", dev, *boot).returncode == 0
    assert selected_workspace(tmp_path) == dev
    planned = _cli(tmp_path, "plan", "--repo", str(ADS), "--json", *boot)
    assert planned.returncode == 0, planned.stderr
    plan_doc = json.loads(planned.stdout)
    assert plan_doc["workspace"] == dev and plan_doc["summary"]["create"] > 0
    applied = _cli(tmp_path, "apply", "--repo", str(ADS), *boot)
    assert applied.returncode == 0, applied.stderr
    spec = KafkaRegistry(kafka_bootstrap).list()[dev]
    assert (spec.version, spec.live, len(spec.stream_feature_views)) == (1, False, 4)

    listed = _cli(tmp_path, "workspace", "list", *boot)
    assert listed.returncode == 0, listed.stderr
    lines = {line[2:].split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert lines[dev].startswith("*") and " dev " in lines[dev] and "v1" in lines[dev]
    assert lines[live].startswith(" ") and " live " in lines[live] and "nothing applied" in lines[live]

    # delete refuses while the workspace holds definitions, then removes registry and history.
    refused_delete = _cli(tmp_path, "workspace", "delete", dev, *boot)
    assert refused_delete.returncode == 1 and "--force" in refused_delete.stderr
    assert _cli(tmp_path, "workspace", "delete", dev, "--force", *boot).returncode == 0
    assert dev not in KafkaRegistry(kafka_bootstrap).list() and KafkaRegistry(kafka_bootstrap).history(dev) == []
    assert _cli(tmp_path, "workspace", "delete", live, *boot).returncode == 0  # empty: no --force needed
    assert live not in KafkaRegistry(kafka_bootstrap).list()


def test_a_created_workspace_keeps_its_kind_across_applies(kafka_bootstrap: str) -> None:
    name = f"kind_{uuid.uuid4().hex[:8]}"
    create_workspace(KafkaRegistry(kafka_bootstrap), name, live=False)
    first = apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(name), create_live=False)
    second = apply_workspace(KafkaRegistry(kafka_bootstrap), WorkspaceSpec(name))  # an empty repository
    assert (first.version, first.live, second.version, second.live) == (1, False, 2, False)
    # Libraries (up, the demo, tests) still get a live workspace when they apply to a new name.
    fresh = apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(f"{name}_new"))
    assert fresh.live and fresh.version == 1


def test_development_workspaces_are_not_materialized(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = f"devmat_{uuid.uuid4().hex[:8]}"
    create_workspace(KafkaRegistry(kafka_bootstrap), name, live=False)
    apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(name), create_live=False)
    # The stream worker returns at once instead of consuming (nothing would stop it otherwise).
    started = time.monotonic()
    run_worker(kafka_bootstrap, name, tmp_path)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "worker" / name).exists()
    offline = _cli(tmp_path, "offline", "--workspace", name, "--bootstrap", kafka_bootstrap)
    assert offline.returncode == 0 and "development workspace" in offline.stderr
    worker = _cli(tmp_path, "worker", "--workspace", name, "--bootstrap", kafka_bootstrap)
    assert worker.returncode == 0 and "development workspace" in worker.stderr
    # A live workspace created but not applied yet is waited for (version 0 has nothing to run).
    live = f"{name}_live"
    create_workspace(KafkaRegistry(kafka_bootstrap), live, live=True)
    apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(live))
    assert wait_for_workspace(KafkaRegistry(kafka_bootstrap), live).version == 1
