"""``featurebus.get_workspace`` with a control-plane login and no Kafka credentials (issue 15,
item 2): definitions and job methods go through the control plane (real HTTP, uvicorn on
127.0.0.1 over the in-memory registry); training sets read the offline files after its word on
the role. ``FEATUREBUS_KAFKA_BOOTSTRAP`` points at a port nothing listens on, so any fall back to
the bus would fail instead of passing quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import featurebus
from featurebus.exceptions import InvalidRequestError, NotFoundError, PermissionDeniedError
from featurebus.platform.access.roles import Role
from featurebus.platform.offline.store import open_store
from featurebus.platform.registry import apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.jobs import JobKind, JobState
from featurebus.schemas.specs import BatchFeatureViewSpec, TransformationSpec, WorkspaceSpec
from tests.support.control import ControlFixture, control_fixture, free_port, served_control

SPINE = pd.DataFrame({"user_id": ["u1", "u2"], "ts": pd.to_datetime(["2026-01-01T00:00:00Z"] * 2)})
DAY_MS = 86_400_000


def _batch_workspace(name: str) -> WorkspaceSpec:
    view = BatchFeatureViewSpec(
        name="daily",
        sources=("src",),
        entities=("user",),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=TransformationSpec("pandas", "f", "def f(df):\n    return df\n"),
        aggregations=(),
        offline=True,
        batch_schedule_ms=DAY_MS,
        feature_start_ms=10 * DAY_MS,
    )
    return WorkspaceSpec(name, batch_feature_views=(view,), live=True)


@pytest.fixture(scope="module")
def control() -> Iterator[tuple[ControlFixture, str]]:
    fixture = control_fixture()
    create_workspace(fixture.registry, "batch", live=True)
    apply_workspace(fixture.registry, _batch_workspace("batch"))
    fixture.plane.guard.access.assign_role("p-operator", "batch", Role.OPERATOR)
    fixture.plane.guard.access.assign_role("p-viewer", "batch", Role.VIEWER)
    with served_control(fixture.plane) as url:
        yield fixture, url


def _login(monkeypatch: pytest.MonkeyPatch, url: str, key: str, home: Path) -> None:
    for name in [n for n in os.environ if n.startswith("FEATUREBUS_KAFKA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FEATUREBUS_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nothing listens: no bus
    monkeypatch.setenv("FEATUREBUS_HOME", str(home))
    monkeypatch.setenv("FEATUREBUS_CONTROL_URL", url)
    monkeypatch.setenv("FEATUREBUS_API_KEY", key)
    open_store(home / "offline")


def test_a_logged_in_viewer_gets_the_workspace_and_its_training_data_without_kafka(
    control: tuple[ControlFixture, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixture, url = control
    _login(monkeypatch, url, fixture.secrets["p-viewer"], tmp_path)
    ws = featurebus.get_workspace("a")
    assert ws.via_control and ws.spec == fixture.registry.get("a")
    training = ws.get_feature_service("spending").get_features_for_events(SPINE, "ts")
    assert len(training) == 2 and "user_spending__amount_sum_1h_continuous" in training.columns
    start, end = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-01-02", tz="UTC")
    assert ws.get_feature_view("user_spending").get_features_in_range(start, end).empty  # no files yet


def test_a_workspace_without_a_role_is_refused_naming_the_role(
    control: tuple[ControlFixture, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixture, url = control
    _login(monkeypatch, url, fixture.secrets["p-none"], tmp_path)
    with pytest.raises(PermissionDeniedError) as refused:
        featurebus.get_workspace("a")
    message = str(refused.value)
    assert "'viewer'" in message and "workspace 'a'" in message and "assign-role" in message, message
    _login(monkeypatch, url, fixture.secrets["admin"], tmp_path)
    with pytest.raises(NotFoundError, match="nope"):
        featurebus.get_workspace("nope")


def test_job_methods_go_through_the_control_plane_and_its_roles(
    control: tuple[ControlFixture, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixture, url = control
    start, end = datetime(1970, 1, 11, tzinfo=UTC), datetime(1970, 1, 12, tzinfo=UTC)
    _login(monkeypatch, url, fixture.secrets["p-viewer"], tmp_path)
    viewed = featurebus.get_workspace("batch").get_feature_view("daily")
    with pytest.raises(PermissionDeniedError, match="'operator'"):
        viewed.trigger_materialization_job(start, end, online=False, offline=True)

    _login(monkeypatch, url, fixture.secrets["p-operator"], tmp_path)
    daily = featurebus.get_workspace("batch").get_feature_view("daily")
    job_id = daily.trigger_materialization_job(start, end, online=False, offline=True, use_tecton_managed_retries=False)
    job = daily.get_materialization_job(job_id)
    assert (job.kind, job.view, job.start_ms, job.end_ms, job.max_attempts) == (
        JobKind.MATERIALIZE,
        "daily",
        10 * DAY_MS,
        11 * DAY_MS,
        1,
    )
    assert job_id in [j.id for j in daily.list_materialization_jobs()]
    assert daily.cancel_materialization_job(job_id).id == job_id
    # No job runner here: the cancel stays requested and waiting times out, as on the bus.
    with pytest.raises(featurebus.exceptions.JobTimeoutError, match=job_id):
        daily.wait_for_materialization_job(job_id, timeout=timedelta(seconds=0.1))
    assert fixture.registry.jobs("batch").get(job_id) is not None  # it reached the registry via the plane
    with pytest.raises(InvalidRequestError, match="stream feature view"):
        featurebus.get_workspace("a").get_feature_view("user_spending").trigger_materialization_job(
            start, end, online=False, offline=True
        )
    assert fixture.registry.jobs("a").get(fixture.job_id) is not None
    assert daily.get_materialization_job(job_id).state in (JobState.PENDING, JobState.CANCELLED)


def test_a_script_with_only_a_login_in_its_environment_builds_a_training_set(
    control: tuple[ControlFixture, str], tmp_path: Path
) -> None:
    """A separate Python process: the control-plane URL and key, no FEATUREBUS_KAFKA_* at all."""
    fixture, url = control
    open_store(tmp_path / "offline")
    SPINE.to_parquet(tmp_path / "spine.parquet")
    script = (
        "import featurebus, pandas as pd\n"
        "ws = featurebus.get_workspace('a')\n"
        "spine = pd.read_parquet('spine.parquet')\n"
        "frame = ws.get_feature_service('spending').get_features_for_events(spine, 'ts')\n"
        "print('rows', len(frame), 'via_control', ws.via_control)\n"
        "try:\n"
        "    featurebus.get_workspace('b')\n"
        "except featurebus.exceptions.PermissionDeniedError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATUREBUS_", "KAFKA_"))}
    env.update(
        FEATUREBUS_HOME=str(tmp_path),
        FEATUREBUS_CONTROL_URL=url,
        FEATUREBUS_API_KEY=fixture.secrets["p-viewer"],
        FEATUREBUS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",  # nothing listens: a bus read would fail
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "rows 2 via_control True", done.stdout
    # p-viewer is a viewer of "a" only: "b" is refused, naming the role and the workspace.
    assert lines[1].startswith("refused:") and "'viewer'" in lines[1] and "workspace 'b'" in lines[1], done.stdout


def test_an_explicit_bootstrap_keeps_the_direct_path(
    control: tuple[ControlFixture, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With ``bootstrap=`` the control plane is not asked: the (dead) bus is, and says so."""
    fixture, url = control
    _login(monkeypatch, url, fixture.secrets["p-viewer"], tmp_path)
    with pytest.raises(featurebus.exceptions.KafkaUnavailableError):
        featurebus.get_workspace("a", bootstrap=f"127.0.0.1:{free_port()}")


@pytest.mark.parametrize(("principal", "allowed"), [("p-viewer", True), ("p-none", False)])
def test_the_cli_monitoring_stats_takes_the_view_from_the_control_plane(
    control: tuple[ControlFixture, str], principal: str, allowed: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`featurebus monitoring stats` logged in: the definition (and the role check) from the control
    plane, the statistics from the home's files; no bus."""
    from typer.testing import CliRunner

    from featurebus.cli import app

    fixture, url = control
    _login(monkeypatch, url, fixture.secrets[principal], tmp_path)
    args = ["monitoring", "stats", "user_spending", "-w", "a", "--since", "2026-01-01T00:00:00Z"]
    result = CliRunner().invoke(app, [*args, "--until", "2026-01-01T02:00:00Z", "--home", str(tmp_path), "--json"])
    if allowed:
        assert result.exit_code == 0, result.output
        buckets = json.loads(result.output)
        assert buckets and not any(b["has_data"] for b in buckets)  # nothing materialized in this home
    else:
        assert isinstance(result.exception, PermissionDeniedError), result.output
        assert "'viewer'" in str(result.exception)
