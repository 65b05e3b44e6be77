"""The latest spec of every workspace, kept current by one follower thread, for reads that come
often and must be fast (the web UI's pages): ``Registry.list`` decodes every workspace on every
call (and on Kafka starts a consumer), which for a workspace of 1,000 views costs about a second.

The follower (``Registry.follow``) decodes each new version once. A read sees a new version a
poll (``poll_s``) after it is written; applies go through the registry itself, never this.
"""

from __future__ import annotations

import logging
import threading

from featurebus.platform.registry.base import Registry
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["SpecCache"]

_log = logging.getLogger(__name__)


class SpecCache:
    def __init__(self, registry: Registry, poll_s: float = 0.5) -> None:
        self._registry = registry
        self._poll_s = poll_s
        self._specs: dict[str, WorkspaceSpec] | None = None
        self._first = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def specs(self) -> dict[str, WorkspaceSpec]:
        """Every workspace's latest spec; until the follower's first poll answers (or when it
        has failed), read from the registry directly."""
        self._ensure_started()
        self._first.wait(timeout=10.0)
        current = self._specs
        return current if current is not None else self._registry.list()

    def get(self, workspace: str) -> WorkspaceSpec | None:
        return self.specs().get(workspace)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name="spec-cache", daemon=True)
                self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                follower = self._registry.follow()
                try:
                    while not self._stop.is_set():
                        self._specs = dict(follower.poll(self._poll_s))
                        self._first.set()
                finally:
                    follower.close()
            except Exception as exc:  # the bus went away: read directly until following works again
                _log.warning("spec cache: following the registry failed (%s); retrying", exc)
                self._specs = None
                self._first.set()
                self._stop.wait(5.0)

    def close(self) -> None:
        self._stop.set()
