"""The stream path of the fraud example: sustained events/s from produce to online store (vs Quix
Streams on the same topic) and freshness, event produced -> value visible over HTTP (vs a bare
consumer folding into a dict). See ``stream_throughput`` and ``stream_freshness`` for how each
is measured; this module sizes the runs, repeats them and turns them into result lines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from bench.fraud_setup import FeatureClient, apply_fraud, platform_home
from bench.harness import BenchContext, emit, load_1m, median, percentile, ratio
from bench.kafka_progress import CatchUp, OffsetReader
from bench.stream_engine import measure
from bench.stream_freshness import (
    DictFolder,
    FreshnessRun,
    Probe,
    event_producer,
    http_counts,
    measure_freshness,
    plan,
    served_sums_match,
)
from bench.stream_throughput import PARTITIONS, describe, make_backlog, quix_label, run_featurebus, run_quix
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.local.up import LocalPlatform
from featurebus.schemas.kinds import StreamEngineKind

__all__ = ["FULL", "QUICK", "Sizes", "platform_freshness", "run"]

log = logging.getLogger(__name__)

BASELINE = "confluent_kafka consumer -> dict (no windows, no HTTP)"


@dataclass(frozen=True)
class Sizes:
    events: int
    users: int
    repeats: int
    featurebus_timeout_s: float
    # Quix's sliding windows cost O(events of the key in the window) per event, and the example's
    # generator sends over half the events to three users, so Quix would need hours for a full
    # backlog. Its rate is taken over a capped run instead; it only falls as windows fill, so a
    # capped rate flatters Quix, and the ratio understates featurebus's lead.
    quix_cap_s: float
    fresh_rate: float
    fresh_seconds: float


FULL = Sizes(
    events=200_000,
    users=100_000,
    repeats=3,
    featurebus_timeout_s=600,
    quix_cap_s=60,
    fresh_rate=5_000,
    fresh_seconds=20,
)
QUICK = Sizes(
    events=30_000, users=100_000, repeats=1, featurebus_timeout_s=300, quix_cap_s=30, fresh_rate=200, fresh_seconds=5
)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    engine = engine_cpu(sizes)  # first, while no platform or broker work competes for the CPU
    bootstrap = ctx.kafka_bootstrap()
    return throughput(ctx, bootstrap, sizes) + freshness(ctx, bootstrap, sizes) + engine


# -- the engine alone -----------------------------------------------------------------------------
def engine_cpu(sizes: Sizes) -> list[dict[str, Any]]:
    """``StreamEngine.process`` without Kafka (``stream_engine``): CPU per event in the worker's
    catch-up batches and per batch at the freshness rate, the steadiest figures on a shared
    machine. No peer runs this part."""
    figures = measure(sizes.events, sizes.users, batch=10_000, small=max(1, int(sizes.fresh_rate) // 100))
    detail = {k: v for k, v in figures.items() if k not in ("events_per_cpu_s", "small_batch_cpu_ms")}
    return [
        emit("stream_engine", "events_per_cpu_s", figures["events_per_cpu_s"], "events/s", None, None, detail),
        emit("stream_engine", "small_batch_cpu_ms", figures["small_batch_cpu_ms"], "ms", None, None, detail),
    ]


# -- throughput -----------------------------------------------------------------------------------
def throughput(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> list[dict[str, Any]]:
    ours: list[CatchUp] = []
    peers: list[CatchUp | None] = []
    peer_errors: list[str] = []
    for rep in range(sizes.repeats):
        # The same seed every time: each repetition works off an identical backlog.
        backlog = make_backlog(bootstrap, f"bench.{ctx.run_id}.transactions-{rep}", sizes.events, sizes.users, seed=7)
        profile = ctx.profile_worker if rep == 0 else None
        ours.append(
            run_featurebus(ctx, bootstrap, backlog, f"bench-{ctx.run_id}-tp{rep}", sizes.featurebus_timeout_s, profile)
        )
        log.info("featurebus rep %d: %s", rep + 1, _rates(ours[-1]))
        try:
            peer = run_quix(ctx, bootstrap, backlog, f"bench.{ctx.run_id}.quix-{rep}", sizes.quix_cap_s)
            peers.append(peer)
            log.info("quix rep %d: %s", rep + 1, _rates(peer))
        except Exception as exc:  # the peer failing must not hide featurebus's figures
            log.exception("the Quix peer failed")
            peers.append(None)
            peer_errors.append(f"{type(exc).__name__}: {exc}"[:500])

    results = []
    for metric, include_startup in (("events_per_s", False), ("events_per_s_incl_startup", True)):
        mine = [r.events_per_s(include_startup) for r in ours]
        theirs = [p.events_per_s(include_startup) if p is not None else None for p in peers]
        value = median([v for v in mine if v is not None]) if all(v is not None for v in mine) else None
        known = [v for v in theirs if v is not None]
        peer_value = median(known) if known else None
        results.append(
            emit(
                "stream_throughput",
                metric,
                value,
                "events/s",
                quix_label(),
                ratio(value, peer_value, higher_is_better=True),
                {
                    "peer_value": None if peer_value is None else round(peer_value, 1),
                    "samples": [None if v is None else round(v, 1) for v in mine],
                    "peer_samples": [None if v is None else round(v, 1) for v in theirs],
                    "events": sizes.events,
                    "users": sizes.users,
                    "partitions": PARTITIONS,
                    "repeats": sizes.repeats,
                    "peer_cap_s": sizes.quix_cap_s,
                    "load_1m_after": load_1m(),
                    "featurebus_runs": [describe(r) for r in ours],
                    "peer_runs": [describe(p) if p is not None else None for p in peers],
                    **({"peer_errors": peer_errors} if peer_errors else {}),
                },
            )
        )
    return results


def _rates(result: CatchUp) -> str:
    steady, launch = result.events_per_s(False), result.events_per_s(True)
    return (
        f"{result.consumed} events, finished={result.finished}, "
        f"{steady or 0:,.0f}/s from first output, {launch or 0:,.0f}/s from launch {result.notes or ''}"
    )


# -- freshness ------------------------------------------------------------------------------------
def freshness(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> list[dict[str, Any]]:
    ours, checked = platform_freshness(ctx, bootstrap, sizes.fresh_rate, sizes.fresh_seconds)
    base = _baseline_freshness(ctx, bootstrap, sizes)
    mine, theirs = ours.latencies_ms, base.latencies_ms
    results = []
    for metric, q in (("p50_ms", 50.0), ("p99_ms", 99.0)):
        value = percentile(mine, q) if mine else None
        peer_value = percentile(theirs, q) if theirs else None
        results.append(
            emit(
                "freshness",
                metric,
                value,
                "ms",
                BASELINE,
                # Below 1 by construction: the baseline is an upper bound on possible freshness.
                ratio(value, peer_value, higher_is_better=False),
                {
                    "peer_value": None if peer_value is None else round(peer_value, 2),
                    "events": len(ours.probes),
                    "watched": sum(p.tracked for p in ours.probes),
                    "rate_per_s": sizes.fresh_rate,
                    "seconds": sizes.fresh_seconds,
                    "visible": len(mine),
                    "peer_visible": len(theirs),
                    "max_ms": round(max(mine), 1) if mine else None,
                    "http_polls": ours.polls,
                    "sum_check": checked,
                    "load_1m_after": load_1m(),
                    "notes": ours.notes + base.notes,
                },
            )
        )
    return results


def platform_freshness(
    ctx: BenchContext,
    bootstrap: str,
    rate: float,
    seconds: float,
    engine: StreamEngineKind = StreamEngineKind.NATIVE,
    warm_timeout_s: float = 90.0,
) -> tuple[FreshnessRun, dict[str, int]]:
    """Freshness through a whole local platform (``featurebus up``) whose worker is ``engine``."""
    tag = "fresh" if engine == StreamEngineKind.NATIVE else f"fresh-{engine.value}"
    workspace = f"bench-{ctx.run_id}-{tag}"
    topic = f"bench.{ctx.run_id}.{tag}"
    ensure_topics(bootstrap, [TopicConfig(topic, PARTITIONS)])
    _, secret = apply_fraud(bootstrap, workspace, topic)
    home = platform_home(ctx.scratch("platforms"), workspace)
    with LocalPlatform(home, workspace, bootstrap=bootstrap, engine=engine) as platform:
        client = FeatureClient(platform.serving_url, workspace, secret)
        try:
            client.wait_ready()
            read = http_counts(client)
            producer = event_producer(bootstrap)
            # One event end to end first: the worker has joined its group and serving follows
            # the feature topics, so the measurement starts on a warm, idle platform.
            warm = measure_freshness(
                producer,
                topic,
                [Probe(f"warm-{ctx.run_id}", 1, 1.0)],
                1.0,
                read,
                poll_pause_s=0.05,
                settle_timeout_s=warm_timeout_s,
            )
            if warm.missing:
                raise RuntimeError(f"a warm-up event never became visible:\n{platform.log_tail('worker')}")
            time.sleep(2.0)
            platform.check()
            probes = plan(f"{ctx.run_id}-{tag}", rate, seconds)
            # 5 ms between polls (each a round trip for every pending user): the measurement's
            # resolution, and a bias against featurebus, is a few ms; a tighter loop spent the
            # CPU of this process and of serving (its materializer thread shares that process's
            # GIL), on the machine the whole platform shares, to resolve milliseconds that
            # nobody reads in a p99 of hundreds.
            run = measure_freshness(producer, topic, probes, rate, read, poll_pause_s=0.005)
            checked, bad = served_sums_match(client, probes)
            if bad:
                log.warning(
                    "freshness: %d of %d users are served a 1h sum that differs from what was produced", bad, checked
                )
            return run, {"users": checked, "mismatched": bad}
        finally:
            client.close()


def _baseline_freshness(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> FreshnessRun:
    topic = f"bench.{ctx.run_id}.fresh-baseline"
    ensure_topics(bootstrap, [TopicConfig(topic, PARTITIONS)])
    reader = OffsetReader(bootstrap)
    try:
        start = reader.end_offsets(topic)
    finally:
        reader.close()
    folder = DictFolder(bootstrap, topic, sorted(start), start)
    producer = event_producer(bootstrap)
    try:
        warm = measure_freshness(
            producer,
            topic,
            [Probe(f"warm-{ctx.run_id}", 1, 1.0)],
            1.0,
            folder.read,
            poll_pause_s=0.001,
            settle_timeout_s=30,
        )
        if warm.missing:
            raise RuntimeError("the baseline consumer never saw its warm-up event")
        probes = plan(f"{ctx.run_id}-base", sizes.fresh_rate, sizes.fresh_seconds)
        # A short sleep between polls hands the GIL to the consumer thread at once; spinning
        # would hold it for the interpreter's 5 ms switch interval and slow the baseline down.
        return measure_freshness(producer, topic, probes, sizes.fresh_rate, folder.read, poll_pause_s=0.0002)
    finally:
        folder.close()
