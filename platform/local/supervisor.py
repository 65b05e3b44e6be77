"""Runs the platform's processes on one machine (``featurebus up``) and stops them by PID.

Each component runs as its own ``python -m featurebus <command>`` process, as it would in
production. A child that exits is restarted. One that keeps dying is restarted with a growing
delay (``Backoff``), its exits logged with the end of its log, and never takes the others down:
a worker that crashes on a bad definition must not stop the serving API, nor Kafka.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Backoff", "Component", "Supervisor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Restart delays: the first ``quick_restarts`` exits in a row restart at once (a worker may
    exit on purpose), then the delay doubles from ``first_s`` up to ``max_s``. A child that ran
    ``stable_s`` before exiting starts a new row."""

    quick_restarts: int = 3
    first_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 60.0

    def delay_s(self, exits_in_a_row: int) -> float:
        if exits_in_a_row <= self.quick_restarts:
            return 0.0
        return min(self.max_s, self.first_s * 2.0 ** (exits_in_a_row - self.quick_restarts - 1))


@dataclass
class Component:
    name: str
    args: list[str]
    env: dict[str, str]  # the child's environment: the supervisor's plus the component's own (credentials)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    exits_in_a_row: int = 0
    restart_at: float | None = None  # set while an exited child waits out its backoff
    exits: int = 0


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, backoff: Backoff = Backoff()) -> None:
        self._log_dir = log_dir
        self._backoff = backoff
        self._env = {**os.environ, **(env or {})}
        self._components: dict[str, Component] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Component:
        """Launch ``featurebus <args>``; ``env`` adds to (and overrides) the supervisor's environment."""
        component = Component(name, args, {**self._env, **(env or {})})
        self._components[name] = component
        self._launch(component)
        return component

    def _launch(self, component: Component) -> None:
        with open(self.log_path(component.name), "ab") as out:
            component.process = subprocess.Popen(
                [sys.executable, "-m", "featurebus", *component.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=component.env,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
        component.started_at = time.monotonic()
        component.restart_at = None
        log.info("started %s (pid %d)", component.name, component.process.pid)

    def check(self) -> None:
        """Restart children that exited, after their backoff; never raises for a child."""
        now = time.monotonic()
        for component in self._components.values():
            process = component.process
            if process is None or process.poll() is None:
                continue
            if component.restart_at is None:
                stable = now - component.started_at >= self._backoff.stable_s
                component.exits_in_a_row = 1 if stable else component.exits_in_a_row + 1
                component.exits += 1
                delay = self._backoff.delay_s(component.exits_in_a_row)
                component.restart_at = now + delay
                if delay:
                    log.warning(
                        "%s exited with code %s (%d times in a row); restarting in %.0f s. %s ends with:\n%s",
                        component.name,
                        process.returncode,
                        component.exits_in_a_row,
                        delay,
                        self.log_path(component.name),
                        self.tail(component.name),
                    )
                else:
                    log.warning("%s exited with code %s; restarting", component.name, process.returncode)
            if now >= component.restart_at:
                self._launch(component)

    def restarting(self) -> dict[str, float]:
        """Children waiting out a backoff: name -> seconds until their restart."""
        now = time.monotonic()
        return {n: max(0.0, c.restart_at - now) for n, c in self._components.items() if c.restart_at is not None}

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
