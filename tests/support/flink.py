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
from featurebus.platform.kafka_admin import read_compacted
from featurebus.schemas.errors import FlinkUnavailableError


def flink_available() -> bool:
    """A Python with the flink extra exists (this one or ``.venv-flink``: ``flink_python``)."""
    try:
        flink_python()
    except FlinkUnavailableError:
        return False
    return True


def start_flink_worker(bootstrap: str, workspace: str, home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "flink-worker.log", "ab") as log:
        # Its own session: stop_flink_worker ends the process group (the Python client and the
        # JVM it started), by the group id of the process this call started.
        return subprocess.Popen(
            [sys.executable, "-m", "featurebus", "worker", "--engine", "flink", "--workspace", workspace,
             "--bootstrap", bootstrap, "--home", str(home)],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


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


def wait_for_topic(bootstrap: str, topic: str, done: Callable[[dict[bytes, bytes]], bool], worker: subprocess.Popen[bytes],
                   log: Path, timeout_s: float = 300.0) -> dict[bytes, bytes]:
    """The compacted contents of ``topic`` once ``done`` accepts them (read_committed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        contents = read_compacted(bootstrap, topic)
        if done(contents):
            return contents
        assert worker.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"{topic} did not reach the expected contents; log:\n{log.read_text()[-5000:]}"
        time.sleep(1.0)
