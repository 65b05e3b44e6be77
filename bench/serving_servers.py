"""Start and stop the two servers the serving benchmark compares, and the load generator.

* featurebus: ``python -m featurebus serve --workers N --no-access-log`` on a fresh home (Feast
  runs without its access log too); ready once ``/ready``
  answers 200 and, with N > 1, every process logged that its online copy caught up.
* Feast: ``feast serve --workers N --max-requests 0 --no-access-log`` in the peer venv, in the
  repository ``peers/feast_repo.py`` wrote and materialized; ready once ``/health`` answers.

Both are stopped by PID (SIGTERM to the process we started, then SIGKILL to the process group it
leads, which holds only its own workers), also when the benchmark fails half-way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.harness import REPO_ROOT, BenchContext
from bench.loadgen import LoadSpec
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.serving.main import CAUGHT_UP_LOG

__all__ = ["Server", "start_featurebus", "start_feast", "run_loadgen"]

log = logging.getLogger(__name__)


class Server:
    def __init__(self, name: str, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def wait(self, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not ready within {timeout_s:g}s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self, grace_s: float = 20.0) -> None:
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %gs; killing it", self.name, process.pid, grace_s)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only workers it spawned are left
        except ProcessLookupError:
            pass
        process.wait()


def _launch(ctx: BenchContext, name: str, command: list[str], cwd: Path, port: int) -> Server:
    log_path = ctx.scratch("serving-logs") / f"{name}.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, process, port, log_path)
    ctx.on_close(server.stop)
    log.info("started %s (pid %d) on port %d, log %s", name, process.pid, port, log_path)
    return server


def _answers(url: str, path: str) -> bool:
    try:
        return httpx.get(url + path, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_featurebus(ctx: BenchContext, bootstrap: str, workers: int, timeout_s: float = 180.0) -> Server:
    home = ctx.scratch(f"serving-home-w{workers}")
    port = free_port_pair()[0]
    server = _launch(
        ctx,
        f"featurebus-w{workers}",
        [
            sys.executable,
            "-m",
            "featurebus",
            "serve",
            "--workers",
            str(workers),
            "--port",
            str(port),
            "--home",
            str(home),
            "--bootstrap",
            bootstrap,
            "--no-access-log",
        ],
        REPO_ROOT,
        port,
    )

    def ready() -> bool:
        if not _answers(server.url, "/ready"):
            return False
        return workers == 1 or server.tail(10_000).count(CAUGHT_UP_LOG) >= workers

    server.wait(ready, timeout_s)
    return server


def start_feast(ctx: BenchContext, feast: Path, repo: Path, workers: int, timeout_s: float = 180.0) -> Server:
    port = free_port_pair()[0]
    # --max-requests 0: by default each worker restarts after ~1000 requests, which would
    # dominate a benchmark of tens of thousands.
    server = _launch(
        ctx,
        f"feast-w{workers}",
        [
            str(feast.parent / "feast"),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            str(workers),
            "--max-requests",
            "0",
            "--no-access-log",
        ],
        repo,
        port,
    )
    server.wait(lambda: _answers(server.url, "/health"), timeout_s)
    return server


def run_loadgen(ctx: BenchContext, spec: LoadSpec, name: str) -> dict[str, Any]:
    """``bench.loadgen`` in its own process (its CPU is not the server's, nor this process's)."""
    spec_path = ctx.scratch("loadgen") / f"{name}.json"
    spec_path.write_text(json.dumps(spec.__dict__))
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(spec_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=spec.warmup_s + spec.duration_s + 120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the load generator failed ({result.returncode}): {result.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out
