"""Freshness: from producing an event to seeing its effect where a model would read it.

A paced producer writes single transactions (``rate`` per second) for a pool of users, each event
with its own amount; a poller thread keeps asking "what is this user's count now?" for every
user with an event not seen yet, and stamps an event visible when the answer first includes it
(count >= the event's ordinal for its user). Freshness = visible - produced, on one monotonic
clock in this process. The same procedure measures:

* featurebus: the count comes from ``amount_count_10m_continuous`` over HTTP
  (``get-features-batch``, one round trip for all pending users), through worker, feature topic,
  online materializer and RocksDB;
* the baseline: a bare confluent_kafka consumer thread folding the source topic into a dict.
  No windows, no state store, no second hop, no HTTP: the fastest conceivable path from produce
  to an in-memory value, i.e. an upper bound on what any feature platform could achieve here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.fraud_setup import FeatureClient
from featurebus.platform.kafka.clients import producer_config
from featurebus.platform.kafka.security import client_settings
from featurebus.schemas.time import format_iso_ms

__all__ = ["DictFolder", "FreshnessRun", "Probe", "event_producer", "measure_freshness"]

log = logging.getLogger(__name__)

CountReader = Callable[[list[str]], dict[str, int]]


@dataclass
class Probe:
    user: str
    nth: int  # the user's count once this event is in
    amount: float
    produced_at: float = 0.0
    visible_at: float | None = None
    tracked: bool = True  # watched by the poller; the others are load at the same rate


@dataclass
class FreshnessRun:
    probes: list[Probe]
    polls: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def latencies_ms(self) -> list[float]:
        return [(p.visible_at - p.produced_at) * 1000.0 for p in self.probes if p.tracked and p.visible_at is not None]

    @property
    def missing(self) -> int:
        return sum(p.tracked and p.visible_at is None for p in self.probes)


TRACKED_PER_S = 100  # events per second whose visibility is watched, whatever the load
PACING_S = 0.001  # the producer's pacing step


def plan(tag: str, rate: float, seconds: float) -> list[Probe]:
    """Events round-robin over ``2 * rate`` users: each user gets one every ~2 s, so counts stay
    small and an event is almost always its user's only pending one. At high rates only the
    events of every k-th user (about ``TRACKED_PER_S`` a second) are watched: a poll of every
    pending user would take longer than the freshness it measures."""
    users = max(1, int(rate * 2))
    total = int(rate * seconds)
    step = max(1, int(rate // TRACKED_PER_S))
    return [
        Probe(f"fresh-{tag}-{i % users}", i // users + 1, round(1.0 + i / 100.0, 2), tracked=(i % users) % step == 0)
        for i in range(total)
    ]


def event_producer(bootstrap: str) -> Producer:
    """Idempotent and ``acks=all`` like every featurebus writer, with librdkafka's default 5 ms
    linger, as an application producing thousands of events a second would run it. The linger is
    inside every measured latency (stamped before ``produce``); sending each event in a request
    of its own instead cost the broker about 60% of a core at 5,000 events/s, on the machine whose
    CPU the platform under test shares.

    Reuse one across the warm-up and the measurement: a new idempotent producer spends its first
    few hundred ms connecting and obtaining a producer id, which is no part of freshness."""
    return Producer(producer_config(bootstrap, **{"linger.ms": 5}))


def measure_freshness(
    producer: Producer,
    topic: str,
    probes: list[Probe],
    rate: float,
    read_counts: CountReader,
    poll_pause_s: float,
    settle_timeout_s: float = 30.0,
) -> FreshnessRun:
    """Produce ``probes`` at ``rate``/s to ``topic`` while a thread polls ``read_counts``."""
    run = FreshnessRun(probes)
    issued = 0  # probes[:issued] have been produced; only the producer writes it
    # Watched probes produced and not seen yet: appended by the producer, pruned by the poller
    # (rescanning every produced probe per poll cost the poller, and the producer sharing its
    # GIL, milliseconds per round at 5,000 events/s).
    produced: list[Probe] = []
    done = threading.Event()
    failure: list[BaseException] = []

    def poll() -> None:
        pending: list[Probe] = []
        try:
            while True:
                taken = len(produced)
                pending = [p for p in pending if p.visible_at is None] + produced[:taken]
                del produced[:taken]
                if not pending:
                    if done.is_set() and issued == len(probes):
                        return
                    time.sleep(0.0005)
                    continue
                wanted = sorted({p.user for p in pending})
                counts = read_counts(wanted)
                seen_at = time.perf_counter()
                run.polls += 1
                for p in pending:
                    if counts.get(p.user, 0) >= p.nth:
                        p.visible_at = seen_at
                if done.is_set() and seen_at > settle_deadline:
                    return
                time.sleep(poll_pause_s)
        except BaseException as exc:
            failure.append(exc)

    settle_deadline = math.inf
    poller = threading.Thread(target=poll, name="freshness-poller", daemon=True)
    poller.start()
    started = time.perf_counter()
    try:
        for i, probe in enumerate(probes):
            # Paced in steps of PACING_S: each event goes out at its due time or up to one step
            # early, never late. Sleeping before every event meant 5,000 wake-ups a second in
            # this process, which shares the CPU with the platform under test.
            pause = started + i / rate - time.perf_counter()
            if pause > PACING_S:
                time.sleep(pause)
            if failure:
                break
            value = orjson.dumps(
                {
                    "transaction_id": f"{probe.user}-{probe.nth}",
                    "user_id": probe.user,
                    "merchant_id": "merchant_0",
                    "amount": probe.amount,
                    "is_online": False,
                    "timestamp": format_iso_ms(int(time.time() * 1000)),
                }
            )
            probe.produced_at = time.perf_counter()
            producer.produce(topic, value=value, key=probe.user.encode())
            producer.poll(0)
            if probe.tracked:
                produced.append(probe)
            issued = i + 1
        producer.flush(30)
        settle_deadline = time.perf_counter() + settle_timeout_s
    finally:
        if settle_deadline == math.inf:  # production stopped early: do not poll forever
            settle_deadline = time.perf_counter()
        done.set()
        poller.join(settle_timeout_s + 30)
    if failure:
        raise RuntimeError(f"the freshness poller failed: {failure[0]!r}") from failure[0]
    if run.missing:
        tracked = sum(p.tracked for p in probes)
        run.notes.append(
            f"{run.missing} of {tracked} watched events were not visible {settle_timeout_s:g}s after the last one"
        )
    return run


def http_counts(client: FeatureClient, chunk: int = 200) -> CountReader:
    """Counts as served: ``amount_count_10m_continuous`` (an int64, so a string) per user."""

    def read(users: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for start in range(0, len(users), chunk):
            part = users[start : start + chunk]
            for user, row in zip(part, client.features(part), strict=True):
                value = row.get("amount_count_10m_continuous")
                counts[user] = int(value) if value is not None else 0
        return counts

    return read


class DictFolder:
    """The baseline: one consumer thread, ``counts[user] += 1`` per record, nothing else."""

    def __init__(self, bootstrap: str, topic: str, partitions: list[int], start: dict[int, int]) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                **client_settings(bootstrap),
                "group.id": f"bench.baseline.{topic}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,  # hand over each record as soon as it is there
            }
        )
        self._consumer.assign([TopicPartition(topic, p, start[p]) for p in partitions])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="baseline-consumer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # poll(), not consume(n, timeout): consume blocks until n records *or* the timeout,
        # which would add up to the whole timeout to every record at a low rate.
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            if msg is None:
                continue
            value = msg.value()
            if msg.error() is None and value is not None:
                self.counts[orjson.loads(value)["user_id"]] += 1

    def read(self, users: list[str]) -> dict[str, int]:
        counts = self.counts
        return {u: counts.get(u, 0) for u in users}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def served_sums_match(client: FeatureClient, probes: list[Probe], sample: int = 200) -> tuple[int, int]:
    """(checked, mismatched): served ``amount_sum_1h`` against the amounts produced per user."""
    expected: dict[str, float] = defaultdict(float)
    for p in probes:
        expected[p.user] += p.amount
    users = sorted(expected)[:sample]
    rows = client.features(users)
    bad = sum(
        1
        for user, row in zip(users, rows, strict=True)
        if row.get("amount_sum_1h_continuous") is None
        or not math.isclose(float(row["amount_sum_1h_continuous"]), expected[user], rel_tol=1e-9)
    )
    return len(users), bad
