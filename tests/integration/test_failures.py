"""A dead broker or a dead process makes commands fail with a clear message, never a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.broker import LocalKafka
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.local.supervisor import Backoff, Supervisor
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.specs import spending_workspace


def _featurebus(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurebus", *args], capture_output=True, text=True, timeout=timeout_s
    )


def test_commands_against_an_unreachable_broker_fail_fast_with_a_hint(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port_pair()[0]}"
    started = time.monotonic()
    result = _featurebus("apply", "--repo", "examples/fraud", "--workspace", "w", "--bootstrap", closed)
    assert result.returncode == 1
    assert closed in result.stderr and "FEATUREBUS_KAFKA_BOOTSTRAP" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_commands_without_any_configured_cluster_say_how_to_get_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FEATUREBUS_KAFKA_BOOTSTRAP"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "featurebus",
            "api-key",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "FEATUREBUS_HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "featurebus up" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.kafka
def test_worker_stops_with_a_clear_error_when_its_broker_dies(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka").start()
    worker = None
    try:
        topic = f"tx_{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap, [TopicConfig(topic, 2)])
        apply_workspace(KafkaRegistry(broker.bootstrap), spending_workspace(topic=topic, name="dying"))
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurebus",
                "worker",
                "--workspace",
                "dying",
                "--bootstrap",
                broker.bootstrap,
                "--home",
                str(tmp_path / "home"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)  # joined the group and processing
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        bootstrap = broker.bootstrap
        broker.stop()
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 1
        assert "featurebus: " in stderr and bootstrap in stderr, stderr[-2000:]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        broker.stop()


def test_supervisor_restarts_a_killed_process(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    try:
        supervisor.start("sleeper", ["kafka", "status", "--home", str(tmp_path)])  # exits 1 at once
        first = supervisor.pids()["sleeper"]
        deadline = time.monotonic() + 30  # "at once" is a second or more on a loaded machine
        while supervisor.pids()["sleeper"] == first:
            assert time.monotonic() < deadline, "the exited process was not restarted"
            time.sleep(0.2)
            supervisor.check()
    finally:
        supervisor.stop_all()


def test_a_crash_looping_process_backs_off_without_stopping_the_others(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, backoff=Backoff(quick_restarts=1, first_s=30.0, max_s=30.0, stable_s=60.0))
    try:
        supervisor.start("broken", ["no-such-command"])
        closed = f"127.0.0.1:{free_port_pair()[0]}"  # serving waits for its broker, and keeps running
        supervisor.start(
            "healthy",
            ["serve", "--port", str(free_port_pair()[0]), "--bootstrap", closed, "--home", str(tmp_path / "home")],
        )
        healthy = supervisor.pids()["healthy"]
        deadline = time.monotonic() + 120  # a loaded machine takes seconds per start of the child
        while "broken" not in supervisor.restarting():
            assert time.monotonic() < deadline, "the crash-looping process was never held back"
            time.sleep(0.2)
            supervisor.check()  # never raises: one component's crashes are not the platform's
        assert supervisor.restarting()["broken"] > 20  # the second exit in a row waits first_s
        assert "no-such-command" in supervisor.tail("broken")
        assert supervisor.pids()["healthy"] == healthy and "healthy" not in supervisor.restarting()
        os.kill(healthy, 0)  # still running
    finally:
        supervisor.stop_all()


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(quick_restarts=2, first_s=1.0, max_s=8.0)
    assert [backoff.delay_s(n) for n in range(1, 9)] == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_stop_all_ends_every_child(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    supervisor.start("a", ["kafka", "fetch"])
    pids = list(supervisor.pids().values())
    supervisor.stop_all()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # signal 0: does the process exist?


@pytest.mark.kafka
def test_up_stops_every_process_it_started_on_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    from featurebus.serving.main import wait_until_ready

    port = free_port_pair()[0]
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurebus",
            "up",
            "--workspace",
            "w",
            "--port",
            str(port),
            "--bootstrap",
            kafka_bootstrap,
            "--home",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=60)
        children = [int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) == 6  # control plane, worker, serving, offline, jobs, monitor (Kafka is the fixture's)
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
