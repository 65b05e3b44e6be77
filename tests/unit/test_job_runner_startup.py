"""The job runner's start-up (``featurebus jobs run``) over the in-memory registry: it waits for its
workspace, runs the jobs that are due, follows applied changes and leaves development
workspaces alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from featurebus.platform.jobs.client import enqueue_compaction
from featurebus.platform.jobs.runner import Execute, RunnerSettings, run_workspace_jobs
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.jobs import Job, JobState, start
from featurebus.schemas.specs import WorkspaceSpec
from tests.support.specs import spending_workspace

SETTINGS = RunnerSettings(compaction_every_ms=None, progress_every_s=0, cancel_check_every_s=0, retry_backoff_ms=0)


class Recorder:
    """An executor that records the jobs it ran and the spec version each one saw."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int | None]] = []

    def __call__(self, current_spec: Callable[[], WorkspaceSpec | None]) -> Execute:
        def execute(job: Job, progress: Callable[[float], None], cancelled: Callable[[], bool]) -> bool:
            spec = current_spec()
            self.ran.append((job.id, None if spec is None else spec.version))
            progress(1.0)
            return False

        return execute


def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _start(
    registry: MemoryRegistry, recorder: Recorder, stop: threading.Event, spec_refresh_s: float = 5.0
) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(
        daemon=True,
        target=lambda: result.append(
            run_workspace_jobs(
                registry, "prod", recorder, stop, settings=SETTINGS, spec_refresh_s=spec_refresh_s, idle_s=0.01
            )
        ),
    )
    thread.start()
    return thread, result


def test_the_runner_waits_for_its_workspace_then_runs_due_jobs() -> None:
    registry, recorder, stop = MemoryRegistry(), Recorder(), threading.Event()
    create_workspace(registry, "prod", live=True)
    thread, result = _start(registry, recorder, stop)
    time.sleep(0.05)
    assert thread.is_alive() and recorder.ran == []  # nothing applied yet
    spec = apply_workspace(registry, spending_workspace(name="prod"))
    client = registry.jobs("prod")
    job = enqueue_compaction(client, spec, 1_000)
    _eventually(lambda: (client.get(job.id) or job).state is JobState.SUCCESS)
    assert recorder.ran == [(job.id, 1)]
    stop.set()
    thread.join(timeout=5)
    assert result == [True]


def test_a_restarted_runner_requeues_what_its_predecessor_left_running() -> None:
    registry, recorder, stop = MemoryRegistry(), Recorder(), threading.Event()
    spec = apply_workspace(registry, spending_workspace(name="prod"))
    client = registry.jobs("prod")
    job = enqueue_compaction(client, spec, 1_000)
    client.put(start(job, 2_000))  # a runner took it, then died
    thread, _ = _start(registry, recorder, stop)
    _eventually(lambda: (client.get(job.id) or job).state is JobState.SUCCESS)
    assert recorder.ran == [(job.id, 1)]
    stop.set()
    thread.join(timeout=5)


def test_jobs_see_the_spec_applied_after_the_runner_started() -> None:
    registry, recorder, stop = MemoryRegistry(), Recorder(), threading.Event()
    first = apply_workspace(registry, spending_workspace(name="prod"))
    thread, _ = _start(registry, recorder, stop, spec_refresh_s=0.0)
    apply_workspace(registry, first)  # v2
    client = registry.jobs("prod")
    job = enqueue_compaction(client, first, 1_000)
    _eventually(lambda: (client.get(job.id) or job).state is JobState.SUCCESS)
    assert recorder.ran == [(job.id, 2)]
    stop.set()
    thread.join(timeout=5)


def test_a_development_workspace_has_no_runner() -> None:
    registry, recorder = MemoryRegistry(), Recorder()
    create_workspace(registry, "prod", live=False)
    assert run_workspace_jobs(registry, "prod", recorder, threading.Event(), settings=SETTINGS) is False
    assert recorder.ran == []
