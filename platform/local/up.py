"""The whole platform on one machine: ``featurebus up``, the demo and the end-to-end tests.

Starts a local Kafka (unless a cluster is configured), then the stream worker, the serving API
(with its online materializer), the offline materializer, the job runner and the alert evaluator
(``featurebus monitor``, which scrapes every other process's ``/metrics``) as separate processes,
and stops all of them, by PID, when it ends.

The local broker runs secured (SASL/SCRAM and ACLs, see ``kafka.broker``); ``up`` talks to it as its
admin and gives each component a Kafka principal of its own with only the rights it needs
(``kafka.rights``), its password passed in the child's environment. The passwords are generated
on the first start and kept in ``<home>/kafka/credentials.json`` (mode 0600). While it runs, the home's ``config.json`` records where its broker
and serving API listen, so ``apply``, ``describe``, ``jobs`` ... in another shell find them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType

import httpx

from featurebus.platform.config import RunningPlatform, clear_platform, record_platform
from featurebus.platform.kafka.broker import LocalKafka, kafka_bootstrap_from_env
from featurebus.platform.kafka.credentials import BusCredentials, Component, load_or_create_credentials
from featurebus.platform.kafka.rights import grant_component_rights
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.local.supervisor import Supervisor
from featurebus.platform.local.workspace_rights import WorkspaceRightsFollower
from featurebus.schemas.errors import InvalidRequestError, KafkaUnavailableError
from featurebus.schemas.kinds import StreamEngineKind

__all__ = ["LocalPlatform", "ensure_live_workspace", "grant_platform_rights"]

log = logging.getLogger(__name__)


DEFAULT_CONTROL_PORT = 8090


def _free_or_any(port: int) -> int:
    """``port`` when nothing listens there, else a free one: the URL goes into the config anyway,
    and two `up`s on one machine (tests, two homes) must not collide."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return free_port_pair()[0]
    return port


def ensure_live_workspace(bootstrap: str, workspace: str) -> None:
    """`featurebus up --workspace W` materializes W: create it live when it does not exist yet,
    so `up` then `apply` works as before workspaces had to be created."""
    from featurebus.platform.registry import KafkaRegistry
    from featurebus.platform.workspaces import create_workspace

    registry = KafkaRegistry(bootstrap)
    existing = registry.get(workspace)
    if existing is None:
        create_workspace(registry, workspace, live=True)
    elif not existing.live:
        raise InvalidRequestError(
            f"workspace {workspace!r} is a development workspace and is never materialized; run "
            "`featurebus up` with a live workspace (`featurebus workspace create NAME --live`)"
        )


def grant_platform_rights(bootstrap: str, credentials: BusCredentials, workspace: str) -> set[str]:
    """Each component's principal and rights, for ``workspace`` and every workspace the registry
    holds; the workspaces granted."""
    from featurebus.platform.registry import KafkaRegistry

    workspaces = {workspace, *KafkaRegistry(bootstrap).list()}
    grant_component_rights(bootstrap, credentials, workspaces)
    return workspaces


class LocalPlatform:
    def __init__(
        self,
        home: Path,
        workspace: str,
        port: int | None = None,
        bootstrap: str | None = None,
        control_port: int | None = None,
        engine: StreamEngineKind = StreamEngineKind.NATIVE,
        kafka_principals: bool | None = None,
    ) -> None:
        """``kafka_principals``: create one Kafka principal per component and run each with its own
        credentials. The default does so when ``up`` starts its own broker; on a configured
        cluster it needs this process's Kafka credentials to be the cluster's admin."""
        self.home = home
        self.engine = engine
        self.workspace = workspace
        self.port = port or free_port_pair()[0]
        self.control_port = control_port or _free_or_any(DEFAULT_CONTROL_PORT)
        # The admin key, when this start created the admin (the first `up` on this registry).
        self.admin_secret: str | None = None
        self._configured_bootstrap = bootstrap or kafka_bootstrap_from_env()
        self._kafka: LocalKafka | None = None
        self._supervisor = Supervisor(home / "logs")
        self.bootstrap = ""
        self.kafka_started_in_s: float | None = None
        # Where the processes without a web app of their own serve /metrics, and the evaluator.
        self.metrics_ports = {name: free_port_pair()[0] for name in ("worker", "offline", "jobs", "monitor")}
        self._kafka_principals = kafka_principals
        self._component_env: dict[Component, dict[str, str]] = {}
        self._rights_follower: WorkspaceRightsFollower | None = None

    @property
    def serving_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_ports['monitor']}"

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Every component's /metrics (serving's and the control plane's need an API key)."""
        ports = self.metrics_ports
        return {
            "control": f"{self.control_url}/metrics",
            "serving": f"{self.serving_url}/metrics",
            **{name: f"http://127.0.0.1:{ports[name]}/metrics" for name in ("worker", "offline", "jobs", "monitor")},
        }

    @property
    def offline_dir(self) -> Path:
        return self.home / "offline"

    def start(self) -> LocalPlatform:
        try:
            if self._configured_bootstrap:
                self.bootstrap = self._configured_bootstrap
            else:
                self._kafka = LocalKafka(self.home / "kafka").start()
                self.bootstrap = self._kafka.bootstrap
                self.kafka_started_in_s = self._kafka.started_in_s
            self._ensure_live_workspace()
            self._grant_component_rights()
            self._bootstrap_admin()
            common = ["--bootstrap", self.bootstrap, "--home", str(self.home)]
            # The control plane answers before `up` announces itself: `apply` in another shell,
            # started as soon as the record appears, goes through it.
            self._start(
                Component.CONTROL,
                ["control", "--port", str(self.control_port), "--monitor-url", self.monitor_url, *common],
            )
            self._wait_healthy("control", self.control_url, timeout_s=60)
            record_platform(
                RunningPlatform(self.bootstrap, self.serving_url, self._kafka is not None, os.getpid()), self.home
            )
            ports = {name: str(port) for name, port in self.metrics_ports.items()}
            self._start(
                Component.WORKER,
                [
                    *("worker", "--workspace", self.workspace, "--engine", self.engine.value),
                    *("--metrics-port", ports["worker"], *common),
                ],
            )
            self._start(Component.SERVING, ["serve", "--port", str(self.port), *common])
            self._start(
                Component.OFFLINE,
                ["offline", "--workspace", self.workspace, "--metrics-port", ports["offline"], *common],
            )
            self._start(
                Component.JOBS, ["jobs", "run", "--workspace", self.workspace, "--metrics-port", ports["jobs"], *common]
            )
            scrapes = [
                arg
                for name, url in self.metrics_urls.items()
                if name != "monitor"
                for arg in ("--scrape", f"{name}={url}")
            ]
            self._start(
                Component.MONITOR,
                ["monitor", "--workspace", self.workspace, "--port", ports["monitor"], *scrapes, *common],
            )
            self.wait_serving(timeout_s=60)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, component: Component, args: list[str]) -> None:
        self._supervisor.start(component.value, args, self._component_env.get(component))

    def _grant_component_rights(self) -> None:
        """Give each component its own Kafka principal and rights (see the module docstring)."""
        principals = self._kafka_principals if self._kafka_principals is not None else self._kafka is not None
        if not principals:
            return  # every component uses this process's credentials for the configured cluster
        credentials = self._kafka.credentials if self._kafka is not None else None
        if credentials is None:  # a configured cluster: the components' passwords live in the home
            credentials = load_or_create_credentials(self.home / "kafka")
        granted = grant_platform_rights(self.bootstrap, credentials, self.workspace)
        self._component_env = {c: credentials.component(c).as_env() for c in Component}
        self._rights_follower = WorkspaceRightsFollower(self.bootstrap, credentials, granted).start()

    def _ensure_live_workspace(self) -> None:
        ensure_live_workspace(self.bootstrap, self.workspace)

    def _bootstrap_admin(self) -> None:
        """Log this home's CLI in to the control plane `up` runs: the first `up` on a registry
        creates the admin service account; a home without a key gets a new admin key (printed
        once by the CLI, stored with the URL in the home's config, see ``ControlPlane.admin_key``).
        A home that holds a key keeps it and only follows the control plane's new URL."""
        from featurebus.platform.config import control_login, save_control_login
        from featurebus.platform.control.audit import KafkaAuditLog
        from featurebus.platform.control.plane import ControlPlane
        from featurebus.platform.registry import KafkaRegistry

        stored_key = control_login(self.home)[1]
        if stored_key is None:
            plane = ControlPlane(KafkaRegistry(self.bootstrap), KafkaAuditLog(self.bootstrap))
            self.admin_secret = plane.admin_key(f"featurebus up in {self.home}")
        save_control_login(self.control_url, self.admin_secret or stored_key, self.home)

    def wait_serving(self, timeout_s: float) -> None:
        """Wait for the serving process to answer ``/health`` (it may still be catching up)."""
        self._wait_healthy("serving", self.serving_url, timeout_s)

    def _wait_healthy(self, component: str, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._supervisor.check()
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.2)
        raise KafkaUnavailableError(
            f"the {component} process did not come up on {url} within {timeout_s:g}s:\n"
            + self._supervisor.tail(component)
        )

    def check(self) -> None:
        self._supervisor.check()

    def pids(self) -> dict[str, int]:
        pids = self._supervisor.pids()
        if self._kafka is not None and self._kafka.pid is not None:
            pids["kafka"] = self._kafka.pid
        return pids

    def log_tail(self, component: str) -> str:
        return self._supervisor.tail(component)

    def run_until_interrupted(self, check_interval_s: float = 1.0) -> None:
        try:
            while True:
                self._supervisor.check()
                time.sleep(check_interval_s)
        except KeyboardInterrupt:
            log.warning("stopping")

    def stop(self) -> None:
        clear_platform(os.getpid(), self.home)
        if self._rights_follower is not None:
            self._rights_follower.stop()
            self._rights_follower = None
        self._supervisor.stop_all()
        if self._kafka is not None:
            self._kafka.stop()
            self._kafka = None

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
