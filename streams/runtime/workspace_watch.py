"""How the stream worker follows its workspace in the registry: it waits for the workspace at
start, then for its source topics, picks up each newly applied version between batches, and
stops when the workspace is deleted. Kept apart from the Kafka loop so this logic is tested over
``MemoryRegistry``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from featurebus.platform.registry import Registry, wait_for_workspace
from featurebus.schemas.errors import FeaturebusError, KafkaUnavailableError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = [
    "REGISTRY_POLL_S",
    "SOURCE_TOPICS_CHECK_S",
    "WorkspaceDeletedError",
    "WorkspaceWatch",
    "await_source_topics",
    "live_workspace",
    "missing_source_topics",
]

log = logging.getLogger(__name__)

REGISTRY_POLL_S = 0.5  # the follower's longest wait for news, so that it notices a stop
SOURCE_TOPICS_CHECK_S = 2.0  # how often a worker waiting for its source topics looks again

# Which of these topics exist on the bus (``featurebus.platform.kafka.admin.partition_counts``).
ExistingTopics = Callable[[list[str]], Collection[str]]


class WorkspaceDeletedError(FeaturebusError):
    """The workspace was deleted (`featurebus workspace delete`): its materialization stops."""


def live_workspace(registry: Registry, workspace: str, stop: threading.Event | None = None) -> WorkspaceSpec | None:
    """The workspace's spec once it is applied; None for a development workspace (never
    materialized: there is nothing to wait for, workspaces do not change kind) or if ``stop``."""
    spec = wait_for_workspace(registry, workspace, stop=stop)
    if spec is not None and not spec.live:
        log.warning(
            "workspace %r is a development workspace: it holds definitions only and is never materialized; "
            "nothing to do (run this for a live workspace)",
            workspace,
        )
        return None
    return spec


class WorkspaceWatch(threading.Thread):
    """Follows the registry in the background (``Registry.follow``), so that waiting for new
    versions never holds back the processing loop, which asks ``next_version`` between batches."""

    def __init__(self, registry: Registry, workspace: str, poll_s: float = REGISTRY_POLL_S) -> None:
        super().__init__(name="featurebus-registry", daemon=True)
        self._registry = registry
        self._workspace = workspace
        self._poll_s = poll_s
        self._stopped = threading.Event()
        self.latest: WorkspaceSpec | None = None
        self.deleted = False
        self.error: KafkaUnavailableError | None = None

    def run(self) -> None:
        follower = self._registry.follow()
        try:
            while not self._stopped.is_set():
                latest = follower.poll(self._poll_s).get(self._workspace)
                if latest is not None:
                    self.latest = latest
                elif self.latest is not None:
                    # Seen, then gone: the follower reads from the beginning, so a workspace it
                    # found disappears only when a deletion is committed.
                    self.deleted = True
                    return
        except KafkaUnavailableError as exc:
            self.error = exc  # the loop raises it: a worker without its broker stops
        finally:
            follower.close()

    def next_version(self, current: WorkspaceSpec) -> WorkspaceSpec | None:
        """A newer spec than ``current`` if one was applied; raises if the workspace was deleted
        or the registry became unreachable."""
        if self.error is not None:
            raise self.error
        if self.deleted:
            raise WorkspaceDeletedError(f"workspace {self._workspace!r} was deleted; its worker stops")
        latest = self.latest
        if latest is None or latest.version == current.version:
            return None
        return latest

    def stop(self) -> None:
        self._stopped.set()


def missing_source_topics(spec: WorkspaceSpec, existing: ExistingTopics) -> list[str]:
    """The workspace's Kafka source topics that do not exist (push topics are created by apply)."""
    wanted = sorted({t for s in spec.stream_sources for t in s.kafka.topics})
    found = set(existing(wanted)) if wanted else set()
    return [t for t in wanted if t not in found]


def missing_topics_message(spec: WorkspaceSpec, missing: list[str]) -> str:
    return (
        f"workspace {spec.name!r} v{spec.version}: source topics {missing} do not exist yet; the stream worker "
        "waits for them. Create them (on a local broker `featurebus apply --create-topics` does), start "
        "producing to them, or fix KafkaConfig(topics=...)"
    )


def await_source_topics(
    registry: Registry,
    spec: WorkspaceSpec,
    existing: ExistingTopics,
    check_s: float = SOURCE_TOPICS_CHECK_S,
    stop: threading.Event | None = None,
    on_missing: Callable[[list[str]], None] = lambda missing: None,
) -> WorkspaceSpec | None:
    """The workspace's latest spec once all its source topics exist; None if ``stop``.

    A worker started before its producers (``featurebus up`` then ``apply``, or a typo in a
    topic name) waits, logging which topics it waits for whenever that changes, instead of
    exiting: a supervisor would only restart it into the same state. A newer version applied
    meanwhile (say, the topic name fixed) is picked up while waiting; deletion ends the wait.
    """
    reported: list[str] = []
    while True:
        missing = missing_source_topics(spec, existing)
        on_missing(missing)
        if not missing:
            if reported:
                log.warning("workspace %r: source topics %s exist now; starting", spec.name, reported)
            return spec
        if missing != reported:
            log.warning("%s", missing_topics_message(spec, missing))
            reported = missing
        if stop is not None:
            if stop.wait(check_s):
                return None
        else:
            time.sleep(check_s)
        latest = registry.get(spec.name)
        if latest is None:
            raise WorkspaceDeletedError(f"workspace {spec.name!r} was deleted; its worker stops")
        spec = latest
