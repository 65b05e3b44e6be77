"""Where job records live: a small Protocol, an in-memory twin and the Kafka backend.

The Kafka backend keeps every record of a workspace on its compacted jobs topic
(``topics.jobs_topic``, one partition): ``job/<id>`` holds the job's latest record, ``cancel/<id>``
a cancel request for one attempt. Readers tail the topic (read_committed) and fold it into a map,
catching up to the end before every read, so a handle sees its own writes and everyone else's.

Who writes what (no compare-and-set on Kafka, so ownership replaces it):
- anyone (CLI, SDK, ``apply``) writes new PENDING jobs, PENDING retries of FAILED or CANCELLED jobs
  (the runner never touches those), and cancel requests;
- only the workspace's job runner moves a job from PENDING on (start, progress, succeed, fail,
  cancel, requeue). A runner opens its store with ``runner=True``: it writes in Kafka transactions
  under one transactional id per workspace (``topics.jobs_runner_transactional_id``). A starting
  runner's ``init_transactions`` fences the previous one: the old runner's next write raises
  ``JobRunnerFencedError`` and it stops. So at most one runner runs a workspace's jobs at a time,
  and a restarted runner takes over at once, without waiting for a consumer-group session to
  expire. A fenced runner learns it at its next write (a progress update, at most a second and a
  chunk later) and stops; until then both may work on one range, which is harmless because every
  job is idempotent per range (and compaction locks its folder). (A consumer group would also elect one runner, but it does not fence a stalled one's
  writes, and a SIGKILLed member holds its partition until its session times out.)
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from featurebus.platform.kafka.admin import TopicConfig, ensure_topics, partition_bounds, unreachable_hint
from featurebus.platform.kafka.clients import DeliveryTracker, consumer, producer
from featurebus.platform.kafka.topics import jobs_runner_transactional_id, jobs_topic
from featurebus.schemas.errors import JobRunnerFencedError, KafkaUnavailableError, StoreFormatError
from featurebus.schemas.jobs import JOB_FORMAT_VERSION, Job

__all__ = ["JobStore", "KafkaJobStore", "MemoryJobBus", "MemoryJobStore", "jobs_topic_config"]

_JOB = b"job/"
_CANCEL = b"cancel/"
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


class JobStore(Protocol):
    def put(self, job: Job) -> None:
        """Write ``job`` as its latest record (see the module doc for who may write what)."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self) -> list[Job]:
        """Every job of the workspace, oldest first."""
        ...

    def request_cancel(self, job_id: str, attempt: int) -> None:
        """Ask the runner to cancel ``attempt`` of the job (a later retry is not cancelled)."""
        ...

    def cancel_requested(self, job_id: str, attempt: int) -> bool: ...

    def cancel_requests(self) -> dict[str, int]:
        """Every cancel request: job id -> the attempt it cancels (one read for a whole queue)."""
        ...

    def close(self) -> None: ...


def _job_key(job_id: str) -> bytes:
    return _JOB + job_id.encode()


def _cancel_key(job_id: str) -> bytes:
    return _CANCEL + job_id.encode()


def _cancel_value(attempt: int) -> bytes:
    return orjson.dumps({"format": JOB_FORMAT_VERSION, "attempt": attempt})


def _cancelled_attempt(value: bytes | None) -> int | None:
    if value is None:
        return None
    document = orjson.loads(value)
    if document.get("format") != JOB_FORMAT_VERSION:
        raise StoreFormatError(
            f"a cancel request has format {document.get('format')!r}, this featurebus reads "
            f"{JOB_FORMAT_VERSION}: run the featurebus version that wrote it"
        )
    return int(document["attempt"])


def _cancel_requests(records: dict[bytes, bytes]) -> dict[str, int]:
    requests = {k[len(_CANCEL) :].decode(): _cancelled_attempt(v) for k, v in records.items() if k.startswith(_CANCEL)}
    return {job_id: attempt for job_id, attempt in requests.items() if attempt is not None}


def _jobs(records: dict[bytes, bytes]) -> list[Job]:
    jobs = [Job.from_json(v) for k, v in records.items() if k.startswith(_JOB)]
    return sorted(jobs, key=lambda job: (job.created_ms, job.id))


class MemoryJobBus:
    """The in-memory twin of one workspace's jobs topic: latest value per key, and whose turn it
    is to run jobs (the transactional epoch a starting runner bumps on Kafka)."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        self.runner_epoch = 0


class MemoryJobStore:
    def __init__(self, bus: MemoryJobBus, *, runner: bool = False) -> None:
        self._bus = bus
        self._epoch: int | None = None
        if runner:
            bus.runner_epoch += 1
            self._epoch = bus.runner_epoch

    def _write(self, key: bytes, value: bytes) -> None:
        if self._epoch is not None and self._epoch != self._bus.runner_epoch:
            raise JobRunnerFencedError("another job runner of this workspace started; this one stops")
        self._bus.records[key] = value

    def put(self, job: Job) -> None:
        self._write(_job_key(job.id), job.to_json())

    def get(self, job_id: str) -> Job | None:
        value = self._bus.records.get(_job_key(job_id))
        return None if value is None else Job.from_json(value)

    def list(self) -> list[Job]:
        return _jobs(self._bus.records)

    def request_cancel(self, job_id: str, attempt: int) -> None:
        self._write(_cancel_key(job_id), _cancel_value(attempt))

    def cancel_requested(self, job_id: str, attempt: int) -> bool:
        return _cancelled_attempt(self._bus.records.get(_cancel_key(job_id))) == attempt

    def cancel_requests(self) -> dict[str, int]:
        return _cancel_requests(self._bus.records)

    def close(self) -> None:
        """Nothing to release: the in-memory twin holds no connection."""


def jobs_topic_config(workspace: str) -> TopicConfig:
    return TopicConfig(jobs_topic(workspace), 1, compacted=True)


class KafkaJobStore:
    """Not thread-safe: one thread per handle (the runner's job thread writes through its own)."""

    def __init__(self, bootstrap: str, workspace: str, *, runner: bool = False, timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._topic = jobs_topic(workspace)
        self._timeout_s = timeout_s
        self._records: dict[bytes, bytes] = {}
        ensure_topics(bootstrap, [jobs_topic_config(workspace)], timeout_s)
        self._consumer: Any = consumer(
            bootstrap,
            **{  # assigned, never joins or commits
                "isolation.level": "read_committed",  # a runner's records are transactional
                "socket.connection.setup.timeout.ms": 5000,
            },
        )
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        self._runner = runner
        if runner:
            # Short transactions: a SIGKILLed runner's open one must not hold readers back for long
            # (the next runner's init_transactions aborts it at once anyway).
            self._producer = producer(
                bootstrap,
                **{
                    "transactional.id": jobs_runner_transactional_id(workspace),
                    "transaction.timeout.ms": 10_000,
                    "message.timeout.ms": 10_000,
                    "linger.ms": 0,
                },
            )
            try:
                self._producer.init_transactions(timeout_s)
            except KafkaException as exc:
                raise KafkaUnavailableError(
                    f"starting the job runner of {workspace!r} failed: {exc}. {unreachable_hint(bootstrap)}"
                ) from exc
        else:
            self._producer = producer(bootstrap, **{"linger.ms": 0})

    # -- writing -------------------------------------------------------------------------------
    def _write(self, key: bytes, value: bytes) -> None:
        if not self._runner:
            tracker = DeliveryTracker(self._producer, self._bootstrap)
            tracker.produce(self._topic, value, key=key)
            tracker.flush(self._timeout_s)
            return
        try:
            self._producer.begin_transaction()
            self._producer.produce(self._topic, value=value, key=key)
            self._producer.commit_transaction(self._timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and (error.code() in _FENCED or error.fatal()):
                raise JobRunnerFencedError(
                    f"another job runner of this workspace took over ({error}); this one stops"
                ) from exc
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                self._producer.abort_transaction(self._timeout_s)
            raise KafkaUnavailableError(
                f"writing to {self._topic} failed: {exc}. {unreachable_hint(self._bootstrap)}"
            ) from exc

    def put(self, job: Job) -> None:
        self._write(_job_key(job.id), job.to_json())

    def request_cancel(self, job_id: str, attempt: int) -> None:
        self._write(_cancel_key(job_id), _cancel_value(attempt))

    # -- reading -------------------------------------------------------------------------------
    def _catch_up(self) -> dict[bytes, bytes]:
        partition = TopicPartition(self._topic, 0)
        # read_committed: the end offset is the last stable offset, past committed transactions.
        low, high = partition_bounds(self._consumer, self._bootstrap, self._topic, 0, self._timeout_s)
        deadline = time.monotonic() + self._timeout_s
        if high <= low:
            return self._records
        while True:
            position = self._consumer.position([partition])[0].offset
            if position >= high:
                return self._records
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"reading {self._topic} did not reach offset {high} within "
                    f"{self._timeout_s:g} s. {unreachable_hint(self._bootstrap)}"
                )
            for message in self._consumer.consume(num_messages=500, timeout=0.1):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaUnavailableError(f"reading {self._topic} failed: {message.error()}")
                key = message.key()
                if key is None:
                    continue
                value = message.value()
                if value is None:
                    self._records.pop(key, None)
                else:
                    self._records[key] = value

    def get(self, job_id: str) -> Job | None:
        value = self._catch_up().get(_job_key(job_id))
        return None if value is None else Job.from_json(value)

    def list(self) -> list[Job]:
        return _jobs(self._catch_up())

    def cancel_requested(self, job_id: str, attempt: int) -> bool:
        return _cancelled_attempt(self._catch_up().get(_cancel_key(job_id))) == attempt

    def cancel_requests(self) -> dict[str, int]:
        return _cancel_requests(self._catch_up())

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(self._timeout_s)
