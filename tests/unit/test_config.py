"""Which cluster commands talk to: ``--bootstrap``, the environment, the running ``featurebus up``
recorded in the home, in that order; and whether it is a local development broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurebus.platform.config import (
    RunningPlatform,
    clear_platform,
    record_platform,
    resolve_cluster,
    running_platform,
    save_control_login,
    select_workspace,
    selected_workspace,
    serving_url_of_login,
)
from featurebus.schemas.errors import InvalidRequestError, KafkaUnavailableError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATUREBUS_KAFKA_BOOTSTRAP", raising=False)


def _up(bootstrap: str = "127.0.0.1:9092", local: bool = True, pid: int | None = None) -> RunningPlatform:
    return RunningPlatform(bootstrap, "http://127.0.0.1:8080", local, os.getpid() if pid is None else pid)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_up_is_found_by_every_other_command(tmp_path: Path) -> None:
    record_platform(_up(), tmp_path)
    assert running_platform(tmp_path) == _up()
    cluster = resolve_cluster(home=tmp_path)
    assert (cluster.bootstrap, cluster.local) == ("127.0.0.1:9092", True)


def test_an_up_that_is_gone_is_ignored(tmp_path: Path) -> None:
    record_platform(_up(pid=_dead_pid()), tmp_path)
    assert running_platform(tmp_path) is None
    with pytest.raises(KafkaUnavailableError, match="featurebus up"):
        resolve_cluster(home=tmp_path)


def test_explicit_and_environment_bootstraps_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record_platform(_up(), tmp_path)
    assert resolve_cluster("10.0.0.1:9092", tmp_path).local is False  # an external cluster
    assert resolve_cluster("127.0.0.1:9092", tmp_path).local is True  # up's own broker, named explicitly
    monkeypatch.setenv("FEATUREBUS_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    assert resolve_cluster(home=tmp_path).bootstrap == "kafka.internal:9092"


def test_up_on_an_external_cluster_does_not_make_it_local(tmp_path: Path) -> None:
    record_platform(_up("kafka.internal:9092", local=False), tmp_path)
    assert resolve_cluster(home=tmp_path).local is False


def test_the_record_is_cleared_by_its_own_up_only_and_other_settings_stay(tmp_path: Path) -> None:
    select_workspace("prod", tmp_path)
    record_platform(_up(), tmp_path)
    clear_platform(os.getpid() + 1, tmp_path)  # another `up` stopping: not its record
    assert running_platform(tmp_path) is not None
    clear_platform(os.getpid(), tmp_path)
    assert running_platform(tmp_path) is None
    assert selected_workspace(tmp_path) == "prod"
    assert json.loads((tmp_path / "config.json").read_text()) == {"workspace": "prod"}


def test_a_record_of_another_shape_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"up": {"bootstrap": 5}}))
    assert running_platform(tmp_path) is None


def test_the_serving_url_of_a_login_env_then_login_then_the_running_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATUREBUS_URL", raising=False)
    with pytest.raises(InvalidRequestError, match="--serving-url"):
        serving_url_of_login(tmp_path)
    record_platform(_up(), tmp_path)
    assert serving_url_of_login(tmp_path) == "http://127.0.0.1:8080"
    save_control_login("http://c:8090", "k1", tmp_path, serving_url="http://s:9000/")
    assert serving_url_of_login(tmp_path) == "http://s:9000"
    save_control_login("http://c:8090", "k2", tmp_path)  # a later login without one keeps it
    assert serving_url_of_login(tmp_path) == "http://s:9000"
    monkeypatch.setenv("FEATUREBUS_URL", "http://env:1/")
    assert serving_url_of_login(tmp_path) == "http://env:1"
