"""Which periods a batch view's schedule calls for (pure)."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given
from hypothesis import strategies as st

from featurebus.platform.jobs.schedule import backfill_ranges, due_ranges, schedule_cursor, scheduled
from featurebus.schemas.jobs import Job, JobKind, new_job
from featurebus.schemas.specs import BatchFeatureViewSpec, TransformationSpec

DAY = 86_400_000
HOUR = 3_600_000
VIEW = BatchFeatureViewSpec(
    name="daily",
    sources=("src",),
    entities=("user",),
    join_keys=("user_id",),
    timestamp_field="ts",
    transformation=TransformationSpec("pandas", "f", "def f(df):\n    return df\n"),
    aggregations=(),
    offline=True,
    batch_schedule_ms=DAY,
    feature_start_ms=10 * DAY + 5 * HOUR,
)


def _as_jobs(ranges: list, origin: str = "schedule") -> list[Job]:
    return [
        new_job(
            r.job_id,
            "ws",
            JobKind.MATERIALIZE,
            0,
            view=r.view,
            start_ms=r.start_ms,
            end_ms=r.end_ms,
            offline=True,
            origin=origin,
        )
        for r in ranges
    ]


def test_nothing_is_due_before_the_first_period_ends() -> None:
    assert due_ranges(VIEW, 10 * DAY + 23 * HOUR, []) == []


def test_one_backfill_then_one_job_per_period() -> None:
    first = due_ranges(VIEW, 13 * DAY + HOUR, [])
    assert [(r.job_id, r.start_ms, r.end_ms) for r in first] == [("sched-daily-backfill", 10 * DAY, 13 * DAY)]
    jobs = _as_jobs(first)
    assert due_ranges(VIEW, 13 * DAY + 2 * HOUR, jobs) == []  # never twice
    later = due_ranges(VIEW, 15 * DAY, jobs)
    assert [(r.job_id, r.start_ms, r.end_ms) for r in later] == [
        (f"sched-daily-{13 * DAY}", 13 * DAY, 14 * DAY),
        (f"sched-daily-{14 * DAY}", 14 * DAY, 15 * DAY),
    ]


def test_incremental_backfills_are_one_job_per_period() -> None:
    view = dataclasses.replace(VIEW, incremental_backfills=True)
    due = due_ranges(view, 13 * DAY, [])
    assert [(r.start_ms, r.end_ms) for r in due] == [(10 * DAY, 11 * DAY), (11 * DAY, 12 * DAY), (12 * DAY, 13 * DAY)]
    assert due_ranges(view, 13 * DAY, _as_jobs(due)) == []


def test_apply_backfills_move_the_cursor_and_user_jobs_do_not() -> None:
    applied = _as_jobs(backfill_ranges(VIEW, 12 * DAY, "apply-v3"), origin="apply")
    user = _as_jobs(backfill_ranges(VIEW, 20 * DAY, "mine"), origin="user")
    assert schedule_cursor("daily", [*applied, *user]) == 12 * DAY
    assert [r.start_ms for r in due_ranges(VIEW, 14 * DAY, [*applied, *user])] == [12 * DAY, 13 * DAY]


def test_unscheduled_views() -> None:
    assert not scheduled(dataclasses.replace(VIEW, feature_start_ms=None))
    assert not scheduled(dataclasses.replace(VIEW, batch_trigger="manual"))
    assert due_ranges(dataclasses.replace(VIEW, batch_trigger="manual"), 20 * DAY, []) == []


def test_a_changed_schedule_rounds_the_cursor_down_leaving_no_gap() -> None:
    hourly_done = _as_jobs(backfill_ranges(dataclasses.replace(VIEW, batch_schedule_ms=HOUR), 12 * DAY + 7 * HOUR, "s"))
    due = due_ranges(VIEW, 14 * DAY, hourly_done)
    assert [r.start_ms for r in due] == [12 * DAY, 13 * DAY]


@given(
    st.lists(st.integers(0, 40 * HOUR), min_size=1, max_size=12), st.booleans(), st.sampled_from([HOUR, 6 * HOUR, DAY])
)
def test_ticks_cover_every_elapsed_period_exactly_once(ticks: list[int], incremental: bool, step: int) -> None:
    view = dataclasses.replace(VIEW, batch_schedule_ms=step, incremental_backfills=incremental, feature_start_ms=DAY)
    jobs: list[Job] = []
    now = 0
    for dt in sorted(ticks):
        now = DAY + dt
        jobs += _as_jobs(due_ranges(view, now, jobs))
    covered = sorted((j.start_ms or 0, j.end_ms or 0) for j in jobs)
    for (_, end), (start, _) in itertools.pairwise(covered):
        assert end == start  # contiguous, no overlap
    if covered:
        assert covered[0][0] == DAY and covered[-1][1] == now // step * step
    else:
        assert now // step * step <= DAY
    assert len({j.id for j in jobs}) == len(jobs)
