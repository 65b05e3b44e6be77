"""The job runner's ``/metrics``: jobs by state, how long attempts take, their outcomes, rows
written, and the two series the materialization alert rules watch (``KIND_INFO``):

* ``featurebus_materialization_failures_recent{workspace,feature_view}``: materialization jobs of
  the view that ended FAILED within the last ``RECENT_WINDOW_MS`` (Tecton's materialization
  failure alert);
* ``featurebus_materialization_consecutive_failures{workspace,feature_view}``: how many of the
  view's latest ended jobs failed in a row (Tecton's ``FeatureViewTooManyFailures``).

Both come from the runner's latest listing of the jobs (``JobRunner.jobs``, replaced each round),
computed when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.schemas.jobs import Job, JobKind, JobState

__all__ = ["JOB_ATTEMPTS", "JOB_DURATION", "JOB_ROWS", "RECENT_WINDOW_MS", "JobsCollector", "failure_counts"]

RECENT_WINDOW_MS = 3_600_000

JOB_DURATION = Histogram(
    "featurebus_job_duration_seconds",
    "Time one job attempt ran, by its outcome",
    ["workspace", "kind", "state"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400),
)
JOB_ATTEMPTS = Counter("featurebus_job_attempts", "Job attempts run, by outcome", ["workspace", "kind", "state"])
JOB_ROWS = Counter(
    "featurebus_job_rows_written", "Rows batch materialization jobs wrote offline", ["workspace", "feature_view"]
)


def failure_counts(jobs: Sequence[Job], now_ms: int, window_ms: int = RECENT_WINDOW_MS) -> dict[str, tuple[int, int]]:
    """Per materialized view: (failures ended within the window, consecutive latest failures)."""
    ended: dict[str, list[Job]] = {}
    for job in jobs:
        if job.kind is JobKind.MATERIALIZE and job.view is not None:
            bucket = ended.setdefault(job.view, [])
            if job.state.terminal:
                bucket.append(job)
    counts = {}
    for view, view_jobs in ended.items():
        recent = sum(1 for j in view_jobs if j.state is JobState.FAILED and now_ms - j.updated_ms <= window_ms)
        consecutive = 0
        for job in sorted(view_jobs, key=lambda j: j.updated_ms, reverse=True):
            if job.state is not JobState.FAILED:
                break
            consecutive += 1
        counts[view] = (recent, consecutive)
    return counts


class JobsCollector(Collector):
    def __init__(self, workspace: str, jobs: Callable[[], Sequence[Job]], clock_ms: Callable[[], int]) -> None:
        self._workspace = workspace
        self._jobs = jobs
        self._clock_ms = clock_ms

    def collect(self) -> Iterator[Metric]:
        jobs = self._jobs()
        by_state = GaugeMetricFamily("featurebus_jobs", "Jobs by kind and state", labels=["workspace", "kind", "state"])
        counted: dict[tuple[str, str], int] = {(k.value, s.value): 0 for k in JobKind for s in JobState}
        for job in jobs:
            counted[(job.kind.value, job.state.value)] += 1
        for (kind, state), n in sorted(counted.items()):
            by_state.add_metric([self._workspace, kind, state], n)
        yield by_state
        recent = GaugeMetricFamily(
            "featurebus_materialization_failures_recent",
            "Materialization jobs of the view that failed within the last hour",
            labels=["workspace", "feature_view"],
        )
        consecutive = GaugeMetricFamily(
            "featurebus_materialization_consecutive_failures",
            "Latest materialization jobs of the view that failed in a row",
            labels=["workspace", "feature_view"],
        )
        for view, (n_recent, n_consecutive) in sorted(failure_counts(jobs, self._clock_ms()).items()):
            recent.add_metric([self._workspace, view], n_recent)
            consecutive.add_metric([self._workspace, view], n_consecutive)
        yield recent
        yield consecutive
