"""What monitoring costs: serving with feature logging, and the offline materializer with
data-quality statistics, each next to the same system with the feature off (the peer).

* ``serving``: ``examples/fraud``'s ``fraud_detection`` three times in one workspace, identical but
  for ``logging``: off, ``LoggingConfig(sample_rate=1.0)`` and ``sample_rate=0.01``. Tiles come from
  ``serving_data.publish_tiles`` as in ``bench_serving``; one ``featurebus serve`` process; the same
  load generator, single lookups at concurrency 16, the three services measured in turn (rotating
  the order per repetition, so drift in the machine's load spreads over all three). Targets: at
  most 10% (1.0) and 2% (0.01) fewer requests/s than logging off.
* ``serving_cpu``: the same three services answered in this process by ``FeatureServer`` over an
  in-memory store holding the engine's tiles of the same data, with a real ``FeatureLogger`` on
  the run's broker: process CPU (all threads: the logger's producer thread too) per lookup;
  ``cpu_repeats`` rounds, each measuring the three variants back to back (rotating the order);
  the ratio is the median over rounds of that round's off/variant ratio. On a shared machine this is the
  steady figure; the HTTP one swings with everyone else's load.
* ``offline``: the fraud example's events on a topic, consumed to the end by an
  ``OfflineMaterializer`` in this process with data quality on (both fraud views are offline,
  so both get statistics) and off, alternating, each run in its own workspace (its own group and
  files). Target: at most 10% fewer events/s with statistics on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import pandas as pd

from bench.fraud_setup import fraud_spec
from bench.harness import BenchContext, emit, load_1m, median, ratio
from bench.loadgen import LoadSpec
from bench.serving_data import make_dataset, publish_tiles
from bench.serving_servers import run_loadgen, start_featurebus
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kv import MemoryStore
from featurebus.platform.local.generator import fraud_events, produce_events
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import encode_partials, store_key, tile_key
from featurebus.schemas.specs import LoggingSpec
from featurebus.serving.feature_logging import FeatureLogger
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.streams.tiles import CompiledView, batch_tiles
from featurebus.streams.transform import Transformation, view_input_frame

__all__ = ["run"]

log = logging.getLogger(__name__)

SERVICE = "fraud_detection"
VARIANTS = {"off": None, "rate1": LoggingSpec(1.0), "rate0.01": LoggingSpec(0.01)}


@dataclasses.dataclass(frozen=True)
class Sizes:
    users: int
    seconds: float
    repeats: int
    offline_events: int
    offline_repeats: int
    cpu_lookups: int  # per in-process CPU sample
    cpu_repeats: int  # samples per variant, interleaved with the others'


FULL = Sizes(
    users=50_000, seconds=5.0, repeats=3, offline_events=500_000, offline_repeats=3, cpu_lookups=40_000, cpu_repeats=9
)
QUICK = Sizes(
    users=5_000, seconds=2.0, repeats=2, offline_events=100_000, offline_repeats=2, cpu_lookups=10_000, cpu_repeats=9
)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    bootstrap = ctx.kafka_bootstrap()
    return _serving(ctx, bootstrap, sizes) + _serving_cpu(ctx, bootstrap, sizes) + _offline(ctx, bootstrap, sizes)


# -- serving with feature logging -------------------------------------------------------------------
def _serving(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> list[dict[str, Any]]:
    workspace = f"bench-{ctx.run_id}-logging"
    topic = f"bench.{ctx.run_id}.logging-transactions"
    spec = fraud_spec(workspace, topic)
    base = spec.service(SERVICE)
    services = tuple(
        dataclasses.replace(base, name=f"{SERVICE}_{name}", logging=config) for name, config in VARIANTS.items()
    )
    spec = apply_workspace(
        KafkaRegistry(bootstrap), dataclasses.replace(spec, feature_services=(*spec.feature_services, *services))
    )
    _, secret = create_api_key(KafkaRegistry(bootstrap), workspace, "reader", "bench")
    data = make_dataset(sizes.users, 1_000)
    publish_tiles(bootstrap, spec, topic, data)
    pairs = [(data.user(i % data.users), data.merchant(i % data.merchants)) for i in range(0, 2_000 * 7, 7)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    server = start_featurebus(ctx, bootstrap, 1)
    try:
        order = list(VARIANTS)
        # Rep -1 warms the server (tile cache, plans, first logging-topic creation) and is dropped:
        # the first seconds of a fresh server were the slowest of every run.
        for rep in range(-1, sizes.repeats):
            for name in order[rep % len(order) :] + order[: rep % len(order)]:
                bodies = [
                    json.dumps(
                        {
                            "params": {
                                "workspaceName": workspace,
                                "featureServiceName": f"{SERVICE}_{name}",
                                "joinKeyMap": {"user_id": user, "merchant_id": merchant},
                            }
                        }
                    )
                    for user, merchant in pairs
                ]
                spec_ = LoadSpec(
                    "127.0.0.1",
                    server.port,
                    "/api/v1/feature-service/get-features",
                    bodies,
                    16,
                    sizes.seconds,
                    0.5,
                    {"Authorization": f"Tecton-key {secret}"},
                )
                result = run_loadgen(ctx, spec_, f"logging-{name}-r{rep}")
                server.check()
                if result["errors"]:
                    raise RuntimeError(f"logging {name}: {result['errors']} failed requests: {result['first_error']}")
                result["load_1m"] = load_1m()
                log.info("logging %s: %.0f req/s, p99 %.2f ms", name, result["requests_per_s"], result["p99_ms"] or 0)
                if rep >= 0:
                    runs[name].append(result)
    finally:
        server.stop()
    off = median([r["requests_per_s"] for r in runs["off"]])
    results = []
    for name in ("rate1", "rate0.01"):
        value = median([r["requests_per_s"] for r in runs[name]])
        results.append(
            emit(
                "monitoring",
                f"serving_logging_{name.replace('.', '_')}_requests_per_s",
                value,
                "requests/s",
                "featurebus serving, same service with logging off",
                ratio(value, off, True),
                {
                    "peer_value": round(off, 3),
                    "samples": [round(r["requests_per_s"], 3) for r in runs[name]],
                    "peer_samples": [round(r["requests_per_s"], 3) for r in runs["off"]],
                    "p99_ms": [r["p99_ms"] for r in runs[name]],
                    "peer_p99_ms": [r["p99_ms"] for r in runs["off"]],
                    "target": "ratio >= 0.90" if name == "rate1" else "ratio >= 0.98",
                    "concurrency": 16,
                    "users": sizes.users,
                    "load_1m": [r["load_1m"] for r in runs[name]],
                },
            )
        )
    return results


# -- serving with feature logging, CPU per lookup in-process --------------------------------------
def _serving_cpu(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> list[dict[str, Any]]:
    workspace = f"bench-{ctx.run_id}-logging-cpu"
    spec = fraud_spec(workspace, "unused")
    base = spec.service(SERVICE)
    services = tuple(
        dataclasses.replace(base, name=f"{SERVICE}_{name}", logging=config) for name, config in VARIANTS.items()
    )
    spec = dataclasses.replace(spec, feature_services=services)
    data = make_dataset(sizes.users, 1_000)
    frame = data.events.assign(timestamp=pd.to_datetime(data.events["ts_ms"], unit="ms", utc=True))
    store = MemoryStore()
    for view in spec.stream_feature_views:
        rows, ts_ms = view_input_frame(view, Transformation(view.transformation).apply(frame))
        compiled = CompiledView.compile(view, ["string"] * len(view.join_keys))
        name = online_view_name(spec.name, view.name)
        store.write(
            (store_key(name, tile_key(u.entity_key, u.tile_start_ms)), encode_partials(u.partials))
            for u in batch_tiles(compiled, rows, ts_ms)
        )
    logger = FeatureLogger(bootstrap)
    server = FeatureServer(lambda: {workspace: spec}, store, lambda: data.now_ms, feature_logger=logger)
    keys = [
        {"user_id": data.user(i % data.users), "merchant_id": data.merchant(i % data.merchants)}
        for i in range(0, 14_000, 7)
    ]
    lookups = sizes.cpu_lookups
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        order = list(VARIANTS)
        # Many short samples, the variants interleaved and rotated, medians reported: another
        # process's burst then spoils one sample of one variant, not the comparison.
        for rep in range(-1, sizes.cpu_repeats):
            for name in order[rep % len(order) :] + order[: rep % len(order)]:
                service = f"{SERVICE}_{name}"
                started = time.process_time()
                for i in range(lookups):
                    server.get_features(workspace, service, keys[i % len(keys)])
                time.sleep(0.5)  # let the logger's thread produce what this run queued (its CPU counts)
                if rep >= 0:
                    cpu[name].append((time.process_time() - started) / lookups * 1e6)
    finally:
        logger.close()
    off = median(cpu["off"])
    # Each rotation round measures the three variants back to back, so the ratio within a round
    # sees (nearly) the same machine load; the median of those paired ratios is the figure.
    paired = {name: median([o / v for o, v in zip(cpu["off"], cpu[name], strict=True)]) for name in VARIANTS}
    return [
        emit(
            "monitoring",
            f"serving_logging_{name.replace('.', '_')}_cpu_us_per_lookup",
            median(cpu[name]),
            "us",
            "featurebus FeatureServer in-process, same service with logging off (median of per-round ratios)",
            round(paired[name], 3),
            {
                "peer_value": round(off, 3),
                "ratio_of_medians": ratio(median(cpu[name]), off, False),
                "samples": [round(v, 3) for v in cpu[name]],
                "peer_samples": [round(v, 3) for v in cpu["off"]],
                "lookups": lookups,
                "load_1m_after": load_1m(),
                "target": "ratio >= 0.90" if name == "rate1" else "ratio >= 0.98",
            },
        )
        for name in ("rate1", "rate0.01")
    ]


# -- offline materializer with data-quality statistics ----------------------------------------------
def _offline(ctx: BenchContext, bootstrap: str, sizes: Sizes) -> list[dict[str, Any]]:
    topic = f"bench.{ctx.run_id}.quality-transactions"
    ensure_topics(bootstrap, [TopicConfig(topic, partitions=2)])
    now_ms = int(time.time() * 1000)
    produced = produce_events(
        bootstrap, topic, fraud_events(sizes.offline_events, now_ms - 6 * 3_600_000, 6 * 3_600_000)
    )
    rates: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(sizes.offline_repeats):
        for quality in (True, False) if rep % 2 == 0 else (False, True):
            workspace = f"bench-{ctx.run_id}-quality-{rep}-{'on' if quality else 'off'}"
            apply_workspace(KafkaRegistry(bootstrap), fraud_spec(workspace, topic))
            root = ctx.scratch(f"quality-offline-{rep}-{quality}")
            with OfflineMaterializer(bootstrap, root, workspace, data_quality=quality) as materializer:
                started = time.monotonic()
                written = materializer.run_until_caught_up(timeout_s=600)
                elapsed = time.monotonic() - started
            if written != produced:
                raise RuntimeError(f"offline materializer wrote {written} of {produced} events")
            rates[quality].append(written / elapsed)
            log.info(
                "offline materializer, data quality %s: %.0f events/s", "on" if quality else "off", written / elapsed
            )
    on, off = median(rates[True]), median(rates[False])
    return [
        emit(
            "monitoring",
            "offline_data_quality_events_per_s",
            on,
            "events/s",
            "featurebus offline materializer with data quality off",
            ratio(on, off, True),
            {
                "peer_value": round(off, 3),
                "samples": [round(v, 3) for v in rates[True]],
                "peer_samples": [round(v, 3) for v in rates[False]],
                "events": produced,
                "target": "ratio >= 0.90",
                "load_1m_after": load_1m(),
            },
        )
    ]
