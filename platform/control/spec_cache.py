"""The latest spec of every workspace, kept current by one follower thread, for reads that come
often and must be fast (the web UI's pages): ``Registry.list`` decodes every workspace on every
call (and on Kafka starts a consumer), which for a workspace of 1,000 views costs about a second.

The first use reads ``Registry.list`` once; a follower (``Registry.follow``) then decodes each new
version once. A follower starts from the topic's beginning, so its first polls hold only part of
the registry: until it holds every workspace of that first read at least at that version, its
answers are laid over the first read instead of replacing it. A name the cache does not know is
looked up in the registry (a workspace created a moment ago). Applies never go through here.
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
        self._specs: dict[str, WorkspaceSpec] = {}
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def specs(self) -> dict[str, WorkspaceSpec]:
        """Every workspace's latest spec (a poll behind the registry at most)."""
        self._ensure_started()
        return self._specs

    def get(self, workspace: str) -> WorkspaceSpec | None:
        found = self.specs().get(workspace)
        return found if found is not None else self._registry.get(workspace)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._specs = self._registry.list()
                self._thread = threading.Thread(target=self._follow, name="spec-cache", daemon=True)
                self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            first_read = dict(self._specs)
            caught_up = False
            try:
                follower = self._registry.follow()
                try:
                    while not self._stop.is_set():
                        polled = follower.poll(self._poll_s)
                        caught_up = caught_up or all(
                            name in polled and polled[name].version >= spec.version for name, spec in first_read.items()
                        )
                        self._specs = dict(polled) if caught_up else {**first_read, **polled}
                finally:
                    follower.close()
            except Exception as exc:  # the bus went away: keep the last answer, follow again later
                _log.warning("spec cache: following the registry failed (%s); retrying", exc)
                self._stop.wait(5.0)

    def close(self) -> None:
        self._stop.set()
