"""One behaviour for every ``AlertStateStore`` backend: the in-memory twin and the Kafka topic,
including an evaluator restart that neither loses nor duplicates notifications."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from featurebus.platform.monitoring.alerts import AlertState, AlertStatus, Notification, step
from featurebus.platform.monitoring.evaluator import AlertEvaluator
from featurebus.platform.monitoring.rules import AlertRule, RuleKind
from featurebus.platform.monitoring.state_store import (
    AlertStateStore,
    KafkaAlertStateStore,
    MemoryAlertBus,
    MemoryAlertStateStore,
)
from featurebus.schemas.errors import StaleAlertStateError

# Opens a store over the same backing topic (or bus) each call: a "restarted" evaluator's view.
StoreFactory = Callable[[], AlertStateStore]

STALE = AlertRule("stale", RuleKind.FRESHNESS, "fraud", threshold=60, repeat_interval_s=10)
DOWN = AlertRule("worker-down", RuleKind.COMPONENT_DOWN, "worker")


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def open_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    opened: list[AlertStateStore] = []
    if request.param == "memory":
        bus = MemoryAlertBus()

        def make() -> AlertStateStore:
            store: AlertStateStore = MemoryAlertStateStore(bus)
            opened.append(store)
            return store
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = f"alert-state-{uuid.uuid4().hex[:10]}"

        def make() -> AlertStateStore:
            store: AlertStateStore = KafkaAlertStateStore(bootstrap, topic=topic)
            opened.append(store)
            return store

    yield make
    for store in opened:
        store.close()


def test_empty_store(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.get("stale") is None
    assert store.list() == []


def test_put_get_list_and_delete(open_store: StoreFactory) -> None:
    store = open_store()
    firing = step(STALE, None, 99.0, 1_000)
    ok = step(DOWN, None, 1.0, 1_000)
    store.put(firing)
    store.put(ok)
    assert store.get("stale") == firing
    assert [s.rule for s in store.list()] == ["stale", "worker-down"]
    store.delete("stale")
    assert store.get("stale") is None
    assert store.list() == [ok]


def test_a_reopened_store_sees_the_latest_state(open_store: StoreFactory) -> None:
    store = open_store()
    state = step(STALE, None, 99.0, 0)
    store.put(state)
    later = step(STALE, state, 10.0, 5_000)
    store.put(later)
    assert open_store().get("stale") == later
    assert later.status is AlertStatus.OK


def test_an_older_or_equal_version_is_refused(open_store: StoreFactory) -> None:
    store = open_store()
    state = step(STALE, None, 99.0, 0)
    store.put(state)
    with pytest.raises(StaleAlertStateError, match="version 1 is not newer than the stored 1"):
        open_store().put(state)
    assert store.get("stale") == state


def test_restart_neither_loses_nor_duplicates_notifications(open_store: StoreFactory) -> None:
    """Fire, crash before delivering, restart: the FIRING is sent once; repeat and resolve once."""
    delivered: list[str] = []
    crash_next = [True]

    class Crash(BaseException):
        pass

    def deliver(rule: AlertRule, notification: Notification) -> None:
        if crash_next[0]:
            crash_next[0] = False
            raise Crash
        delivered.append(notification.id)

    with pytest.raises(Crash):
        AlertEvaluator([STALE], open_store(), deliver).evaluate({"stale": 99.0}, 1_000)
    assert delivered == []
    stored = open_store().get("stale")
    assert stored is not None and [n.id for n in stored.outbox] == ["stale/1000/0"]

    evaluator = AlertEvaluator([STALE], open_store(), deliver)  # the restarted evaluator
    evaluator.evaluate({"stale": 99.0}, 2_000)  # delivers the owed FIRING, fires nothing new
    assert delivered == ["stale/1000/0"]
    AlertEvaluator([STALE], open_store(), deliver).evaluate({"stale": 99.0}, 3_000)  # another restart
    assert delivered == ["stale/1000/0"]
    evaluator = AlertEvaluator([STALE], open_store(), deliver)
    evaluator.evaluate({"stale": 99.0}, 11_000)
    evaluator.evaluate({"stale": 5.0}, 12_000)
    evaluator.evaluate({"stale": 5.0}, 13_000)
    assert delivered == ["stale/1000/0", "stale/1000/1", "stale/1000/2"]
    final = open_store().get("stale")
    assert final is not None and final == AlertState.from_json(final.to_json())
    assert final.status is AlertStatus.OK and final.outbox == ()
