"""Kafka rights for workspaces created while `featurebus up` runs.

The components' ACLs name each workspace's topics (``kafka.rights``: Kafka's prefix patterns
cannot say "every workspace's feature topics" without also covering the platform's own topics),
so `up` grants them per workspace. A workspace created after `up` started (the control plane's
`workspace create`) would otherwise get them only at the next start: its ingestion refused by
the broker, its worker unable to write. `up` holds the broker admin's credentials, so it follows
the registry and grants each new workspace's rights within ``interval_s``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from featurebus.platform.kafka.credentials import BusCredentials
from featurebus.platform.kafka.rights import grant_component_rights
from featurebus.platform.registry import KafkaRegistry
from featurebus.schemas.errors import FeaturebusError

__all__ = ["WorkspaceRightsFollower"]

log = logging.getLogger(__name__)


class WorkspaceRightsFollower:
    def __init__(
        self, bootstrap: str, credentials: BusCredentials, granted: Iterable[str], interval_s: float = 2.0
    ) -> None:
        self._bootstrap = bootstrap
        self._credentials = credentials
        self._granted = set(granted)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workspace-rights", daemon=True)

    def start(self) -> WorkspaceRightsFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def grant_new(self) -> set[str]:
        """Grant the rights of every workspace the registry holds that has none yet; their names."""
        new = set(KafkaRegistry(self._bootstrap).list()) - self._granted
        if new:
            grant_component_rights(self._bootstrap, self._credentials, new)
            self._granted |= new
            log.info("granted the components' Kafka rights for new workspace(s) %s", sorted(new))
        return new

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.grant_new()
            except FeaturebusError as exc:  # the broker away for a moment: the next turn retries
                log.warning("could not grant new workspaces' Kafka rights (retrying): %s", exc)
