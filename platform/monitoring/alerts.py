"""The life of one alert: a pure state machine from observations to notifications.

``step(rule, state, value, now_ms)`` returns the next state and the notifications to send:

1. OK and the value breaches the rule: PENDING from now (or FIRING at once when ``for_s`` is 0).
2. PENDING for ``for_s`` and still breaching: FIRING, one ``FIRING`` notification.
3. FIRING and still breaching: a ``REPEAT`` notification every ``repeat_interval_s``.
4. PENDING or FIRING and no longer breaching: back to OK; a ``RESOLVED`` notification only if it
   had fired (a pending alert that clears was never announced).
5. No observation (``value is None``, e.g. no data in the bucket): nothing changes. Silence is
   not health: a component that stops reporting is watched by a COMPONENT_DOWN rule instead.

Every change bumps the state's ``version``. Notifications are put in the state's ``outbox``
before anyone sends them, so the state and the promise to notify are written together; the
evaluator removes them once delivered (see ``evaluator``). Each notification carries a stable
``id`` (rule, firing episode, sequence) so a receiver can drop a duplicate delivery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from featurebus.platform.monitoring.rules import AlertRule, breached
from featurebus.schemas.errors import StoreFormatError

__all__ = ["ALERT_STATE_FORMAT_VERSION", "AlertState", "AlertStatus", "Notification", "NotificationKind", "step"]

ALERT_STATE_FORMAT_VERSION = 1


class AlertStatus(Enum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


class NotificationKind(Enum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Notification:
    rule: str
    kind: NotificationKind
    at_ms: int
    value: float | None
    threshold: float
    episode_ms: int  # when this firing episode started: groups FIRING, its REPEATs and RESOLVED
    sequence: int  # 0 for FIRING, 1.. for each REPEAT, then RESOLVED

    @property
    def id(self) -> str:
        return f"{self.rule}/{self.episode_ms}/{self.sequence}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "kind": self.kind.value,
            "at_ms": self.at_ms,
            "value": self.value,
            "threshold": self.threshold,
            "episode_ms": self.episode_ms,
            "sequence": self.sequence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(
            rule=data["rule"],
            kind=NotificationKind(data["kind"]),
            at_ms=int(data["at_ms"]),
            value=None if data["value"] is None else float(data["value"]),
            threshold=float(data["threshold"]),
            episode_ms=int(data["episode_ms"]),
            sequence=int(data["sequence"]),
        )


@dataclass(frozen=True)
class AlertState:
    rule: str
    status: AlertStatus = AlertStatus.OK
    version: int = 0
    since_ms: int | None = None  # PENDING: breaching since; FIRING: fired at (the episode)
    last_sent_ms: int | None = None  # FIRING: when the last FIRING/REPEAT was produced
    sequence: int = 0  # notifications produced in the current episode
    value: float | None = None  # the last observation
    observed_ms: int | None = None
    outbox: tuple[Notification, ...] = field(default=())
    resolved_ms: int | None = None  # OK after firing: when it resolved (cleared when it fires again)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": ALERT_STATE_FORMAT_VERSION,
                "rule": self.rule,
                "status": self.status.value,
                "version": self.version,
                "since_ms": self.since_ms,
                "last_sent_ms": self.last_sent_ms,
                "sequence": self.sequence,
                "value": self.value,
                "observed_ms": self.observed_ms,
                "outbox": [n.to_dict() for n in self.outbox],
                "resolved_ms": self.resolved_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> AlertState:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("format") != ALERT_STATE_FORMAT_VERSION:
            found = data.get("format") if isinstance(data, dict) else None
            raise StoreFormatError(
                f"an alert state has format {found!r}, this featurebus reads "
                f"{ALERT_STATE_FORMAT_VERSION}: run the featurebus version that wrote it, "
                "or delete the alert state topic (alerts then start from OK)"
            )
        return cls(
            rule=data["rule"],
            status=AlertStatus(data["status"]),
            version=int(data["version"]),
            since_ms=data["since_ms"],
            last_sent_ms=data["last_sent_ms"],
            sequence=int(data["sequence"]),
            value=data["value"],
            observed_ms=data["observed_ms"],
            outbox=tuple(Notification.from_dict(n) for n in data["outbox"]),
            resolved_ms=data.get("resolved_ms"),  # absent from states written before it existed
        )

    def with_owed(self, notifications: Sequence[Notification]) -> AlertState:
        """The same state owing ``notifications`` again (handed to delivery, not delivered) ahead
        of its outbox, which holds only later ones; a new version. Ids already owed are skipped."""
        later = {n.id for n in self.outbox}
        again: dict[str, Notification] = {}
        for notification in notifications:
            if notification.id not in later:
                again.setdefault(notification.id, notification)  # each id once, in the given order
        return dataclasses.replace(self, outbox=(*again.values(), *self.outbox), version=self.version + 1)

    def without_outbox(self, delivered: set[str]) -> AlertState:
        """The same state with the ``delivered`` notification ids removed (a new version)."""
        kept = tuple(n for n in self.outbox if n.id not in delivered)
        return dataclasses.replace(self, outbox=kept, version=self.version + 1)


def step(rule: AlertRule, state: AlertState | None, value: float | None, now_ms: int) -> AlertState:
    """The state after observing ``value`` at ``now_ms``; new notifications are appended to its
    outbox. Without an observation ``state`` is returned as it is; with one, a new version."""
    current = state if state is not None else AlertState(rule=rule.name)
    if value is None:
        return current
    bad = breached(rule, value)
    status = current.status
    base = dataclasses.replace(current, value=value, observed_ms=now_ms, version=current.version + 1)

    def note(kind: NotificationKind, episode_ms: int, sequence: int) -> Notification:
        return Notification(rule.name, kind, now_ms, value, rule.limit, episode_ms, sequence)

    if not bad:
        if status is AlertStatus.OK:
            return base
        if status is AlertStatus.PENDING:
            return dataclasses.replace(base, status=AlertStatus.OK, since_ms=None, sequence=0)
        assert current.since_ms is not None  # FIRING always has an episode (kept by this function)
        resolved = note(NotificationKind.RESOLVED, current.since_ms, current.sequence)
        return dataclasses.replace(
            base,
            status=AlertStatus.OK,
            since_ms=None,
            last_sent_ms=None,
            sequence=0,
            outbox=(*current.outbox, resolved),
            resolved_ms=now_ms,
        )
    if status is AlertStatus.OK:
        current = dataclasses.replace(base, status=AlertStatus.PENDING, since_ms=now_ms)
        status = AlertStatus.PENDING
        base = current
    if status is AlertStatus.PENDING:
        assert current.since_ms is not None
        if now_ms - current.since_ms < rule.for_s * 1000:
            return base
        fired = note(NotificationKind.FIRING, now_ms, 0)
        return dataclasses.replace(
            base,
            status=AlertStatus.FIRING,
            since_ms=now_ms,
            last_sent_ms=now_ms,
            sequence=1,
            outbox=(*current.outbox, fired),
            resolved_ms=None,
        )
    assert current.since_ms is not None and current.last_sent_ms is not None
    if now_ms - current.last_sent_ms < rule.repeat_interval_s * 1000:
        return base
    repeat = note(NotificationKind.REPEAT, current.since_ms, current.sequence)
    return dataclasses.replace(
        base, last_sent_ms=now_ms, sequence=current.sequence + 1, outbox=(*current.outbox, repeat)
    )
