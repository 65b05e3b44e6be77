"""The Flink engine next to the native worker, in the same run: sustained events/s (parallelism 1
and 2) and freshness at the stream bench's rate.

* **Throughput**: per engine a fresh workspace of the fraud example over a fresh copy of the same
  backlog (``stream_throughput.make_backlog``, 4 partitions, filled before anything consumes).
  Only the engine runs — ``featurebus worker`` (native) or ``featurebus flink run --parallelism
  N`` (PyFlink in a local mini-cluster) — and the same outside observer (``kafka_progress``) times
  it from its first feature record to when its consumer group's committed offsets reached the
  backlog's end and its feature topics stopped growing. The Flink source commits its offsets when
  a checkpoint completes, the native worker with each transaction: both say "this is durable in
  the feature topics". ``events_per_s_incl_startup`` adds process launch (the JVM, the mini-cluster
  and the Python workers: tens of seconds for Flink).
* **Freshness**: ``bench_stream.platform_freshness`` with the whole local platform
  (``featurebus up``) once per engine; the Flink job runs at parallelism 1 there.

Each line's peer is the native worker measured in the same run; ``ratio`` above 1 means the Flink
engine does better. The machine is shared: compare ratios, and read ``load_1m_after``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from bench.bench_stream import FULL, QUICK, platform_freshness
from bench.fraud_setup import apply_fraud, feature_topics
from bench.harness import BenchContext, emit, load_1m, percentile, ratio
from bench.kafka_progress import CatchUp, OffsetReader, watch_catch_up
from bench.stream_throughput import Backlog, describe, make_backlog
from featurebus.platform.kafka.topics import worker_group
from featurebus.schemas.kinds import StreamEngineKind

__all__ = ["run"]

log = logging.getLogger(__name__)

PEER = "featurebus native worker (same run)"
PARALLELISMS = (1, 2)
FLINK_START_TIMEOUT_S = 240.0  # JVM, mini-cluster and Python workers on a busy 2-core machine


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    from featurebus.platform.flink import flink_python
    from featurebus.schemas.errors import FlinkUnavailableError

    try:
        flink_python()
    except FlinkUnavailableError as exc:
        log.warning("bench_flink skipped: %s", exc)
        return []
    sizes = QUICK if ctx.quick else FULL
    bootstrap = ctx.kafka_bootstrap()
    return throughput(ctx, bootstrap, sizes.events, sizes.users) + freshness(
        ctx, bootstrap, sizes.fresh_rate, sizes.fresh_seconds
    )


# -- throughput -----------------------------------------------------------------------------------
def throughput(ctx: BenchContext, bootstrap: str, events: int, users: int) -> list[dict[str, Any]]:
    def backlog(name: str) -> Backlog:
        # The same seed every time: every engine works off an identical backlog.
        return make_backlog(bootstrap, f"bench.{ctx.run_id}.flink-{name}", events, users, seed=7)

    native = _catch_up(ctx, bootstrap, backlog("native"), "native", ["worker", "--engine", "native"], 300.0)
    log.info("native worker: %s", describe(native))
    results = []
    for parallelism in PARALLELISMS:
        name = f"p{parallelism}"
        flink = _catch_up(
            ctx,
            bootstrap,
            backlog(name),
            name,
            ["flink", "run", "--parallelism", str(parallelism)],
            FLINK_START_TIMEOUT_S + 600.0,
        )
        log.info("flink parallelism %d: %s", parallelism, describe(flink))
        for metric, include_startup in (("events_per_s", False), ("events_per_s_incl_startup", True)):
            value, peer_value = flink.events_per_s(include_startup), native.events_per_s(include_startup)
            results.append(
                emit(
                    "flink",
                    f"{metric}_p{parallelism}",
                    value,
                    "events/s",
                    PEER,
                    ratio(value, peer_value, higher_is_better=True),
                    {
                        "peer_value": None if peer_value is None else round(peer_value, 1),
                        "parallelism": parallelism,
                        "events": events,
                        "users": users,
                        "run": describe(flink),
                        "peer_run": describe(native),
                        "load_1m_after": load_1m(),
                    },
                )
            )
    return results


def _catch_up(
    ctx: BenchContext, bootstrap: str, backlog: Backlog, name: str, command: list[str], timeout_s: float
) -> CatchUp:
    """Run ``featurebus COMMAND`` on a fresh workspace over ``backlog`` until it has caught up."""
    from featurebus.streams.runtime.flink.job import flink_group

    workspace = f"bench-{ctx.run_id}-flink-{name}"
    spec, _ = apply_fraud(bootstrap, workspace, backlog.topic)
    home = ctx.scratch(f"flink/{name}")
    group = worker_group(workspace) if command[0] == "worker" else flink_group(workspace)
    args = [*command, "--workspace", workspace, "--bootstrap", bootstrap, "--home", str(home)]
    reader = OffsetReader(bootstrap)
    launched = time.monotonic()
    with open(home / "engine.log", "ab") as log_file:
        # Its own session: the Flink command's JVM is its child; the group is ended by our PID.
        process = subprocess.Popen(
            [sys.executable, "-m", "featurebus", *args], stdout=log_file, stderr=log_file, start_new_session=True
        )

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"featurebus {' '.join(command)} exited with {process.returncode}; see {home}")

    try:
        return watch_catch_up(
            reader,
            group=group,
            source_topic=backlog.topic,
            source_ends=backlog.ends,
            output_topics=feature_topics(spec),
            started_at=launched,
            timeout_s=timeout_s,
            alive=alive,
        )
    finally:
        reader.close()
        _stop(process)


def _stop(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %gs; killing its session", process.pid, grace_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the JVM a Flink job started, if still there
    except ProcessLookupError:
        pass
    process.wait()


# -- freshness ------------------------------------------------------------------------------------
def freshness(ctx: BenchContext, bootstrap: str, rate: float, seconds: float) -> list[dict[str, Any]]:
    native, native_check = platform_freshness(ctx, bootstrap, rate, seconds)
    flink, flink_check = platform_freshness(
        ctx, bootstrap, rate, seconds, engine=StreamEngineKind.FLINK, warm_timeout_s=FLINK_START_TIMEOUT_S
    )
    mine, theirs = flink.latencies_ms, native.latencies_ms
    results = []
    for metric, q in (("freshness_p50_ms", 50.0), ("freshness_p99_ms", 99.0)):
        value = percentile(mine, q) if mine else None
        peer_value = percentile(theirs, q) if theirs else None
        results.append(
            emit(
                "flink",
                metric,
                value,
                "ms",
                PEER,
                ratio(value, peer_value, higher_is_better=False),
                {
                    "peer_value": None if peer_value is None else round(peer_value, 2),
                    "rate_per_s": rate,
                    "seconds": seconds,
                    "watched": sum(p.tracked for p in flink.probes),
                    "visible": len(mine),
                    "peer_visible": len(theirs),
                    "max_ms": round(max(mine), 1) if mine else None,
                    "sum_check": flink_check,
                    "peer_sum_check": native_check,
                    "load_1m_after": load_1m(),
                    "notes": flink.notes + native.notes,
                },
            )
        )
    return results
