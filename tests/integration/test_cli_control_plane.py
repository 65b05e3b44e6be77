"""The CLI through a real control plane process over the real broker: log in, create a workspace,
plan and apply, read the registry log (who applied), manage a service account and its role, see
the refusals and the audit log; then stop the control plane and see mutating commands fail at
once naming its URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.registry import KafkaRegistry
from tests.support.control import wait_answering

pytestmark = pytest.mark.kafka

ADS = Path(__file__).resolve().parents[2] / "examples" / "ads"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FEATUREBUS_CONTROL_URL", "FEATUREBUS_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "featurebus", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "FEATUREBUS_HOME": str(home)},
    )


def _sdk_with_only_a_login(home: Path, workspace: str) -> None:
    """A Python script whose environment holds the login (in ``home``'s config) and no Kafka
    setting at all: ``get_workspace`` -> a training set, then the operator role it lacks named."""
    from featurebus.platform.kafka.runtime import free_port_pair as dead_port
    from featurebus.platform.offline.store import open_store

    open_store(home / "offline")
    script = (
        "import featurebus, pandas as pd\n"
        f"ws = featurebus.get_workspace({workspace!r})\n"
        "spine = pd.DataFrame({'user_id': ['u1', 'u2'], 'ts': pd.to_datetime(['2026-01-01T00:00:00Z'] * 2)})\n"
        "frame = ws.get_feature_service('user_engagement').get_features_for_events(spine, 'ts')\n"
        "print('rows', len(frame), 'via_control', ws.via_control)\n"
        "try:\n"
        "    ws.get_feature_view(ws.list_feature_views()[0]).cancel_materialization_job('nope')\n"
        "except featurebus.exceptions.PermissionDeniedError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATUREBUS_", "KAFKA_"))}
    # Nothing listens there: had the SDK gone to the bus, the script would fail.
    env.update(FEATUREBUS_HOME=str(home), FEATUREBUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{dead_port()[0]}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "rows 2 via_control True", done.stdout
    assert lines[1].startswith("refused:") and "'operator'" in lines[1], done.stdout


def test_the_cli_goes_through_the_control_plane(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    workspace, admin_name, robot = f"cp_{suffix}", f"root-{suffix}", f"robot-{suffix}"
    # The session's broker is shared: this test's own admin, not the first start's.
    access = AccessAdmin(KafkaRegistry(kafka_bootstrap))
    access.create_principal(admin_name, PrincipalKind.SERVICE_ACCOUNT, admin=True)
    _, admin_key = access.create_key(admin_name)
    port = free_port_pair()[0]
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "home"
    log = open(tmp_path / "control.log", "wb")  # noqa: SIM115 -- closed below, after the process
    control = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurebus",
            "control",
            "--port",
            str(port),
            "--bootstrap",
            kafka_bootstrap,
            "--home",
            str(tmp_path / "control-home"),
        ],
        stdout=log,
        stderr=log,
    )
    try:
        wait_answering(f"{url}/health", tmp_path / "control.log")

        logged_in = _cli(home, "login", "--url", url, "--key", admin_key)
        assert logged_in.returncode == 0, logged_in.stderr
        assert admin_name in logged_in.stdout and (home / "config.json").stat().st_mode & 0o077 == 0
        assert _cli(home, "workspace", "create", workspace, "--live").returncode == 0
        planned = _cli(home, "plan", "--repo", str(ADS), "-w", workspace, "--json")
        assert planned.returncode == 0, planned.stderr
        assert json.loads(planned.stdout)["summary"]["create"] > 0
        applied = _cli(home, "apply", "--repo", str(ADS), "-w", workspace)
        assert applied.returncode == 0, applied.stderr
        assert f"Applied workspace {workspace} v1" in applied.stdout
        history = _cli(home, "registry", "log", "-w", workspace)
        assert history.returncode == 0 and admin_name in history.stdout, history.stdout

        created = _cli(home, "service-account", "create", "--name", robot)
        assert created.returncode == 0, created.stderr
        robot_key = created.stdout.split("shown once):")[1].split()[0]
        assert (
            _cli(home, "access-control", "assign-role", "-p", robot, "-r", "consumer", "-w", workspace).returncode == 0
        )
        roles = json.loads(_cli(home, "access-control", "get-roles", "-w", workspace, "--json").stdout)
        assert {"principal": robot, "workspace": workspace, "role": "consumer"} in roles

        robot_home = tmp_path / "robot"
        assert _cli(robot_home, "login", "--url", url, "--key", robot_key).returncode == 0
        assert _cli(robot_home, "jobs", "list", "-w", workspace, "--json").returncode == 0
        _sdk_with_only_a_login(robot_home, workspace)
        refused = _cli(robot_home, "apply", "--repo", str(ADS), "-w", workspace)
        assert refused.returncode == 1 and "needs 'editor'" in refused.stderr and "Traceback" not in refused.stderr

        audit = json.loads(_cli(home, "audit", "log", "-w", workspace, "--json").stdout)
        outcomes = {(r["principal"], r["action"], r["outcome"]) for r in audit}
        assert {(admin_name, "apply", "ok"), (robot, "apply", "denied"), (admin_name, "roles.assign", "ok")} <= outcomes
    finally:
        control.terminate()
        control.wait(30)
        log.close()

    started = time.monotonic()
    down = _cli(home, "workspace", "delete", workspace, "--force")
    assert down.returncode == 1 and url in down.stderr and "Traceback" not in down.stderr
    assert time.monotonic() - started < 30
