"""``featurebus control``: the control plane as its own process (``featurebus up`` starts it too).

On its first start against a registry (no admin principal yet) it creates the ``admin`` service
account, prints its key once and stores it with the URL in the featurebus config, so the CLI on
this machine is logged in without an extra step.
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from featurebus.platform.config import running_platform, save_control_login
from featurebus.platform.control.audit import KafkaAuditLog
from featurebus.platform.control.plane import BOOTSTRAP_ADMIN, ControlPlane
from featurebus.platform.registry import KafkaRegistry
from featurebus.serving.control.app import create_control_app
from featurebus.serving.control.ui import UiSettings

__all__ = ["build_control_plane", "run_control"]

log = logging.getLogger(__name__)


def build_control_plane(bootstrap: str, home: Path, url: str) -> ControlPlane:
    """The control plane over the bus; on a first start, the admin key printed and stored."""
    plane = ControlPlane(
        KafkaRegistry(bootstrap), KafkaAuditLog(bootstrap), bootstrap=bootstrap, offline_root=home / "offline"
    )
    secret = plane.bootstrap_admin()
    if secret is not None:
        path = save_control_login(url, secret, home)
        print(
            f"Created the admin service account {BOOTSTRAP_ADMIN!r}; its key (shown once, saved in {path}):\n"
            f"  {secret}",
            flush=True,
        )
    return plane


def run_control(bootstrap: str, home: Path, host: str = "127.0.0.1", port: int = 8090) -> None:
    url = f"http://{host}:{port}"
    plane = build_control_plane(bootstrap, home, url)
    log.info("control plane on %s", url)
    offline_root = home / "offline"
    ui = UiSettings(bootstrap=bootstrap, serving_url=lambda: _serving_url(home), offline_root=offline_root)
    uvicorn.run(create_control_app(plane, ui, offline_root), host=host, port=port, log_level="warning")


def _serving_url(home: Path) -> str | None:
    """The serving API of the `featurebus up` running from ``home`` (it records itself after the
    control plane answers), for the UI's "try it"."""
    running = running_platform(home)
    return running.serving_url if running is not None else None
