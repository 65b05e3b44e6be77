"""Feature logging (Tecton's ``FeatureService(logging=LoggingConfig(...))``) without blocking serving.

A served request of a service with logging is sampled at its ``sample_rate``; a sampled one is
appended, as a tuple of the objects the response was built from, to a bounded in-memory queue and
the request goes on. One background thread drains the queue, encodes each entry as JSON and
produces it to the service's logging topic (``platform.kafka.topics.logging_topic``; key = the
request id). When the queue is full (Kafka slow or down) the entry is dropped and counted, never
waited for: serving latency must not depend on the bus. Records on the topic::

    {"request_id", "request_time_ms", "join_keys": {...}, "request_context": {...} | null,
     "features": {"<view>.<feature>": value, ...}, "effective_times": {...} | null}

The offline materializer process writes the topic to the offline store
(``platform.offline.logged_features``).

Why a ``deque`` polled every ``_POLL_S`` and not a ``queue.Queue``: ``Queue.put`` takes a lock and
notifies the waiting thread on every request, which wakes it for one record and makes the two
threads trade the GIL per request; that cost (measured by ``bench_monitoring``'s ``serving_cpu``)
was most of what logging added to a lookup. ``deque.append``/``popleft`` are atomic under the GIL,
need no lock, and the thread wakes a few times a second to take everything queued at once. The
bound is checked with ``len`` before the append, so concurrent requests can overshoot it by at
most the number of serving threads. The request id's text and every encoding are built on the
thread too: the request thread only takes a counter value.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
import random
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaException
from prometheus_client import Counter

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import producer
from featurebus.platform.kafka.topics import logging_topic
from featurebus.schemas.errors import FeaturebusError

__all__ = ["FeatureLogger", "LOGGED"]

LOGGED = Counter(
    "featurebus_feature_logging_records_total",
    "Sampled feature-logging records by outcome: dropped (the queue was full), produced (handed to the "
    "Kafka producer), failed (still unproduced at shutdown; errors are retried with backoff)",
    ["workspace", "feature_service", "outcome"],
)

_log = logging.getLogger(__name__)

_POLL_S = 0.05  # how often the thread looks at an empty queue; Kafka's linger.ms below is 50 ms too
_BATCH = 1000  # records taken from the queue per produce round
_SERVICE_OF = operator.itemgetter(0, 1)  # an entry's (workspace, service)

# (workspace, service, request sequence number, request time ms, join keys, request context, names, values, times)
_Entry = tuple[
    str, str, int, int, Mapping[str, Any], Mapping[str, Any] | None, Sequence[str], list[Any], list[str] | None
]


class FeatureLogger:
    def __init__(self, bootstrap: str, *, queue_size: int = 10_000, seed: int | None = None) -> None:
        self._bootstrap = bootstrap
        self._queue: deque[_Entry] = deque()
        self._queue_size = queue_size
        self._random = random.Random(seed)
        self._ids = itertools.count()
        self._id_prefix = f"{os.getpid():x}{int(time.time() * 1000):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._topics: dict[tuple[str, str], str] = {}  # (workspace, service) -> its logging topic

    def sampled(self, sample_rate: float) -> bool:
        return sample_rate >= 1.0 or self._random.random() < sample_rate

    def log(
        self,
        workspace: str,
        service: str,
        request_ms: int,
        join_keys: Mapping[str, Any],
        request_context: Mapping[str, Any] | None,
        names: Sequence[str],
        values: list[Any],
        effective_times: list[str] | None,
    ) -> None:
        """Queue one served row (never blocks, takes no lock). The objects are logged as they are
        when the thread encodes them: the caller must not mutate them afterwards."""
        if self._thread is None:
            self._start()
        if len(self._queue) >= self._queue_size:
            self._count(workspace, service, "dropped", 1)
            return
        # Counted as produced (or failed) by the thread.
        self._queue.append(
            (
                workspace,
                service,
                next(self._ids),
                request_ms,
                join_keys,
                request_context,
                names,
                values,
                effective_times,
            )
        )

    def close(self, timeout_s: float = 5.0) -> None:
        """Produce what is queued (up to ``timeout_s``), then stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the background thread ---------------------------------------------------------------
    def _count(self, workspace: str, service: str, outcome: str, n: int) -> None:
        key = (workspace, service, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = LOGGED.labels(workspace, service, outcome)
        counter.inc(n)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="feature-logger", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        writer = producer(self._bootstrap, **{"linger.ms": 50, "queue.buffering.max.messages": 200_000})
        ready: set[str] = set()
        backoff_s = 0.5
        batch: list[_Entry] = []
        pending = self._queue
        while not (self._stop.is_set() and not pending and not batch):
            if not batch:  # else retry the batch that failed
                if not pending:
                    writer.poll(0)
                    self._stop.wait(_POLL_S)
                    continue
                for _ in range(min(len(pending), _BATCH)):
                    batch.append(pending.popleft())
            try:
                batch = self._produce(writer, batch, ready)
                backoff_s = 0.5
            except (KafkaException, FeaturebusError) as exc:
                if self._stop.is_set():
                    break  # shutting down with the bus away: what is left is lost (counted below)
                _log.warning(
                    "feature logging: %d records not produced yet (%s); retrying in %.1f s", len(batch), exc, backoff_s
                )
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)
        for (workspace, service), n in Tally(map(_SERVICE_OF, batch)).items():
            self._count(workspace, service, "failed", n)
        writer.flush(10)

    def _produce(self, writer: Any, batch: list[_Entry], ready: set[str]) -> list[_Entry]:
        """Hand ``batch`` to the producer; returns what is left when its buffer is full. Per-record
        work is only what each record needs (its id, its document, the produce call): topics and
        counts are per (workspace, service), found with C-level ``map``/``Counter`` over the batch."""
        topics = self._topics
        for key in set(map(_SERVICE_OF, batch)) - topics.keys():
            topics[key] = logging_topic(*key)
        missing = {topics[key] for key in set(map(_SERVICE_OF, batch))} - ready
        if missing:
            ensure_topics(self._bootstrap, [TopicConfig(t, 1) for t in missing])
            ready |= missing
        produce, dumps, prefix = writer.produce, orjson.dumps, self._id_prefix
        done = len(batch)
        for index, (workspace, service, sequence, request_ms, join_keys, context, names, values, times) in enumerate(
            batch
        ):
            request_id = f"{prefix}-{sequence}"
            document = {
                "request_id": request_id,
                "request_time_ms": request_ms,
                "join_keys": join_keys,
                "request_context": context,
                "features": dict(zip(names, values, strict=True)),
                "effective_times": None if times is None else dict(zip(names, times, strict=True)),
            }
            try:
                produce(topics[workspace, service], dumps(document), request_id)  # a str key is sent as UTF-8
            except BufferError:  # librdkafka's queue is full (the broker is slow): wait for deliveries
                writer.poll(0.5)
                done = index
                break
        for (workspace, service), n in Tally(map(_SERVICE_OF, batch[:done])).items():
            self._count(workspace, service, "produced", n)
        writer.poll(0)
        return batch[done:]
