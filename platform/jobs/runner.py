"""The job runner of a workspace (``featurebus jobs run``): runs queued jobs one at a time.

Each ``step``: enqueue what the batch views' schedules and the periodic compaction call for,
cancel PENDING jobs whose cancel was requested, retry failed jobs that have managed retries left,
then run the oldest PENDING job to its end, writing its progress (at most every
``progress_every_s``) and checking for a cancel request between chunks.

At most one runner per workspace runs jobs: its store is opened with ``runner=True``, which fences
the previous runner (see ``featurebus.platform.registry.jobs``). A runner that starts requeues the jobs it finds RUNNING: their
runner died (SIGKILL, a lost machine), and jobs are idempotent per range, so re-running one is safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY

from featurebus.platform.jobs.client import enqueue_compaction, enqueue_scheduled
from featurebus.platform.jobs.job_metrics import JOB_ATTEMPTS, JOB_DURATION, JobsCollector
from featurebus.platform.registry.base import Registry
from featurebus.platform.registry.jobs import JobStore
from featurebus.platform.registry.specs import wait_for_workspace
from featurebus.schemas.errors import JobRunnerFencedError, KafkaUnavailableError
from featurebus.schemas.jobs import Job, JobState, cancel, fail, report_progress, requeue, retry, start, succeed
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["Execute", "JobRunner", "RunnerSettings", "run_workspace_jobs"]

_log = logging.getLogger(__name__)

# Runs a job: (job, progress(fraction), cancelled()) -> True if it stopped because of cancelled().
Execute = Callable[[Job, Callable[[float], None], Callable[[], bool]], bool]


@dataclass(frozen=True)
class RunnerSettings:
    compaction_every_ms: int | None = 3_600_000  # None: no periodic compaction
    progress_every_s: float = 1.0
    cancel_check_every_s: float = 0.5
    retry_backoff_ms: int = 10_000  # times the attempt number, before a managed retry


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        execute: Execute,
        spec: Callable[[], WorkspaceSpec | None],
        settings: RunnerSettings = RunnerSettings(),
        clock_ms: Callable[[], int] = now_ms,
        compaction_work: Callable[[], int] = lambda: 1,
    ) -> None:
        self._store = store
        self._execute = execute
        self._spec = spec
        self._settings = settings
        self._clock_ms = clock_ms
        # How much a compaction would do now: a period with nothing to compact queues no job, so
        # an idle workspace does not fill its jobs topic with empty compactions.
        self._compaction_work = compaction_work
        self.jobs: list[Job] = []  # the latest listing, replaced each round (read by /metrics)

    def recover(self) -> list[Job]:
        """Requeue the jobs a previous runner left RUNNING; returns them."""
        requeued = []
        for job in self._store.list():
            if job.state is JobState.RUNNING:
                again = requeue(job, self._clock_ms())
                self._store.put(again)
                requeued.append(again)
                _log.warning("job %s was RUNNING under a runner that stopped; requeued", job.id)
        return requeued

    def _enqueue(self) -> None:
        spec = self._spec()
        if spec is None or not spec.live:
            return
        now = self._clock_ms()
        for job in enqueue_scheduled(self._store, spec, now):
            _log.info("scheduled job %s: %s [%s, %s)", job.id, job.view, job.start_ms, job.end_ms)
        every = self._settings.compaction_every_ms
        if every:
            job_id = f"compact-{now // every * every}"
            if self._store.get(job_id) is None and self._compaction_work() > 0:
                enqueue_compaction(self._store, spec, now, job_id=job_id, origin="compaction")

    def _housekeeping(self) -> None:
        now = self._clock_ms()
        cancels = self._store.cancel_requests()
        for job in self._store.list():
            if job.state is JobState.PENDING and cancels.get(job.id) == job.attempt:
                self._store.put(cancel(job, now))
            elif (
                job.state is JobState.FAILED
                and job.attempt < job.max_attempts
                and now >= job.updated_ms + self._settings.retry_backoff_ms * job.attempt
            ):
                self._store.put(retry(job, now))
                _log.warning("job %s failed (%s); managed retry, attempt %d", job.id, job.error, job.attempt + 1)

    def step(self) -> Job | None:
        """One round; returns the job it ran to its end, if any."""
        self._enqueue()
        self._housekeeping()
        self.jobs = self._store.list()
        pending = [j for j in self.jobs if j.state is JobState.PENDING]
        if not pending:
            return None
        return self._run(pending[0])

    def _run(self, job: Job) -> Job:
        current = start(job, self._clock_ms())
        self._store.put(current)
        started = last_write = time.monotonic()
        last_check = 0.0
        cancel_seen = False

        def progress(fraction: float) -> None:
            nonlocal current, last_write
            current = report_progress(current, min(1.0, max(0.0, fraction)), self._clock_ms())
            if time.monotonic() - last_write >= self._settings.progress_every_s:
                self._store.put(current)
                last_write = time.monotonic()

        def cancelled() -> bool:
            nonlocal last_check, cancel_seen
            if not cancel_seen and time.monotonic() - last_check >= self._settings.cancel_check_every_s:
                cancel_seen = self._store.cancel_requested(job.id, job.attempt)
                last_check = time.monotonic()
            return cancel_seen

        try:
            stopped = self._execute(current, progress, cancelled)
        except JobRunnerFencedError:
            raise
        except Exception as exc:  # the job fails, the runner goes on
            _log.warning("job %s failed: %s", job.id, exc, exc_info=True)
            current = fail(current, f"{type(exc).__name__}: {exc}", self._clock_ms())
        else:
            current = cancel(current, self._clock_ms()) if stopped else succeed(current, self._clock_ms())
        self._store.put(current)
        labels = (current.workspace, current.kind.value, current.state.value)
        JOB_DURATION.labels(*labels).observe(time.monotonic() - started)
        JOB_ATTEMPTS.labels(*labels).inc()
        self.jobs = [current if j.id == current.id else j for j in self.jobs]
        return current

    def run_forever(self, stop: threading.Event, idle_s: float = 1.0, retry_s: float = 2.0) -> None:
        """Run jobs until ``stop``; rides out a Kafka outage (a job whose last write was lost stays
        RUNNING, and is requeued once Kafka answers: every RUNNING job is this runner's own)."""
        recovered = False
        while not stop.is_set():
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                if self.step() is None:
                    stop.wait(idle_s)
            except KafkaUnavailableError as exc:
                _log.warning("job runner: %s; retrying in %g s", exc, retry_s)
                recovered = False
                stop.wait(retry_s)


def run_workspace_jobs(
    registry: Registry,
    workspace: str,
    executor: Callable[[Callable[[], WorkspaceSpec | None]], Execute],
    stop: threading.Event,
    *,
    settings: RunnerSettings = RunnerSettings(),
    compaction_work: Callable[[], int] = lambda: 1,
    spec_refresh_s: float = 5.0,
    idle_s: float = 1.0,
    clock_ms: Callable[[], int] = now_ms,
) -> bool:
    """``featurebus jobs run``: wait until the workspace is applied, then run its jobs until ``stop``.

    ``executor`` builds the job executor from a function returning the current spec (re-read at
    most every ``spec_refresh_s``: applied changes reach the runner within seconds). Returns False
    at once for a development workspace (never materialized), or if stopped while waiting.
    """
    spec = wait_for_workspace(registry, workspace, stop=stop)
    if spec is None or not spec.live:
        return False
    cache: dict[str, tuple[float, WorkspaceSpec | None]] = {"spec": (time.monotonic(), spec)}

    def current_spec() -> WorkspaceSpec | None:
        read_at, cached = cache["spec"]
        if time.monotonic() - read_at > spec_refresh_s:
            cached = registry.get(workspace)
            cache["spec"] = (time.monotonic(), cached)
        return cached

    store = registry.jobs(workspace, runner=True)  # fences the workspace's previous runner
    runner = JobRunner(
        store, executor(current_spec), current_spec, settings, clock_ms=clock_ms, compaction_work=compaction_work
    )
    collector = JobsCollector(workspace, lambda: runner.jobs, clock_ms)
    REGISTRY.register(collector)
    try:
        runner.run_forever(stop, idle_s=idle_s)
    finally:
        REGISTRY.unregister(collector)
        store.close()
    return True
