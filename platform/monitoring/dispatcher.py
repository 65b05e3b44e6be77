"""Delivering notifications without ever blocking the caller: a bounded queue and one thread.

``submit`` only enqueues (and refuses, counted, when the queue is full). The delivery thread
sends each notification to each channel its rule names; a failed send is retried after an
exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``) held in a due-time heap,
so one failing channel delays neither the other channels nor the next notifications. After
``max_attempts`` it gives up, counted. Counters are plain ints for the evaluator's /metrics.

``close`` is quick (a stopping evaluator must not hang on a channel in backoff): it waits a short
grace for what is in flight, stops the thread, and returns every notification not delivered to
all its channels yet, so the evaluator can put it back into its stored outbox for the next
evaluator (``AlertEvaluator.owe_again``) instead of dropping it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from featurebus.platform.monitoring.alerts import Notification
from featurebus.platform.monitoring.channels import AlertDeliveryError, Channel
from featurebus.platform.monitoring.rules import AlertRule
from featurebus.schemas.errors import DefinitionError

__all__ = ["DeliveryCounters", "Dispatcher"]

_log = logging.getLogger(__name__)


@dataclass
class DeliveryCounters:
    sent: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    dropped_queue_full: int = 0
    per_channel_sent: dict[str, int] = field(default_factory=dict)


@dataclass(order=True)
class _Attempt:
    due: float
    order: int
    channel: str = field(compare=False)
    rule: AlertRule = field(compare=False)
    notification: Notification = field(compare=False)
    attempt: int = field(compare=False, default=1)


class Dispatcher:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_size < 1 or max_attempts < 1 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise DefinitionError(
                "dispatcher: queue_size and max_attempts must be >= 1 and 0 <= backoff_s <= max_backoff_s"
            )
        self._channels = dict(channels)
        self._queue: queue.Queue[tuple[AlertRule, Notification] | None] = queue.Queue(queue_size)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._retries: list[_Attempt] = []
        self._order = itertools.count()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._sending: _Attempt | None = None  # the attempt the delivery thread is in, if any
        self._not_started: list[tuple[AlertRule, Notification]] = []  # taken from the queue while closing
        self.counters = DeliveryCounters()
        self._thread = threading.Thread(target=self._run, name="featurebus-alert-delivery", daemon=True)
        self._thread.start()

    def add_channels(self, channels: Mapping[str, Channel]) -> None:
        """Configure more channels (e.g. the email address of a view applied since start). A
        single dict assignment per name: the delivery thread's lookups stay safe without a lock."""
        for name, channel in channels.items():
            self._channels[name] = channel

    def channel_names(self) -> frozenset[str]:
        return frozenset(self._channels)

    def submit(self, rule: AlertRule, notification: Notification) -> bool:
        """Queue a notification for every channel of its rule; False (counted) when the queue is full."""
        unknown = [name for name in rule.channels if name not in self._channels]
        if unknown:
            raise DefinitionError(
                f"alert rule {rule.name!r} names channels {unknown} that are not configured; "
                f"configured: {sorted(self._channels)}"
            )
        with self._idle:
            self._in_flight += 1
        try:
            self._queue.put_nowait((rule, notification))
        except queue.Full:
            with self._idle:
                self._in_flight -= 1
            self.counters.dropped_queue_full += 1
            return False
        return True

    def deliver(self, rule: AlertRule, notification: Notification) -> None:
        """``submit`` in the evaluator's ``Deliver`` shape: a full queue raises, so the evaluator
        keeps the notification in its stored outbox and offers it again next round."""
        if not self.submit(rule, notification):
            raise AlertDeliveryError(f"the alert delivery queue is full; {notification.id} is retried next round")

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until everything submitted was delivered or given up (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    def close(self, grace_s: float = 1.0) -> list[tuple[AlertRule, Notification]]:
        """Stop delivering within about ``grace_s`` (twice at worst: a send in progress is given as
        long again to return) and return what was not delivered to every channel of its rule:
        queued, waiting for a retry, or being sent when the grace ran out. Each once, oldest
        first. Sends already done are not undone: handing one back means at-least-once."""
        deadline = time.monotonic() + grace_s
        # Wait for what is queued or being sent, not for retries in backoff (they are handed back).
        while (not self._queue.empty() or self._sending is not None) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stopping.set()
        try:
            self._queue.put_nowait(None)  # wake the thread; a full queue wakes it anyway
        except queue.Full:
            pass
        self._thread.join(grace_s)
        pending: list[tuple[AlertRule, Notification]] = []
        if self._thread.is_alive() and self._sending is not None:  # stuck in a channel: owed again
            pending.append((self._sending.rule, self._sending.notification))
        pending += [(a.rule, a.notification) for a in sorted(list(self._retries))]  # a copy: see above
        pending += self._not_started
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                pending.append(item)
        unique: dict[str, tuple[AlertRule, Notification]] = {}
        for rule, notification in pending:
            unique.setdefault(notification.id, (rule, notification))
        return sorted(unique.values(), key=lambda p: (p[1].rule, p[1].episode_ms, p[1].sequence))

    def _run(self) -> None:
        while not self._stopping.is_set():
            timeout = None if not self._retries else max(0.0, self._retries[0].due - self._clock())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:  # a retry is due
                pass
            else:
                if item is None or self._stopping.is_set():
                    if item is not None:
                        self._not_started.append(item)  # close() hands it back
                    return
                self._start(*item)
            while self._retries and self._retries[0].due <= self._clock() and not self._stopping.is_set():
                self._try(heapq.heappop(self._retries))

    def _start(self, rule: AlertRule, notification: Notification) -> None:
        attempts = [_Attempt(0.0, next(self._order), name, rule, notification) for name in rule.channels]
        with self._idle:
            self._in_flight += len(attempts) - 1  # one per channel instead of one per notification
            self._idle.notify_all()
        for attempt in attempts:
            self._try(attempt)

    def _try(self, attempt: _Attempt) -> None:
        if self._stopping.is_set():  # closing: this channel's send is owed again (close() returns it)
            heapq.heappush(self._retries, attempt)
            return
        self._sending = attempt
        try:
            self._channels[attempt.channel].send(attempt.rule, attempt.notification)
        except Exception:  # any failure of a channel is retried; none may kill the delivery thread
            self.counters.failed_attempts += 1
            if attempt.attempt >= self._max_attempts:
                self.counters.given_up += 1
                _log.error(
                    "giving up on %s via %s after %d attempts",
                    attempt.notification.id,
                    attempt.channel,
                    attempt.attempt,
                    exc_info=True,
                )
                self._done()
                return
            delay = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt.attempt - 1))
            _log.warning(
                "delivering %s via %s failed; retry in %.1f s",
                attempt.notification.id,
                attempt.channel,
                delay,
                exc_info=True,
            )
            heapq.heappush(
                self._retries,
                _Attempt(
                    self._clock() + delay,
                    next(self._order),
                    attempt.channel,
                    attempt.rule,
                    attempt.notification,
                    attempt.attempt + 1,
                ),
            )
            return
        finally:
            self._sending = None
        self.counters.sent += 1
        self.counters.per_channel_sent[attempt.channel] = self.counters.per_channel_sent.get(attempt.channel, 0) + 1
        self._done()

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()
