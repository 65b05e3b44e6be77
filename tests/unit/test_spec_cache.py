"""SpecCache: a follower starting from the topic's beginning must not make an existing workspace
look missing, a new workspace is found before the follower sees it, and deletions show once
the follower has caught up."""

from __future__ import annotations

import time
from typing import Any

from featurebus.platform.control.spec_cache import SpecCache
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace, delete_workspace
from featurebus.schemas.specs import WorkspaceSpec
from tests.support.specs import spending_workspace


class _SlowStartFollower:
    """Answers like a Kafka follower reading from offset 0: nothing, then part, then everything."""

    def __init__(self, registry: MemoryRegistry) -> None:
        self._registry = registry
        self._polls = 0

    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        time.sleep(min(timeout_s, 0.01))
        self._polls += 1
        everything = self._registry.list()
        if self._polls <= 3:
            return {}
        if self._polls <= 6:
            return dict(sorted(everything.items())[:1])
        return everything

    def close(self) -> None:
        pass


class _SlowStartRegistry(MemoryRegistry):
    def follow(self) -> Any:
        return _SlowStartFollower(self)


def _eventually(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_starting_follower_never_hides_a_workspace() -> None:
    registry = _SlowStartRegistry()
    for name in ("a", "b"):
        create_workspace(registry, name, live=True)
        apply_workspace(registry, spending_workspace(name=name))
    cache = SpecCache(registry, poll_s=0.01)
    try:
        for _ in range(50):  # across the follower's empty and partial answers
            assert set(cache.specs()) == {"a", "b"}
            time.sleep(0.002)
        create_workspace(registry, "c", live=False)
        assert cache.get("c") is not None  # not followed yet: read from the registry
        _eventually(lambda: "c" in cache.specs())
        delete_workspace(registry, "b", True)
        _eventually(lambda: "b" not in cache.specs())
        assert cache.get("b") is None
    finally:
        cache.close()
