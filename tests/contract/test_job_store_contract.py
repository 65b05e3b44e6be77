"""One behaviour for every ``JobStore`` backend: the in-memory twin and the Kafka topic."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest

from featurebus.exceptions import JobRunnerFencedError
from featurebus.platform.registry.jobs import JobStore, KafkaJobStore, MemoryJobBus, MemoryJobStore
from featurebus.schemas.jobs import Job, JobKind, JobState, new_job, report_progress, start

# make(runner) opens another handle on the same workspace's jobs.
StoreFactory = Callable[[bool], JobStore]


# The Kafka case is marked so `pytest -m "not kafka"` (make test-fast) starts no broker: the
# conftest marks only tests that name a broker fixture, and this one asks for it at run time.
@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    opened: list[JobStore] = []
    if request.param == "memory":
        bus = MemoryJobBus()

        def make(runner: bool = False) -> JobStore:
            store: JobStore = MemoryJobStore(bus, runner=runner)
            opened.append(store)
            return store
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        workspace = f"contract-{uuid.uuid4().hex[:8]}"

        def make(runner: bool = False) -> JobStore:
            store = KafkaJobStore(bootstrap, workspace, runner=runner)
            opened.append(store)
            return store

    yield make
    for store in opened:
        store.close()


def _job(job_id: str, created_ms: int = 1_000) -> Job:
    return new_job(job_id, "ws", JobKind.MATERIALIZE, created_ms, view="v", start_ms=0, end_ms=10, offline=True)


def test_an_empty_store_has_no_jobs(make_store: StoreFactory) -> None:
    store = make_store(False)
    assert store.list() == []
    assert store.get("nope") is None
    assert not store.cancel_requested("nope", 1)
    assert store.cancel_requests() == {}


def test_put_then_get_and_list_oldest_first(make_store: StoreFactory) -> None:
    store = make_store(False)
    later, earlier = _job("b", 2_000), _job("a", 3_000)
    store.put(later)
    store.put(earlier)
    assert store.get("b") == later
    assert [j.id for j in store.list()] == ["b", "a"]


def test_the_latest_record_of_a_job_wins(make_store: StoreFactory) -> None:
    submitter, runner = make_store(False), make_store(True)
    job = _job("j")
    submitter.put(job)
    running = report_progress(start(job, 2_000), 0.5, 2_500)
    runner.put(running)
    assert submitter.get("j") == running
    assert [j.state for j in submitter.list()] == [JobState.RUNNING]


def test_another_handle_sees_writes(make_store: StoreFactory) -> None:
    writer = make_store(False)
    reader = make_store(False)
    assert reader.list() == []
    writer.put(_job("x"))
    assert [j.id for j in reader.list()] == ["x"]
    writer.put(dataclasses.replace(_job("x"), online=True))
    assert reader.get("x") is not None and reader.get("x").online  # type: ignore[union-attr]


def test_cancel_requests_name_one_attempt(make_store: StoreFactory) -> None:
    store = make_store(False)
    store.put(_job("c"))
    store.request_cancel("c", 1)
    assert store.cancel_requested("c", 1)
    assert not store.cancel_requested("c", 2)
    assert not store.cancel_requested("other", 1)
    store.request_cancel("c", 2)
    assert store.cancel_requested("c", 2) and not store.cancel_requested("c", 1)
    store.request_cancel("d", 1)
    assert store.cancel_requests() == {"c": 2, "d": 1}


def test_a_new_runner_fences_the_previous_one(make_store: StoreFactory) -> None:
    old = make_store(True)
    job = _job("f")
    old.put(job)
    new = make_store(True)
    with pytest.raises(JobRunnerFencedError):
        old.put(start(job, 2_000))
    new.put(start(job, 3_000))
    submitter = make_store(False)  # submitters are never fenced
    submitter.put(_job("g"))
    assert {j.id: j.state for j in submitter.list()} == {"f": JobState.RUNNING, "g": JobState.PENDING}
    assert submitter.get("f") is not None and submitter.get("f").updated_ms == 3_000  # type: ignore[union-attr]
