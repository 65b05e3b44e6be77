"""When the Flink job's runner restarts the job with newly applied definitions.

``featurebus flink run`` (``job.run_flink_worker``) follows its workspace in the registry with the
native worker's ``WorkspaceWatch`` and asks ``DefinitionsFollower.poll`` once a second. A new
version whose ``job_definitions`` differ from the running job's (a view changed, added, removed,
switched online or offline; a source's Kafka settings changed) is answered once all its source
topics exist (until then the running version goes on, as the native worker does); other new
versions (descriptions, owners, offline-only views, batch views) are adopted without a restart.
Deleting the workspace raises ``WorkspaceDeletedError``: the runner stops the job, as the native
worker stops. Tested over ``MemoryRegistry``, without Flink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.flink.definitions import job_definitions
from featurebus.streams.runtime.workspace_watch import (
    SOURCE_TOPICS_CHECK_S,
    ExistingTopics,
    WorkspaceWatch,
    missing_source_topics,
    missing_topics_message,
)

__all__ = ["DefinitionsFollower"]

log = logging.getLogger(__name__)


class DefinitionsFollower:
    def __init__(
        self,
        watch: WorkspaceWatch,
        running: WorkspaceSpec,
        existing: ExistingTopics,
        check_s: float = SOURCE_TOPICS_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watch = watch
        self.running = running  # the version the job runs (or that was adopted without a restart)
        self._existing = existing
        self._check_s = check_s
        self._clock = clock
        self._next_check = 0.0
        self._waiting_version: int | None = None

    def poll(self) -> WorkspaceSpec | None:
        """A version to restart the job with, or None; raises ``WorkspaceDeletedError``."""
        latest = self._watch.next_version(self.running)
        if latest is None or self._clock() < self._next_check:
            return None
        if job_definitions(latest) == job_definitions(self.running):
            log.warning(
                "workspace %r: version %d changes nothing the Flink job computes; it keeps running",
                latest.name,
                latest.version,
            )
            self.running = latest
            return None
        missing = missing_source_topics(latest, self._existing)
        if missing:
            self._next_check = self._clock() + self._check_s
            if latest.version != self._waiting_version:
                log.warning(
                    "%s; v%d keeps running until then", missing_topics_message(latest, missing), self.running.version
                )
                self._waiting_version = latest.version
            return None
        return latest

    def restarted(self, spec: WorkspaceSpec) -> None:
        """The job runs ``spec`` now."""
        self.running = spec
