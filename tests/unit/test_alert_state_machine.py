"""The alert state machine: table-driven transitions plus invariants over any observation history,
and the evaluator's restart guarantee with crashes injected anywhere in a delivery."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.monitoring.alerts import AlertState, AlertStatus, Notification, NotificationKind, step
from featurebus.platform.monitoring.evaluator import AlertEvaluator
from featurebus.platform.monitoring.rules import AlertRule, RuleKind
from featurebus.platform.monitoring.state_store import MemoryAlertBus, MemoryAlertStateStore
from featurebus.schemas.errors import DefinitionError, StaleAlertStateError, StoreFormatError

STALE = AlertRule("stale", RuleKind.FRESHNESS, "fraud", threshold=60, repeat_interval_s=10)
SLOW = AlertRule("slow", RuleKind.SERVING_P99, "svc", threshold=50, for_s=5, repeat_interval_s=30)


def _kinds(state: AlertState) -> list[NotificationKind]:
    return [n.kind for n in state.outbox]


def test_fires_once_repeats_at_the_interval_and_resolves() -> None:
    state = step(STALE, None, 10.0, 0)
    assert state.status is AlertStatus.OK and state.outbox == ()
    state = step(STALE, state, 61.0, 1_000)
    assert state.status is AlertStatus.FIRING and _kinds(state) == [NotificationKind.FIRING]
    state = step(STALE, state, 70.0, 10_999)  # 9.999 s after firing: not yet
    assert _kinds(state) == [NotificationKind.FIRING]
    state = step(STALE, state, 80.0, 11_000)
    assert _kinds(state) == [NotificationKind.FIRING, NotificationKind.REPEAT]
    state = step(STALE, state, 1.0, 12_000)
    assert state.status is AlertStatus.OK
    assert _kinds(state) == [NotificationKind.FIRING, NotificationKind.REPEAT, NotificationKind.RESOLVED]
    assert [n.id for n in state.outbox] == ["stale/1000/0", "stale/1000/1", "stale/1000/2"]
    assert [n.value for n in state.outbox] == [61.0, 80.0, 1.0]


def test_pending_fires_only_after_for_s_and_a_cleared_pending_sends_nothing() -> None:
    state = step(SLOW, None, 60.0, 0)
    assert state.status is AlertStatus.PENDING and state.outbox == ()
    state = step(SLOW, state, 10.0, 3_000)  # cleared before for_s: never announced
    assert state.status is AlertStatus.OK and state.outbox == ()
    state = step(SLOW, state, 60.0, 4_000)
    state = step(SLOW, state, 60.0, 8_999)
    assert state.status is AlertStatus.PENDING
    state = step(SLOW, state, 60.0, 9_000)
    assert state.status is AlertStatus.FIRING and _kinds(state) == [NotificationKind.FIRING]
    assert state.since_ms == 9_000


def test_no_observation_changes_nothing() -> None:
    firing = step(STALE, None, 100.0, 0)
    assert step(STALE, firing, None, 1_000_000) is firing
    assert step(STALE, None, None, 0) == AlertState("stale")


def test_every_observation_is_a_new_version() -> None:
    state = step(STALE, None, 1.0, 0)
    assert step(STALE, state, 1.0, 1).version == state.version + 1


def test_state_round_trips_through_json_and_refuses_other_formats() -> None:
    state = step(STALE, step(STALE, None, 99.0, 5), 99.5, 20_000)
    assert AlertState.from_json(state.to_json()) == state
    with pytest.raises(StoreFormatError, match="delete the alert state topic"):
        AlertState.from_json(state.to_json().replace(b'"format":1', b'"format":9'))


observations = st.lists(st.tuples(st.none() | st.floats(0, 120, allow_nan=False), st.integers(0, 20_000)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(history=observations, for_s=st.sampled_from([0.0, 5.0, 30.0]), repeat_s=st.sampled_from([1.0, 10.0, 60.0]))
def test_notifications_form_well_ordered_episodes(
    history: list[tuple[float | None, int]], for_s: float, repeat_s: float
) -> None:
    rule = dataclasses.replace(STALE, for_s=for_s, repeat_interval_s=repeat_s)
    state: AlertState | None = None
    now = 0
    sent: list[Notification] = []
    for value, dt in history:
        now += dt
        before = state
        state = step(rule, state, value, now)
        new = state.outbox[len(before.outbox) if before else 0 :]
        assert len(new) <= 1  # one observation says at most one thing
        sent += new
        if value is not None:
            # The state always agrees with the latest observation once for_s allows it.
            assert (state.status is AlertStatus.OK) == (value <= 60) or state.status is AlertStatus.PENDING
    ids = [n.id for n in sent]
    assert len(ids) == len(set(ids))
    episodes: dict[int, list[NotificationKind]] = {}
    for n in sent:
        episodes.setdefault(n.episode_ms, []).append(n.kind)
    for kinds in episodes.values():
        assert kinds[0] is NotificationKind.FIRING
        assert all(k is NotificationKind.REPEAT for k in kinds[1:-1])
        assert kinds.count(NotificationKind.RESOLVED) <= 1 and NotificationKind.RESOLVED not in kinds[:-1]
    # Episodes do not overlap: each one resolves before the next fires.
    order = [n.kind for n in sent if n.kind is not NotificationKind.REPEAT]
    assert all(a is not b for a, b in itertools.pairwise(order))
    repeats_by_episode = [
        [n.at_ms for n in sent if n.episode_ms == e and n.kind is not NotificationKind.RESOLVED] for e in episodes
    ]
    for times in repeats_by_episode:
        assert all(b - a >= repeat_s * 1000 for a, b in itertools.pairwise(times))


class Crash(BaseException):
    """A process dying mid-round: not an ``Exception``, so nothing in the evaluator catches it."""


def _run(
    rules: list[AlertRule],
    rounds: list[tuple[dict[str, float | None], int]],
    crash_before: set[int],
    crash_after: set[int],
) -> list[str]:
    """Deliveries (notification ids) of an evaluator that dies before or after the n-th delivery
    attempt in the given sets; each time a new evaluator over the same bus re-runs the round."""
    bus = MemoryAlertBus()
    delivered: list[str] = []
    attempts = 0

    def deliver(rule: AlertRule, notification: object) -> None:
        nonlocal attempts
        attempts += 1
        if attempts in crash_before:
            raise Crash
        delivered.append(notification.id)  # type: ignore[attr-defined]
        if attempts in crash_after:
            raise Crash

    now = 0
    for values, dt in rounds:
        now += dt
        while True:
            try:
                AlertEvaluator(rules, MemoryAlertStateStore(bus), deliver).evaluate(values, now)
                break
            except Crash:
                continue  # "restarted by the supervisor": the same round again
    return delivered


rounds_strategy = st.lists(
    st.tuples(
        st.fixed_dictionaries(
            {"stale": st.none() | st.sampled_from([0.0, 100.0]), "slow": st.none() | st.sampled_from([0.0, 100.0])}
        ),
        st.integers(0, 40_000),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(rounds=rounds_strategy, crashes=st.sets(st.integers(1, 40), max_size=6))
def test_a_crash_before_delivering_neither_loses_nor_duplicates(
    rounds: list[tuple[dict[str, float | None], int]], crashes: set[int]
) -> None:
    reference = _run([STALE, SLOW], rounds, set(), set())
    assert _run([STALE, SLOW], rounds, crashes, set()) == reference
    assert len(reference) == len(set(reference))


@settings(max_examples=200, deadline=None)
@given(rounds=rounds_strategy, crashes=st.sets(st.integers(1, 40), max_size=6))
def test_a_crash_after_delivering_repeats_only_that_notification_with_its_id(
    rounds: list[tuple[dict[str, float | None], int]], crashes: set[int]
) -> None:
    reference = _run([STALE, SLOW], rounds, set(), set())
    crashed = _run([STALE, SLOW], rounds, set(), crashes)
    assert list(dict.fromkeys(crashed)) == reference  # deduplicated by id, the same sequence
    assert all(count <= 1 + len(crashes) for count in Counter(crashed).values())


def test_a_failing_channel_keeps_the_notification_for_the_next_round_and_counts_it() -> None:
    store = MemoryAlertStateStore()
    failures = iter([True, False])
    delivered = []

    def deliver(rule: AlertRule, notification: object) -> None:
        if next(failures):
            raise ConnectionRefusedError("smtp down")
        delivered.append(notification.id)  # type: ignore[attr-defined]

    evaluator = AlertEvaluator([STALE], store, deliver)
    [state] = evaluator.evaluate({"stale": 100.0}, 0)
    assert evaluator.delivery_failures == 1 and delivered == [] and len(state.outbox) == 1
    [state] = evaluator.evaluate({}, 1_000)
    assert delivered == ["stale/0/0"] and state.outbox == ()
    assert store.get("stale") == state


def test_two_evaluators_at_once_are_refused() -> None:
    bus = MemoryAlertBus()
    first = MemoryAlertStateStore(bus)
    state = step(STALE, None, 1.0, 0)
    first.put(state)
    with pytest.raises(StaleAlertStateError, match="run exactly one"):
        MemoryAlertStateStore(bus).put(state)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(DefinitionError, match=r"\['stale'\] are defined more than once"):
        AlertEvaluator([STALE, STALE], MemoryAlertStateStore(), lambda rule, n: None)


def test_removed_rules_are_forgotten() -> None:
    store = MemoryAlertStateStore()
    AlertEvaluator([STALE, SLOW], store, lambda rule, n: None).evaluate({"stale": 1.0, "slow": 1.0}, 0)
    assert AlertEvaluator([SLOW], store, lambda rule, n: None).forget_removed_rules() == ["stale"]
    assert [s.rule for s in store.list()] == ["slow"]


def test_notifications_handed_back_are_owed_again_ahead_of_later_ones_and_once() -> None:
    store = MemoryAlertStateStore()
    handed: list[Notification] = []
    evaluator = AlertEvaluator([STALE], store, lambda rule, n: handed.append(n))
    evaluator.evaluate({"stale": 61.0}, 1_000)  # FIRING handed over
    failing = AlertEvaluator([STALE], store, lambda rule, n: (_ for _ in ()).throw(RuntimeError("down")))
    failing.evaluate({"stale": 1.0}, 2_000)  # RESOLVED produced, not delivered: still owed
    resolved = store.get("stale")
    assert resolved is not None
    [owed_later] = resolved.outbox
    evaluator.owe_again([(STALE, handed[0]), (STALE, handed[0])])  # the dispatcher was closed first
    stored = store.get("stale")
    assert stored is not None
    assert [n.id for n in stored.outbox] == [handed[0].id, owed_later.id]  # in order, each once
    delivered: list[str] = []
    AlertEvaluator([STALE], store, lambda rule, n: delivered.append(n.id)).evaluate({}, 3_000)
    assert delivered == [handed[0].id, owed_later.id]


def test_a_stop_ends_the_round_before_the_next_rule() -> None:
    store = MemoryAlertStateStore()
    stop = threading.Event()
    stop.set()
    states = AlertEvaluator([STALE, SLOW], store, lambda rule, n: None).evaluate(
        {"stale": 61.0, "slow": 99.0}, 1_000, stop
    )
    assert states == [] and store.list() == []  # nothing observed: the next evaluator starts afresh
