"""The job state machine: every (state, transition) pair, and random sequences of them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurebus.exceptions import InvalidJobTransitionError, StoreFormatError
from featurebus.schemas.jobs import (
    TRANSITIONS,
    Job,
    JobKind,
    JobState,
    Transition,
    apply_transition,
    new_job,
)

LEGAL = {
    (JobState.PENDING, Transition.START): JobState.RUNNING,
    (JobState.PENDING, Transition.CANCEL): JobState.CANCELLED,
    (JobState.RUNNING, Transition.PROGRESS): JobState.RUNNING,
    (JobState.RUNNING, Transition.SUCCEED): JobState.SUCCESS,
    (JobState.RUNNING, Transition.FAIL): JobState.FAILED,
    (JobState.RUNNING, Transition.CANCEL): JobState.CANCELLED,
    (JobState.RUNNING, Transition.REQUEUE): JobState.PENDING,
    (JobState.FAILED, Transition.RETRY): JobState.PENDING,
    (JobState.CANCELLED, Transition.RETRY): JobState.PENDING,
}


def _job(state: JobState = JobState.PENDING) -> Job:
    job = new_job("j1", "ws", JobKind.MATERIALIZE, 1_000, view="v", start_ms=0, end_ms=100, online=True)
    return Job(**{**job.__dict__, "state": state})


@pytest.mark.parametrize(("state", "transition"), list(itertools.product(JobState, Transition)))
def test_every_state_and_transition(state: JobState, transition: Transition) -> None:
    job = _job(state)
    if (state, transition) in LEGAL:
        after = apply_transition(job, transition, 2_000, progress=0.5, error="boom")
        assert after.state is LEGAL[(state, transition)]
        assert after.updated_ms == 2_000
    else:
        with pytest.raises(InvalidJobTransitionError, match=f"job j1 is {state.value}: it cannot {transition.value}"):
            apply_transition(job, transition, 2_000, progress=0.5, error="boom")


def test_the_table_is_the_documented_one() -> None:
    assert TRANSITIONS == LEGAL
    assert {s for s in JobState if s.terminal} == {JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED}


def test_success_is_final_and_says_so() -> None:
    with pytest.raises(InvalidJobTransitionError, match="possible: none: it is final"):
        apply_transition(_job(JobState.SUCCESS), Transition.RETRY, 2_000)


def test_retry_starts_a_new_attempt_from_zero() -> None:
    failed = apply_transition(apply_transition(_job(), Transition.START, 2), Transition.FAIL, 3, error="disk full")
    assert failed.error == "disk full"
    again = apply_transition(failed, Transition.RETRY, 4)
    assert (again.state, again.attempt, again.progress, again.error) == (JobState.PENDING, 2, 0.0, None)


@pytest.mark.parametrize("bad", [None, -0.1, 1.5])
def test_progress_must_be_a_fraction(bad: float | None) -> None:
    with pytest.raises(InvalidJobTransitionError, match=r"progress must be within 0\.\.1"):
        apply_transition(_job(JobState.RUNNING), Transition.PROGRESS, 2, progress=bad)


def test_a_range_must_not_be_empty() -> None:
    with pytest.raises(InvalidJobTransitionError, match="end time must be after the start time"):
        new_job("j", "ws", JobKind.MATERIALIZE, 0, view="v", start_ms=10, end_ms=10)


def test_json_round_trip_and_version_check() -> None:
    job = apply_transition(_job(JobState.RUNNING), Transition.PROGRESS, 5, progress=0.25)
    assert Job.from_json(job.to_json()) == job
    with pytest.raises(StoreFormatError, match="delete the workspace's jobs topic"):
        Job.from_json(job.to_json().replace(b'"format":1', b'"format":99'))


def test_unknown_fields_of_a_same_version_record_are_ignored() -> None:
    job = _job()
    assert Job.from_json(job.to_json()[:-1] + b',"later_field":3}') == job


@given(st.lists(st.tuples(st.sampled_from(list(Transition)), st.floats(0, 1), st.integers(0, 10)), max_size=40))
def test_random_sequences_keep_the_invariants(steps: list[tuple[Transition, float, int]]) -> None:
    job = _job()
    now = job.updated_ms
    for transition, progress, dt in steps:
        now += dt
        before = job
        try:
            job = apply_transition(job, transition, now, progress=progress, error="e")
        except InvalidJobTransitionError:
            assert (before.state, transition) not in LEGAL
            continue
        assert (before.state, transition) in LEGAL
        assert 0.0 <= job.progress <= 1.0
        assert job.updated_ms >= before.updated_ms  # time never goes backwards
        assert job.attempt == before.attempt + (transition is Transition.RETRY)
        assert job.restarts == before.restarts + (transition is Transition.REQUEUE)
        if transition is Transition.PROGRESS:
            assert job.progress >= before.progress  # progress only grows within an attempt
        if job.state is JobState.SUCCESS:
            assert job.progress == 1.0
        if job.state is JobState.PENDING:
            assert job.progress == 0.0
        assert (job.id, job.view, job.start_ms, job.end_ms, job.created_ms) == (
            before.id,
            before.view,
            before.start_ms,
            before.end_ms,
            before.created_ms,
        )
