"""A standalone Flink cluster on this machine: one JobManager and N TaskManagers on 127.0.0.1,
started with the scripts of the ``apache-flink`` distribution (``bin/jobmanager.sh``,
``bin/taskmanager.sh``) under ``<home>/flink/cluster/``::

    conf/config.yaml     the cluster's configuration (loopback only, RocksDB, checkpoints under the home)
    lib/                 the classpath: links to the distribution's lib/ and opt/flink-python
    log/                 the processes' logs
    pids/                Flink's own PID files (its scripts stop the processes listed there)
    cluster.json         the REST address the CLI and ``flink submit`` use

It proves the job runs distributed (its operators on several TaskManager processes, restarted
from checkpoints when one dies); a production cluster is the user's (``featurebus flink submit
--jobmanager HOST:PORT``, or a Kubernetes Flink operator deployment).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.flink.runtime import flink_home
from featurebus.platform.kafka.runtime import LOOPBACK_HOST, free_port_pair
from featurebus.schemas.errors import FlinkUnavailableError

__all__ = ["FlinkCluster", "ClusterInfo"]

_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ClusterInfo:
    rest_port: int
    taskmanagers: int

    @property
    def jobmanager(self) -> str:
        return f"{LOOPBACK_HOST}:{self.rest_port}"


class FlinkCluster:
    def __init__(self, home: Path) -> None:
        self.dir = (home / "flink" / "cluster").resolve()
        self.checkpoints = (home / "flink" / "checkpoints").resolve()

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLINK_CONF_DIR": str(self.dir / "conf"),
            "FLINK_LOG_DIR": str(self.dir / "log"),
            "FLINK_PID_DIR": str(self.dir / "pids"),
            "FLINK_IDENT_STRING": "featurebus",
            "FLINK_LIB_DIR": str(self.dir / "lib"),
        }

    def _script(self, name: str, *args: str) -> None:
        script = flink_home() / "bin" / name
        result = subprocess.run(
            ["bash", str(script), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise FlinkUnavailableError(
                f"{script.name} {' '.join(args)} failed ({result.returncode}): "
                f"{(result.stdout + result.stderr)[-2000:]}"
            )

    def status(self) -> ClusterInfo | None:
        try:
            info = json.loads((self.dir / "cluster.json").read_text())
        except FileNotFoundError:
            return None
        return ClusterInfo(info["rest_port"], info["taskmanagers"])

    def start(self, taskmanagers: int = 2, slots_per_taskmanager: int = 1) -> ClusterInfo:
        running = self.status()
        if running is not None and self.overview(running) is not None:
            return running
        rest_port, rpc_port = free_port_pair()
        (self.dir / "conf").mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        self._link_libraries()
        defaults = flink_home() / "conf"
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
            (self.dir / "conf" / name).write_text((defaults / name).read_text())
        (self.dir / "conf" / "config.yaml").write_text(
            self._config(rest_port, rpc_port, slots_per_taskmanager) + _java_options(defaults / "config.yaml")
        )
        info = ClusterInfo(rest_port, taskmanagers)
        self._script("jobmanager.sh", "start")
        for _ in range(taskmanagers):
            self._script("taskmanager.sh", "start")
        atomic_write(self.dir / "cluster.json", json.dumps({"rest_port": rest_port, "taskmanagers": taskmanagers}))
        self.wait_taskmanagers(info, taskmanagers)
        return info

    def _link_libraries(self) -> None:
        """The cluster's classpath: the distribution's ``lib/`` plus ``opt/flink-python`` (Python
        operators run in the TaskManagers; the wheel keeps that jar out of ``lib/``)."""
        lib = self.dir / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        for jar in [*(flink_home() / "lib").glob("*.jar"), *(flink_home() / "opt").glob("flink-python-*.jar")]:
            link = lib / jar.name
            if not link.exists():
                link.symlink_to(jar)

    def _config(self, rest_port: int, rpc_port: int, slots: int) -> str:
        return f"""\
# Written by featurebus.platform.flink.cluster: a development cluster on loopback only.
jobmanager.rpc.address: {LOOPBACK_HOST}
jobmanager.rpc.port: {rpc_port}
jobmanager.bind-host: {LOOPBACK_HOST}
jobmanager.memory.process.size: 1024m
taskmanager.bind-host: {LOOPBACK_HOST}
taskmanager.host: {LOOPBACK_HOST}
taskmanager.numberOfTaskSlots: {slots}
taskmanager.memory.process.size: 1536m
rest.address: {LOOPBACK_HOST}
rest.bind-address: {LOOPBACK_HOST}
rest.port: {rest_port}
blob.server.port: 0
state.backend.type: rocksdb
execution.checkpointing.dir: {self.checkpoints.as_uri()}
# A killed TaskManager is noticed within seconds, not the default 50 s heartbeat timeout.
heartbeat.interval: 2000
heartbeat.timeout: 8000
"""

    def overview(self, info: ClusterInfo) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://{info.jobmanager}/overview", timeout=2) as response:
                overview: dict[str, object] = json.loads(response.read())
                return overview
        except OSError:
            return None

    def wait_taskmanagers(self, info: ClusterInfo, count: int, timeout_s: float = _START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            overview = self.overview(info)
            if overview is not None and overview.get("taskmanagers") == count:
                return
            if time.monotonic() > deadline:
                raise FlinkUnavailableError(
                    f"the Flink cluster did not have {count} TaskManagers within {timeout_s:g}s; "
                    f"see the logs in {self.dir / 'log'}"
                )
            time.sleep(0.5)

    def taskmanager_pids(self) -> list[int]:
        path = self.dir / "pids" / "flink-featurebus-taskexecutor.pid"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def add_taskmanager(self) -> None:
        self._script("taskmanager.sh", "start")

    def stop(self) -> bool:
        """Stop every process of the cluster (by the PIDs its scripts recorded); False if none ran."""
        if self.status() is None:
            return False
        self._script("taskmanager.sh", "stop-all")
        self._script("jobmanager.sh", "stop-all")
        (self.dir / "cluster.json").unlink(missing_ok=True)
        return True


def _java_options(default_config: Path) -> str:
    """The distribution's JVM options (Java 17 needs its ``--add-opens``: Flink reflects into
    java.util), as one flat key of our config."""
    for line in default_config.read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "all" and "--add-opens" in value:
            return f"env.java.opts.all: {value.strip()}\n"
    return ""
