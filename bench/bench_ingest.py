"""Ingestion speed: ``POST /ingest`` batches of 100 records against a live ``featurebus serve`` and
the real broker, next to the brute-force baseline.

featurebus: a load generator in this process (asyncio + one keep-alive HTTP connection per
concurrent sender) posts batches of 100 valid records; each answer means the server validated
all of them against the push source's schema and Kafka acknowledged every one (idempotent
producer, ``acks=all``). Timed per batch (request sent -> answer read).

Peer: the same records, JSON-encoded and keyed the same way, produced straight to the same topic
by a bare ``confluent_kafka`` producer (idempotent, ``acks=all``) in this process, each sender
waiting for its own batch's acknowledgements: no HTTP, no validation, the floor any ingestion
API over Kafka could reach.

Reported per concurrency: ``records_per_s`` (records acknowledged / wall time of the run) and
per-batch ``batch_p50_ms`` / ``batch_p99_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from bench.harness import BenchContext, emit, load_1m, median, percentile, ratio
from featurebus import Aggregate, Entity, FeatureService, Field, PushConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.generator import iso_ms
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.producer import producer_config
from featurebus.platform.registry import apply_workspace
from featurebus.platform.supervisor import Supervisor
from featurebus.platform.topics import push_topic
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.main import wait_until_ready
from featurebus.types import Float64, Int64, String, Timestamp

__all__ = ["run"]

log = logging.getLogger(__name__)

BATCH = 100
SOURCE = "clicks"
PEER = "confluent_kafka producer (acks=all, idempotent), no HTTP, no validation"


@dataclass(frozen=True)
class Sizes:
    batches: int  # per concurrency level and side
    concurrency: tuple[int, ...]
    warmup_batches: int


FULL = Sizes(batches=2_000, concurrency=(1, 4, 16), warmup_batches=100)
QUICK = Sizes(batches=300, concurrency=(1, 8), warmup_batches=30)


def push_workspace(name: str) -> WorkspaceSpec:
    user = Entity(name="user", join_keys=[Field("user_id", String)])
    clicks = StreamSource(
        name=SOURCE,
        schema=[Field("user_id", String), Field("price", Float64), Field("quantity", Int64), Field("ts", Timestamp)],
        stream_config=PushConfig(log_offline=True),
    )

    @stream_feature_view(
        source=clicks, entities=[user], mode="pandas", online=True, offline=True,
        features=[Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("quantity", Int64))],
    )
    def user_clicks(clicks):  # type: ignore[no-untyped-def]
        return clicks

    return compile_workspace(name, [user, clicks, user_clicks, FeatureService(name="clicks", features=[user_clicks])])


def make_batches(count: int, now_ms: int) -> list[list[dict[str, Any]]]:
    """``count`` batches of ``BATCH`` distinct, valid records over 10,000 users."""
    batches = []
    for b in range(count):
        batch = []
        for i in range(BATCH):
            n = b * BATCH + i
            batch.append({"user_id": f"user_{n % 10_000}", "price": float(n % 97) + 0.5, "quantity": n % 7 + 1,
                          "ts": iso_ms(now_ms - (n % 3_600_000))})
        batches.append(batch)
    return batches


@dataclass
class Run:
    records: int
    wall_s: float
    batch_ms: list[float]

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s


# -- featurebus: POST /ingest ------------------------------------------------------------------
async def _post_all(url: str, secret: str, workspace: str, bodies: list[bytes], concurrency: int) -> Run:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    headers = {"Authorization": f"Tecton-key {secret}", "Content-Type": "application/json"}

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30.0, headers=headers) as client:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/ingest", content=body)
                latencies.append((time.perf_counter() - started) * 1000.0)
                if response.status_code != 200:
                    raise RuntimeError(f"/ingest answered {response.status_code}: {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return Run(len(bodies) * BATCH, time.perf_counter() - started, latencies)


def ingest_bodies(workspace: str, batches: list[list[dict[str, Any]]]) -> list[bytes]:
    return [orjson.dumps({"workspace_name": workspace, "records": {SOURCE: [{"record": r} for r in batch]}})
            for batch in batches]


# -- the peer: a bare producer ------------------------------------------------------------------
class _Acks:
    """Counts one batch's acknowledgements (served on whichever sender thread polls)."""

    def __init__(self, expected: int, errors: list[str]) -> None:
        self._left = expected
        self._errors = errors
        self._lock = threading.Lock()
        self.done = threading.Event()

    def delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._errors.append(str(error))
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


def produce_all(bootstrap: str, topic: str, batches: list[list[dict[str, Any]]], concurrency: int) -> Run:
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 1}))
    lock = threading.Lock()
    pending = list(reversed(batches))
    latencies: list[float] = []
    errors: list[str] = []

    def sender() -> None:
        while True:
            with lock:
                if not pending:
                    return
                batch = pending.pop()
            started = time.perf_counter()
            acks = _Acks(len(batch), errors)
            for record in batch:
                producer.produce(topic, value=orjson.dumps(record), key=orjson.dumps([record["user_id"]]),
                                 on_delivery=acks.delivered)
            while not acks.done.is_set():
                producer.poll(0.005)
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    producer.flush(10)
    if errors:
        raise RuntimeError(f"the peer producer failed: {errors[0]}")
    return Run(len(batches) * BATCH, wall, latencies)


# -- the benchmark ------------------------------------------------------------------------------
def _start_server(ctx: BenchContext, bootstrap: str, workspace: str) -> tuple[str, str]:
    apply_workspace(bootstrap, push_workspace(workspace))
    _, secret = create_api_key(bootstrap, workspace, "writer", "bench")
    port = free_port_pair()[0]
    supervisor = Supervisor(ctx.scratch("ingest-logs"))
    supervisor.start("serve", ["serve", "--port", str(port), "--bootstrap", bootstrap,
                               "--home", str(ctx.scratch("ingest-home"))])
    ctx.on_close(supervisor.stop_all)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, timeout_s=120)
    # The replica learns the workspace and the key from the bus within a moment of starting.
    probe = orjson.dumps({"workspace_name": workspace, "dry_run": True,
                          "records": {SOURCE: [{"record": make_batches(1, int(time.time() * 1000))[0][0]}]}})
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while True:
            response = client.post("/ingest", content=probe, headers={"Authorization": f"Tecton-key {secret}"})
            if response.status_code == 200:
                return url, secret
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server never accepted the bench key: {response.status_code} {response.text}")
            time.sleep(0.2)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    bootstrap = ctx.kafka_bootstrap()
    workspace = f"bench_ingest_{ctx.run_id}"
    url, secret = _start_server(ctx, bootstrap, workspace)
    topic = push_topic(workspace, SOURCE)
    now_ms = int(time.time() * 1000)
    results: list[dict[str, Any]] = []
    asyncio.run(_post_all(url, secret, workspace, ingest_bodies(workspace, make_batches(sizes.warmup_batches, now_ms)), 2))
    produce_all(bootstrap, topic, make_batches(sizes.warmup_batches, now_ms), 2)
    for concurrency in sizes.concurrency:
        batches = make_batches(sizes.batches, now_ms)
        ours = asyncio.run(_post_all(url, secret, workspace, ingest_bodies(workspace, batches), concurrency))
        theirs = produce_all(bootstrap, topic, batches, concurrency)
        log.info("ingest c=%d: featurebus %.0f records/s (p99 %.1f ms), peer %.0f records/s (p99 %.1f ms)",
                 concurrency, ours.records_per_s, percentile(ours.batch_ms, 99), theirs.records_per_s,
                 percentile(theirs.batch_ms, 99))
        detail = {"concurrency": concurrency, "batch_records": BATCH, "batches": sizes.batches,
                  "load_1m_after": load_1m()}
        results.append(emit("ingest", f"records_per_s_c{concurrency}", ours.records_per_s, "records/s", PEER,
                            ratio(ours.records_per_s, theirs.records_per_s, True),
                            {**detail, "peer_value": round(theirs.records_per_s, 1)}))
        for name, q in (("p50", 50.0), ("p99", 99.0)):
            value = median(ours.batch_ms) if q == 50.0 else percentile(ours.batch_ms, q)
            peer_value = median(theirs.batch_ms) if q == 50.0 else percentile(theirs.batch_ms, q)
            results.append(emit("ingest", f"batch_{name}_ms_c{concurrency}", value, "ms", PEER,
                                ratio(value, peer_value, False), {**detail, "peer_value": round(peer_value, 3)}))
    return results
