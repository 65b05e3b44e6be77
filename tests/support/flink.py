"""The Flink engine in tests: start ``featurebus worker --engine flink`` (in-process Flink) and
wait until a compacted topic holds what is expected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from featurebus.platform.flink import flink_python
from featurebus.platform.kafka.admin import group_lag, read_compacted
from featurebus.schemas.errors import FlinkUnavailableError


def flink_available() -> bool:
    """A Python with the flink extra exists (this one or ``.venv-flink``: ``flink_python``)."""
    try:
        flink_python()
    except FlinkUnavailableError:
        return False
    return True


def start_flink_worker(
    bootstrap: str, workspace: str, home: Path, parallelism: int | None = None, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    """``featurebus worker --engine flink``, or ``featurebus flink run --parallelism N``."""
    home.mkdir(parents=True, exist_ok=True)
    command = (
        ["worker", "--engine", "flink"] if parallelism is None else ["flink", "run", "--parallelism", str(parallelism)]
    )
    if metrics_port:
        command += ["--metrics-port", str(metrics_port)]
    with open(home / "flink-worker.log", "ab") as log:
        # Its own session: stop_flink_worker ends the process group (the Python client and the
        # JVM it started), by the group id of the process this call started.
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurebus",
                *command,
                "--workspace",
                workspace,
                "--bootstrap",
                bootstrap,
                "--home",
                str(home),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


def stop_flink_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(worker.pid, signal.SIGKILL)  # the group of the session started above
    except ProcessLookupError:
        pass
    worker.wait()


def wait_flink_caught_up(
    bootstrap: str, workspace: str, topic: str, worker: subprocess.Popen[bytes], log: Path, timeout_s: float = 300.0
) -> None:
    """Until the job's checkpointed source offsets (its group's commits) reach ``topic``'s end."""
    from featurebus.streams.runtime.flink.job import flink_group

    deadline = time.monotonic() + timeout_s
    while group_lag(bootstrap, flink_group(workspace), [topic]) > 0:
        assert worker.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"the Flink job did not catch up; log:\n{log.read_text()[-5000:]}"
        time.sleep(0.5)


def wait_for_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[dict[bytes, bytes]], bool],
    worker: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 300.0,
) -> dict[bytes, bytes]:
    """The compacted contents of ``topic`` once ``done`` accepts them (read_committed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        contents = read_compacted(bootstrap, topic)
        if done(contents):
            return contents
        assert worker.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, (
            f"{topic} did not reach the expected contents; log:\n{log.read_text()[-5000:]}"
        )
        time.sleep(1.0)


def featurebus(*args: str, timeout_s: float = 300.0) -> str:
    """Run ``featurebus ARGS`` (it continues in the Flink Python itself where needed); its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "featurebus", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def cluster_env(home: Path) -> dict[str, str]:
    """What ``featurebus.platform.flink.cluster`` gives Flink's scripts (its layout under the home)."""
    cluster = home / "flink" / "cluster"
    return {
        **os.environ,
        "FLINK_CONF_DIR": str(cluster / "conf"),
        "FLINK_LOG_DIR": str(cluster / "log"),
        "FLINK_PID_DIR": str(cluster / "pids"),
        "FLINK_IDENT_STRING": "featurebus",
        "FLINK_LIB_DIR": str(cluster / "lib"),
    }


def add_taskmanager(home: Path) -> None:
    """One more TaskManager in the cluster under ``home`` (Flink's own script, as the cluster's)."""
    python = flink_python()
    pyflink_dir = subprocess.run(
        [python, "-c", "import os, pyflink; print(os.path.dirname(pyflink.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        ["bash", f"{pyflink_dir}/bin/taskmanager.sh", "start"],
        env=cluster_env(home),
        check=True,
        capture_output=True,
        timeout=60,
    )


def taskmanager_pids(home: Path) -> list[int]:
    """Live TaskManager processes of the cluster under ``home``."""
    path = home / "flink" / "cluster" / "pids" / "flink-featurebus-taskexecutor.pid"
    pids = [int(line) for line in path.read_text().split()] if path.exists() else []
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return found


def runs_python_workers(pid: int) -> bool:
    """The TaskManager has started Python UDF workers (children of any of its threads), i.e. it
    runs tasks of the job."""
    return bool(_children(pid))


def kill_taskmanager(pid: int) -> None:
    """SIGKILL a TaskManager, then the Python workers it started (orphans once it is gone: no
    TaskManager is left to stop them)."""
    workers = _children(pid)
    workers += [grandchild for child in workers for grandchild in _children(child)]
    os.kill(pid, signal.SIGKILL)
    for worker in workers:
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of ``http://127.0.0.1:port/metrics``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
