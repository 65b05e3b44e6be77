"""The stream worker's start-up and registry following, over the in-memory registry: it waits for
its workspace, skips a development one, picks up each new version and stops on deletion."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import pytest

from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace, delete_workspace
from featurebus.schemas.errors import KafkaUnavailableError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.runtime.workspace_watch import (
    WorkspaceDeletedError,
    WorkspaceWatch,
    await_source_topics,
    live_workspace,
    missing_source_topics,
)
from tests.support.specs import spending_workspace


def _eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _in_thread(target: Callable[[], WorkspaceSpec | None]) -> tuple[threading.Thread, list[WorkspaceSpec | None]]:
    result: list[WorkspaceSpec | None] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    return thread, result


def test_the_worker_waits_until_its_created_workspace_is_applied() -> None:
    registry = MemoryRegistry()
    create_workspace(registry, "prod", live=True)  # `featurebus up` creates it before anything is applied
    stop = threading.Event()
    thread, result = _in_thread(lambda: live_workspace(registry, "prod", stop))
    time.sleep(0.05)
    assert thread.is_alive() and result == []  # version 0 holds no definitions: keep waiting
    applied = apply_workspace(registry, spending_workspace(name="prod"))
    thread.join(timeout=5)
    assert result == [applied]


def test_a_development_workspace_is_never_materialized() -> None:
    registry = MemoryRegistry()
    create_workspace(registry, "dev", live=False)
    assert live_workspace(registry, "dev") is None


def test_waiting_ends_when_the_worker_is_stopped() -> None:
    stop = threading.Event()
    thread, result = _in_thread(lambda: live_workspace(MemoryRegistry(), "nowhere", stop))
    stop.set()
    thread.join(timeout=5)
    assert result == [None]


def test_the_watch_reports_each_new_version_once() -> None:
    registry = MemoryRegistry()
    first = apply_workspace(registry, spending_workspace(name="prod"))
    watch = WorkspaceWatch(registry, "prod", poll_s=0.05)
    watch.start()
    try:
        _eventually(lambda: watch.latest is not None)
        assert watch.next_version(first) is None  # the version the worker already runs
        second = apply_workspace(registry, dataclasses.replace(first, feature_services=()))
        _eventually(lambda: watch.next_version(first) is not None)
        assert watch.next_version(first) == second
        assert watch.next_version(second) is None
        apply_workspace(registry, spending_workspace(name="other"))  # another workspace: no news for prod
        time.sleep(0.1)
        assert watch.next_version(second) is None
    finally:
        watch.stop()
        watch.join(timeout=5)


def test_the_watch_stops_the_worker_when_the_workspace_is_deleted() -> None:
    registry = MemoryRegistry()
    spec = apply_workspace(registry, spending_workspace(name="prod"))
    watch = WorkspaceWatch(registry, "prod", poll_s=0.05)
    watch.start()
    _eventually(lambda: watch.latest is not None)
    delete_workspace(registry, "prod", force=True)
    watch.join(timeout=5)
    assert not watch.is_alive()
    with pytest.raises(WorkspaceDeletedError, match="'prod' was deleted"):
        watch.next_version(spec)


class _UnreachableRegistry(MemoryRegistry):
    """The registry of a broker that stopped answering: its follower fails as Kafka's does."""

    def follow(self) -> _FailingFollower:  # type: ignore[override]
        return _FailingFollower()


class _FailingFollower:
    def poll(self, timeout_s: float) -> dict[str, WorkspaceSpec]:
        raise KafkaUnavailableError("no broker answered for 15 s")

    def close(self) -> None:
        pass


def test_an_unreachable_registry_is_raised_to_the_processing_loop() -> None:
    watch = WorkspaceWatch(_UnreachableRegistry(), "prod", poll_s=0.05)
    watch.start()
    watch.join(timeout=5)
    with pytest.raises(KafkaUnavailableError, match="no broker answered"):
        watch.next_version(spending_workspace(name="prod"))


class Bus:
    """The topics that exist, as the worker's ``partition_counts`` call would find them."""

    def __init__(self, *topics: str) -> None:
        self.topics = set(topics)

    def existing(self, wanted: list[str]) -> list[str]:
        return [t for t in wanted if t in self.topics]


def test_a_worker_waits_for_its_missing_source_topic_and_reports_it(caplog: pytest.LogCaptureFixture) -> None:
    registry, bus, stop = MemoryRegistry(), Bus(), threading.Event()
    spec = apply_workspace(registry, spending_workspace(topic="transactions", name="prod"))
    seen: list[list[str]] = []
    thread, result = _in_thread(
        lambda: await_source_topics(registry, spec, bus.existing, check_s=0.01, stop=stop, on_missing=seen.append)
    )
    _eventually(lambda: len(seen) >= 3)
    assert thread.is_alive() and seen[-1] == ["transactions"]
    assert "source topics ['transactions'] do not exist yet; the stream worker waits" in caplog.text
    assert caplog.text.count("do not exist yet") == 1  # reported when it changes, not every check
    bus.topics.add("transactions")
    thread.join(timeout=5)
    assert result == [spec] and seen[-1] == []


def test_a_fixed_topic_name_applied_while_waiting_is_picked_up() -> None:
    registry, bus = MemoryRegistry(), Bus("payments")
    typo = apply_workspace(registry, spending_workspace(topic="transactons", name="prod"))
    thread, result = _in_thread(lambda: await_source_topics(registry, typo, bus.existing, check_s=0.01))
    time.sleep(0.05)
    assert thread.is_alive()
    fixed = apply_workspace(registry, spending_workspace(topic="payments", name="prod"))
    thread.join(timeout=5)
    assert result == [fixed]


def test_deleting_the_workspace_ends_the_wait_for_topics() -> None:
    registry = MemoryRegistry()
    spec = apply_workspace(registry, spending_workspace(name="prod"))
    errors: list[Exception] = []

    def wait() -> None:
        try:
            await_source_topics(registry, spec, Bus().existing, check_s=0.01)
        except WorkspaceDeletedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    delete_workspace(registry, "prod", force=True)
    thread.join(timeout=5)
    assert len(errors) == 1


def test_missing_source_topics_lists_the_absent_ones() -> None:
    spec = spending_workspace(topic="transactions", name="prod")
    assert missing_source_topics(spec, Bus().existing) == ["transactions"]
    assert missing_source_topics(spec, Bus("transactions").existing) == []
