"""Ingestion speed: ``POST /ingest`` batches of 100 records against a live ``featurebus serve``
and the real broker, next to Feast's push API (``feast serve``, ``POST /push``).

Both servers get the same records from the same closed-loop load generator (``bench.loadgen``,
its own process) at each concurrency, one keep-alive connection per concurrent sender, timed per
batch (request written -> answer read):

* featurebus: each answer means the server validated all 100 records against the push source's
  schema (one bad record rejects the whole request) and Kafka acknowledged every one of them
  (idempotent producer, ``acks=all``); the stream worker takes them from there.
* Feast 0.x (``bench/.venvs/feast``, ``feast serve --max-requests 0 --no-access-log``): the same
  records as a columnar ``df`` pushed ``to: online`` into its SQLite online store (Feast's
  default local store; its answer means the rows are written there).

featurebus runs ``--no-access-log`` as Feast does. Also measured, as ``kafka_floor`` in each
result's detail: the same records produced straight to the push topic by a bare
``confluent_kafka`` producer (idempotent, ``acks=all``) in this process, each sender waiting for
its own batch's acknowledgements: no HTTP, no validation, the floor of any ingestion API over
Kafka.

Reported per worker count and concurrency: ``records_per_s`` and per-batch ``batch_p50_ms`` /
``batch_p99_ms``, with Feast's figure and the ratio (> 1: featurebus wins).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from bench.harness import BENCH_DIR, BenchContext, emit, load_1m, median, percentile, ratio
from bench.loadgen import LoadSpec
from bench.peer_venv import FEAST_VERSION, feast_python
from bench.serving_servers import Server, run_loadgen, start_feast, start_featurebus
from featurebus import Aggregate, Entity, FeatureService, Field, PushConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.clients import producer_config
from featurebus.platform.kafka.topics import push_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import format_iso_ms
from featurebus.types import Float64, Int64, String, Timestamp

__all__ = ["run"]

log = logging.getLogger(__name__)

BATCH = 100
SOURCE = "clicks"
FEAST_PUSH_SOURCE = "clicks_push"
PEER = f"Feast {FEAST_VERSION} push API (feast serve, POST /push to its SQLite online store)"
FEAST_PUSH_APP = BENCH_DIR / "peers" / "feast_push_repo.py"


@dataclass(frozen=True)
class Sizes:
    seconds: float  # measured per (server, workers, concurrency)
    warmup_s: float
    concurrency: tuple[int, ...]
    workers: tuple[int, ...]
    distinct_batches: int  # the load generator cycles through these
    floor_batches: int  # per concurrency, for the bare producer


FULL = Sizes(
    seconds=10.0, warmup_s=2.0, concurrency=(1, 8, 16), workers=(1, 2), distinct_batches=400, floor_batches=2_000
)
QUICK = Sizes(seconds=2.0, warmup_s=0.5, concurrency=(1, 8), workers=(1,), distinct_batches=100, floor_batches=200)


def push_workspace(name: str) -> WorkspaceSpec:
    user = Entity(name="user", join_keys=[Field("user_id", String)])
    clicks = StreamSource(
        name=SOURCE,
        schema=[Field("user_id", String), Field("price", Float64), Field("quantity", Int64), Field("ts", Timestamp)],
        stream_config=PushConfig(log_offline=True),
    )

    @stream_feature_view(
        source=clicks,
        entities=[user],
        mode="pandas",
        online=True,
        offline=True,
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
            batch.append(
                {
                    "user_id": f"user_{n % 10_000}",
                    "price": float(n % 97) + 0.5,
                    "quantity": n % 7 + 1,
                    "ts": format_iso_ms(now_ms - (n % 3_600_000)),
                }
            )
        batches.append(batch)
    return batches


def ingest_bodies(workspace: str, batches: list[list[dict[str, Any]]]) -> list[bytes]:
    return [
        orjson.dumps({"workspace_name": workspace, "records": {SOURCE: [{"record": r} for r in batch]}})
        for batch in batches
    ]


def feast_bodies(batches: list[list[dict[str, Any]]]) -> list[bytes]:
    """The same records as Feast's push takes them: one column list per field."""
    return [
        orjson.dumps(
            {
                "push_source_name": FEAST_PUSH_SOURCE,
                "to": "online",
                "df": {name: [r[name] for r in batch] for name in ("user_id", "price", "quantity", "ts")},
            }
        )
        for batch in batches
    ]


@dataclass
class Run:
    records: int
    wall_s: float
    batch_ms: list[float]

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s


# -- the floor: a bare producer -------------------------------------------------------------------
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
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))  # as the ingest sink's
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
                producer.produce(
                    topic, value=orjson.dumps(record), key=orjson.dumps([record["user_id"]]), on_delivery=acks.delivered
                )
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
        raise RuntimeError(f"the bare producer failed: {errors[0]}")
    return Run(len(batches) * BATCH, wall, latencies)


# -- the servers --------------------------------------------------------------------------------
def _accepting(server: Server, workspace: str, secret: str, now_ms: int, workers: int) -> None:
    """Until the server (each of its processes) knows the workspace and the bench key: they
    arrive from the bus a moment after the process starts."""
    probe = orjson.dumps(
        {"workspace_name": workspace, "dry_run": True, "records": {SOURCE: [{"record": make_batches(1, now_ms)[0][0]}]}}
    )
    deadline = time.monotonic() + 60
    accepted = 0
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        while accepted < 20 * workers:  # fresh connections: several processes share the socket
            response = client.post(
                "/ingest", content=probe, headers={"Authorization": f"Tecton-key {secret}", "Connection": "close"}
            )
            if response.status_code == 200:
                accepted += 1
                continue
            accepted = 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server never accepted the bench key: {response.status_code} {response.text}")
            time.sleep(0.2)


def _feast_repo(ctx: BenchContext, feast: Path) -> Path:
    repo = ctx.scratch("feast-push-repo")
    with (ctx.scratch("ingest-logs") / "feast-apply.log").open("ab") as out:
        subprocess.run(
            [str(feast), str(FEAST_PUSH_APP), str(repo)],
            cwd=repo,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )
    return repo


def _load(
    ctx: BenchContext,
    server: Server,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    sizes: Sizes,
    headers: dict[str, str],
) -> dict[str, Any]:
    spec = LoadSpec(
        "127.0.0.1",
        server.port,
        path,
        [b.decode() for b in bodies],
        concurrency,
        sizes.seconds,
        sizes.warmup_s,
        headers,
    )
    result = run_loadgen(ctx, spec, f"ingest-{server.name}-c{concurrency}")
    if result["errors"]:
        raise RuntimeError(f"{server.name} {path} answered errors: {result['first_error']}")
    result["records_per_s"] = result["requests_per_s"] * BATCH
    result["load_1m"] = load_1m()
    log.info(
        "ingest %s c=%d: %.0f records/s, batch p50 %.2f ms, p99 %.2f ms",
        server.name,
        concurrency,
        result["records_per_s"],
        result["p50_ms"],
        result["p99_ms"],
    )
    return result


def _feast_failure(server: Server, exc: RuntimeError) -> str:
    """Why Feast's run failed, from its log when it says (Feast 0.67's SQLite online store shares
    one connection between the threads serving concurrent pushes, and fails with "cannot start a
    transaction within a transaction"), else from the load generator."""
    errors = [line for line in server.tail(400).splitlines() if "Error:" in line]
    return errors[-1].strip() if errors else str(exc)[-300:]


# -- the benchmark ------------------------------------------------------------------------------
def run(ctx: BenchContext) -> list[dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    bootstrap = ctx.kafka_bootstrap()
    feast = feast_python()  # first: a missing peer venv takes minutes to build, fail early if it cannot
    repo = _feast_repo(ctx, feast)
    workspace = f"bench_ingest_{ctx.run_id}"
    apply_workspace(KafkaRegistry(bootstrap), push_workspace(workspace))
    _, secret = create_api_key(KafkaRegistry(bootstrap), workspace, "writer", "bench")
    now_ms = int(time.time() * 1000)
    batches = make_batches(sizes.distinct_batches, now_ms)
    ours: dict[tuple[int, int], dict[str, Any]] = {}
    theirs: dict[tuple[int, int], dict[str, Any]] = {}
    for workers in sizes.workers:
        server = start_featurebus(ctx, bootstrap, workers)
        try:
            _accepting(server, workspace, secret, now_ms, workers)
            for concurrency in sizes.concurrency:
                ours[(workers, concurrency)] = _load(
                    ctx,
                    server,
                    "/ingest",
                    ingest_bodies(workspace, batches),
                    concurrency,
                    sizes,
                    {"Authorization": f"Tecton-key {secret}"},
                )
        finally:
            server.stop()
        for concurrency in sizes.concurrency:
            # A fresh Feast per run: a failed run (see _feast_failure) leaves its store mid-transaction.
            server = start_feast(ctx, feast, repo, workers)
            try:
                theirs[(workers, concurrency)] = _load(
                    ctx, server, "/push", feast_bodies(batches), concurrency, sizes, {}
                )
            except RuntimeError as exc:
                theirs[(workers, concurrency)] = {"failed": _feast_failure(server, exc)}
                log.warning(
                    "ingest feast-w%d c=%d failed: %s", workers, concurrency, theirs[(workers, concurrency)]["failed"]
                )
            finally:
                server.stop()
    floor = {
        c: produce_all(bootstrap, push_topic(workspace, SOURCE), make_batches(sizes.floor_batches, now_ms), c)
        for c in sizes.concurrency
    }
    return _results(sizes, ours, theirs, floor)


def _results(
    sizes: Sizes,
    ours: dict[tuple[int, int], dict[str, Any]],
    theirs: dict[tuple[int, int], dict[str, Any]],
    floor: dict[int, Run],
) -> list[dict[str, Any]]:
    results = []
    for (workers, concurrency), mine in sorted(ours.items()):
        peer = theirs.get((workers, concurrency), {})
        failure = peer.get("failed")
        bare = floor[concurrency]
        bare_values = {
            "records_per_s": bare.records_per_s,
            "p50_ms": median(bare.batch_ms),
            "p99_ms": percentile(bare.batch_ms, 99.0),
        }
        suffix = f"c{concurrency}" if workers == 1 else f"c{concurrency}_w{workers}"
        for key, metric, unit, higher in (
            ("records_per_s", "records_per_s", "records/s", True),
            ("p50_ms", "batch_p50_ms", "ms", False),
            ("p99_ms", "batch_p99_ms", "ms", False),
        ):
            value, peer_value = mine[key], peer.get(key)
            results.append(
                emit(
                    "ingest",
                    f"{metric}_{suffix}",
                    value,
                    unit,
                    PEER,
                    ratio(value, peer_value, higher),
                    {
                        "peer_value": None if peer_value is None else round(peer_value, 3),
                        "kafka_floor": round(bare_values[key], 3),
                        "workers": workers,
                        "concurrency": concurrency,
                        "batch_records": BATCH,
                        "seconds": sizes.seconds,
                        "batches": mine["requests"],
                        "peer_batches": peer.get("requests"),
                        "load_1m": mine["load_1m"],
                        "peer_load_1m": peer.get("load_1m"),
                        **({"peer_failed": failure} if failure else {}),
                    },
                )
            )
    return results
