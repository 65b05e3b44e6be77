"""One evaluation round of every alert rule, with notifications that survive a restart.

For each rule, in this order (the crash reasoning follows):

1. ``step`` the rule's stored state with the observation; if it changed, ``put`` it. New
   notifications are now in the stored state's outbox: a promise to notify, on the bus.
2. Hand each outbox notification to ``deliver``; stop at the first that raises (kept for the
   next round, in order).
3. ``put`` the state without the delivered ones.

A crash before 1 leaves the previous state: the next evaluator observes again and reaches the
same transition (the notification is produced once, by whichever round stores it). A crash
between 1 and 3 leaves the notification in the stored outbox: the next evaluator delivers it in
step 2. So nothing is lost, and a transition never produces a second notification; the one
window for a repeat is a crash after ``deliver`` returned and before 3 stored it, and then the
same notification ``id`` is delivered again so a receiver can drop it (at-least-once, deduplicable).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from featurebus.platform.monitoring.alerts import AlertState, Notification, step
from featurebus.platform.monitoring.rules import AlertRule
from featurebus.platform.monitoring.state_store import AlertStateStore
from featurebus.schemas.errors import DefinitionError

__all__ = ["AlertEvaluator", "Deliver"]

_log = logging.getLogger(__name__)

# Sends one notification of a rule; raises when it could not (it is then retried next round).
Deliver = Callable[[AlertRule, Notification], None]


class AlertEvaluator:
    def __init__(self, rules: Sequence[AlertRule], store: AlertStateStore, deliver: Deliver) -> None:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise DefinitionError(f"alert rules {duplicates} are defined more than once: give each rule its own name")
        self._rules = {rule.name: rule for rule in rules}
        self._store = store
        self._deliver = deliver
        self.delivery_failures = 0  # counted for the evaluator's /metrics

    def evaluate(
        self, observations: Mapping[str, float | None], now_ms: int, stop: threading.Event | None = None
    ) -> list[AlertState]:
        """One round: ``observations`` maps a rule name to its current value (missing or None: no
        data). Returns every rule's state after the round. ``stop`` set ends the round before the
        next rule: the rules left keep their stored state, as after a crash (see above)."""
        states = []
        for name, rule in self._rules.items():
            if stop is not None and stop.is_set():
                break
            stored = self._store.get(name)
            state = step(rule, stored, observations.get(name), now_ms)
            if state is not stored:
                self._store.put(state)
            states.append(self._flush(rule, state))
        return states

    def owe_again(self, undelivered: Sequence[tuple[AlertRule, Notification]]) -> None:
        """Put notifications the dispatcher did not deliver (it was closed first) back into their
        rules' stored outboxes, so the next evaluator delivers them (step 2 above) rather than
        nobody: a shutdown costs a possible repeat, never a lost notification."""
        by_rule: dict[str, list[Notification]] = {}
        for _, notification in undelivered:
            by_rule.setdefault(notification.rule, []).append(notification)
        for name, notifications in by_rule.items():
            stored = self._store.get(name) or AlertState(rule=name)
            self._store.put(stored.with_owed(sorted(notifications, key=lambda n: (n.episode_ms, n.sequence))))

    def forget_removed_rules(self) -> list[str]:
        """Delete the stored states of rules that no longer exist; returns their names."""
        removed = [state.rule for state in self._store.list() if state.rule not in self._rules]
        for name in removed:
            self._store.delete(name)
        return removed

    def _flush(self, rule: AlertRule, state: AlertState) -> AlertState:
        delivered: set[str] = set()
        for notification in state.outbox:
            try:
                self._deliver(rule, notification)
            except Exception:  # any channel failure: keep it (and those after it) for next round
                self.delivery_failures += 1
                _log.warning("delivering %s failed; retried next round", notification.id, exc_info=True)
                break
            delivered.add(notification.id)
        if delivered:
            state = state.without_outbox(delivered)
            self._store.put(state)
        return state
