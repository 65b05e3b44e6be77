"""Runs the platform's processes on one machine (``featurebus up``) and stops them by PID.

Each component runs as its own ``python -m featurebus <command>`` process, as it would in
production. A child that exits is restarted (the worker exits on purpose to resubscribe when an
applied change reads other topics); one that keeps dying stops the whole platform with its log.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from featurebus.schemas.errors import FeaturebusError

__all__ = ["Component", "Supervisor"]

log = logging.getLogger(__name__)

MAX_RESTARTS_PER_MINUTE = 5


@dataclass
class Component:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self._log_dir = log_dir
        self._env = {**os.environ, **(env or {})}
        self._components: dict[str, Component] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def start(self, name: str, args: list[str]) -> Component:
        component = Component(name, args)
        self._components[name] = component
        self._launch(component)
        return component

    def _launch(self, component: Component) -> None:
        with open(self.log_path(component.name), "ab") as out:
            component.process = subprocess.Popen(
                [sys.executable, "-m", "featurebus", *component.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
        log.info("started %s (pid %d)", component.name, component.process.pid)

    def check(self) -> None:
        """Restart children that exited; raise if one keeps dying."""
        now = time.monotonic()
        for component in self._components.values():
            process = component.process
            if process is None or process.poll() is None:
                continue
            component.restarts = [t for t in component.restarts if now - t < 60] + [now]
            if len(component.restarts) > MAX_RESTARTS_PER_MINUTE:
                raise FeaturebusError(
                    f"{component.name} exited {len(component.restarts)} times within a minute "
                    f"(last exit code {process.returncode}); see {self.log_path(component.name)}:\n"
                    + self.tail(component.name)
                )
            log.warning("%s exited with code %s; restarting", component.name, process.returncode)
            self._launch(component)

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> dict[str, int]:
        return {n: c.process.pid for n, c in self._components.items() if c.process is not None}

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child (in reverse start order), then SIGKILL what is left."""
        components = list(self._components.values())[::-1]
        for component in components:
            if component.process is not None and component.process.poll() is None:
                component.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for component in components:
            process = component.process
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._components.clear()
