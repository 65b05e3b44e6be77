"""The job runner over the in-memory job store, running real compactions of a real offline store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from featurebus.exceptions import InvalidRequestError, JobRunnerFencedError
from featurebus.platform.jobs.client import enqueue_compaction, request_cancel, retry_job, submit_materialization
from featurebus.platform.jobs.execute import job_executor
from featurebus.platform.jobs.runner import JobRunner, RunnerSettings
from featurebus.platform.offline.store import all_parts, list_parts, open_store, write_partition
from featurebus.platform.registry.jobs import MemoryJobBus, MemoryJobStore
from featurebus.schemas.jobs import JobKind, JobState, new_job, start
from featurebus.schemas.specs import WorkspaceSpec
from tests.support.specs import spending_workspace

SETTINGS = RunnerSettings(compaction_every_ms=None, progress_every_s=0, cancel_check_every_s=0, retry_backoff_ms=0)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


def _small_files(root: Path, spec: WorkspaceSpec, flushes: int = 5) -> None:
    open_store(root)
    source = spec.stream_sources[0]
    for i in range(flushes):
        frame = pd.DataFrame(
            {
                "user_id": ["u1"],
                "amount": [float(i)],
                "ts": pd.to_datetime([1_700_000_000_000 + i], unit="ms", utc=True),
            }
        )
        write_partition(root, spec.name, source, source.kafka.topics[0], 0, frame, [i])


def _runner(
    bus: MemoryJobBus, root: Path, spec: WorkspaceSpec, clock: Clock, settings: RunnerSettings = SETTINGS
) -> JobRunner:
    return JobRunner(
        MemoryJobStore(bus, runner=True),
        job_executor("127.0.0.1:1", root, lambda: spec, 0),
        lambda: spec,
        settings,
        clock,
    )


def test_a_compaction_job_runs_to_success(tmp_path: Path) -> None:
    spec, bus, clock = spending_workspace(), MemoryJobBus(), Clock()
    _small_files(tmp_path, spec)
    client = MemoryJobStore(bus)
    job = enqueue_compaction(client, spec, clock())
    done = _runner(bus, tmp_path, spec, clock).step()
    assert done is not None and done.id == job.id
    assert client.get(job.id) == done and done.state is JobState.SUCCESS and done.progress == 1.0
    assert len(all_parts(tmp_path, spec.name, "transactions")) == 1


def test_a_cancel_request_cancels_a_pending_job_and_a_running_one(tmp_path: Path) -> None:
    spec, bus, clock = spending_workspace(), MemoryJobBus(), Clock()
    _small_files(tmp_path, spec)
    client = MemoryJobStore(bus)
    pending = enqueue_compaction(client, spec, clock())
    request_cancel(client, pending.id)
    runner = _runner(bus, tmp_path, spec, clock)
    assert runner.step() is None
    assert client.get(pending.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    with pytest.raises(InvalidRequestError, match="already CANCELLED"):
        request_cancel(client, pending.id)
    # Requested while it runs: the compaction checks between merges and stops before the first.
    running = enqueue_compaction(client, spec, clock())
    client.put(start(running, clock()))
    client.request_cancel(running.id, running.attempt)
    runner.recover()  # requeued, then its cancel request applies
    runner.step()
    assert client.get(running.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert len(list_parts(tmp_path, spec.name, "transactions")) == 5  # nothing merged
    again = retry_job(client, running.id, clock())
    assert (again.state, again.attempt) == (JobState.PENDING, 2)
    assert runner.step().state is JobState.SUCCESS  # type: ignore[union-attr]  # attempt 2 is not cancelled


def test_failures_carry_the_error_and_managed_retries_retry(tmp_path: Path) -> None:
    spec, bus, clock = spending_workspace(), MemoryJobBus(), Clock()
    client = MemoryJobStore(bus)
    # A view that disappeared after the job was queued: the real executor fails it.
    job = new_job(
        "gone",
        spec.name,
        JobKind.MATERIALIZE,
        clock(),
        view="removed_view",
        start_ms=0,
        end_ms=10,
        offline=True,
        max_attempts=2,
    )
    client.put(job)
    runner = _runner(bus, tmp_path, spec, clock)
    failed = runner.step()
    assert failed is not None and failed.state is JobState.FAILED
    assert "removed_view" in (failed.error or "")
    second = runner.step()  # the managed retry
    assert second is not None and (second.state, second.attempt) == (JobState.FAILED, 2)
    assert runner.step() is None  # no attempts left


def test_a_new_runner_requeues_running_jobs_and_fences_the_old_one(tmp_path: Path) -> None:
    spec, bus, clock = spending_workspace(), MemoryJobBus(), Clock()
    _small_files(tmp_path, spec)
    old = _runner(bus, tmp_path, spec, clock)
    client = MemoryJobStore(bus)
    job = enqueue_compaction(client, spec, clock())
    client.put(start(job, clock()))  # as if the old runner died while running it
    new = _runner(bus, tmp_path, spec, clock)
    assert [j.id for j in new.recover()] == [job.id]
    assert client.get(job.id).state is JobState.PENDING  # type: ignore[union-attr]
    with pytest.raises(JobRunnerFencedError):
        old.step()
    assert new.step().state is JobState.SUCCESS  # type: ignore[union-attr]


def test_periodic_compaction_is_enqueued_once_per_period_when_there_is_work(tmp_path: Path) -> None:
    from featurebus.platform.offline.compaction import compaction_work

    spec, bus, clock = spending_workspace(), MemoryJobBus(), Clock()
    settings = RunnerSettings(compaction_every_ms=3_600_000, progress_every_s=0)
    runner = JobRunner(
        MemoryJobStore(bus, runner=True),
        job_executor("127.0.0.1:1", tmp_path, lambda: spec, 0),
        lambda: spec,
        settings,
        clock,
        compaction_work=lambda: compaction_work(tmp_path, spec.name),
    )
    assert runner.step() is None  # nothing to compact: no job
    _small_files(tmp_path, spec)
    assert compaction_work(tmp_path, spec.name) == 1
    runner.step()
    _small_files(tmp_path, spec)  # rewrites the same files: work again, but within the same period
    runner.step()
    jobs = MemoryJobStore(bus).list()
    assert [(j.kind, j.origin, j.state) for j in jobs] == [(JobKind.COMPACT, "compaction", JobState.SUCCESS)]
    clock.ms += 3_600_000
    assert runner.step() is not None  # the next period
    assert compaction_work(tmp_path, spec.name) == 0


def test_development_workspaces_and_stream_views_are_refused() -> None:
    spec, bus = spending_workspace(), MemoryJobBus()
    store = MemoryJobStore(bus)
    with pytest.raises(InvalidRequestError, match="stream feature view"):
        submit_materialization(store, spec, "user_spending", 0, 10, 0)
    dev = WorkspaceSpec(spec.name, live=False)
    with pytest.raises(InvalidRequestError, match="development workspace"):
        submit_materialization(store, dev, "user_spending", 0, 10, 0)


def _batch_workspace(live: bool = True, **view_fields: object) -> WorkspaceSpec:
    from featurebus.schemas.specs import BatchFeatureViewSpec, TransformationSpec

    view = BatchFeatureViewSpec(
        name="daily",
        sources=("src",),
        entities=("user",),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=TransformationSpec("pandas", "f", "def f(df):\n    return df\n"),
        aggregations=(),
        offline=True,
        batch_schedule_ms=86_400_000,
        feature_start_ms=10 * 86_400_000,
        **view_fields,
    )  # type: ignore[arg-type]
    return WorkspaceSpec("ws", batch_feature_views=(view,), live=live, version=4)


def test_apply_backfills_use_the_schedule_ids_on_create_and_versioned_ids_after_a_change() -> None:
    from featurebus.platform.jobs.client import enqueue_apply_backfills, enqueue_scheduled

    store = MemoryJobStore(MemoryJobBus())
    now = 13 * 86_400_000 + 5
    created, notes = enqueue_apply_backfills(store, _batch_workspace(), [("daily", False)], now)
    assert [(j.id, j.start_ms, j.end_ms, j.origin) for j in created] == [
        ("sched-daily-backfill", 10 * 86_400_000, 13 * 86_400_000, "apply")
    ] and notes == []
    assert enqueue_scheduled(store, _batch_workspace(), now) == []  # the runner will not queue it again
    again, _ = enqueue_apply_backfills(store, _batch_workspace(), [("daily", True)], now)
    assert [j.id for j in again] == ["apply-v4-daily-backfill"]
    assert enqueue_apply_backfills(store, _batch_workspace(), [("daily", True)], now)[0] == []  # idempotent
    later = enqueue_scheduled(store, _batch_workspace(), now + 86_400_000)
    assert [(j.id, j.origin) for j in later] == [(f"sched-daily-{13 * 86_400_000}", "schedule")]


def test_apply_backfills_say_why_nothing_was_queued() -> None:
    from featurebus.platform.jobs.client import enqueue_apply_backfills

    store = MemoryJobStore(MemoryJobBus())
    jobs, notes = enqueue_apply_backfills(store, _batch_workspace(live=False), [("daily", False)], 0)
    assert jobs == [] and "development workspace" in notes[0]
    jobs, notes = enqueue_apply_backfills(store, _batch_workspace(batch_trigger="manual"), [("daily", False)], 0)
    assert jobs == [] and "featurebus materialize daily" in notes[0]
