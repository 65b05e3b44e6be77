"""The stream engine alone: ``StreamEngine.process`` on generated records, a RocksDB state store
and a sink that only counts, no Kafka.

Process CPU time is far steadier than wall-clock rates on a shared machine, so this is the A/B
tool for the engine's hot path (run it on two branches back to back); ``bench_stream`` measures
the real pipeline. Two figures for the fraud example's views over 100k users:

* ``events_per_cpu_s``: large batches (the worker's catch-up batches), events per CPU second;
* ``small_batch_cpu_ms``: median CPU per batch of a few dozen events (what one batch costs at
  5,000 events/s, where every millisecond of it is freshness).

    python -m bench.stream_engine [--events 200000] [--batch 10000] [--small 40] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.fraud_setup import fraud_spec
from featurebus.platform.kv import RocksStore
from featurebus.platform.local.generator import fraud_events
from featurebus.streams.runtime.engine import Progress, RawRecord, StreamEngine

__all__ = ["CountingSink", "generated_records", "measure"]

TOPIC = "bench.transactions"  # not the example's own name: fraud_spec rewrites it
PARTITIONS = 4
SPAN_MS = 3_600_000


@dataclass
class CountingSink:
    """Counts what a Kafka sink would produce; commits are free."""

    published: int = 0
    commits: int = 0

    def publish(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.published += 1

    def dead_letter(self, record: RawRecord, reason: str) -> None:
        raise AssertionError(f"generated record dead-lettered: {reason}")

    def commit(self, progress: dict[tuple[str, int], Progress]) -> None:
        self.commits += 1


def generated_records(events: int, users: int, seed: int = 7) -> list[RawRecord]:
    """The throughput bench's backlog as the worker would consume it (keyed by user)."""
    now_ms = int(time.time() * 1000)
    offsets = [0] * PARTITIONS
    records = []
    for event in fraud_events(events, now_ms - SPAN_MS, SPAN_MS, users=users, merchants=100, seed=seed):
        partition = zlib.crc32(str(event["user_id"]).encode()) % PARTITIONS
        records.append(RawRecord(TOPIC, partition, offsets[partition], orjson.dumps(event)))
        offsets[partition] += 1
    return records


def _cpu_timed(action: Callable[[], None]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def measure(events: int, users: int, batch: int, small: int, profile: Path | None = None) -> dict[str, Any]:
    records = generated_records(events, users)
    # The worker's collector settings (streams/runtime/worker.py): without them the cyclic collector
    # walks the generated records over and over, and that is no cost of the engine's.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        return _measure(records, batch, small, profile)
    finally:  # the caller may be the bench runner, which goes on with other benchmarks
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _measure(records: list[RawRecord], batch: int, small: int, profile: Path | None) -> dict[str, Any]:
    events, users = len(records), len({orjson.loads(r.value or b"{}").get("user_id") for r in records})
    spec = fraud_spec("engine-bench", TOPIC)
    with tempfile.TemporaryDirectory(prefix="featurebus-engine-bench-") as directory:
        store = RocksStore(Path(directory))
        sink = CountingSink()
        engine = StreamEngine(spec, store, sink, lambda view: (f"features.{view}", PARTITIONS))
        profiler = cProfile.Profile() if profile else None
        bulk = records[: len(records) * 4 // 5]
        tail = records[len(bulk) :]

        def run_bulk() -> None:
            if profiler:
                profiler.enable()
            for start in range(0, len(bulk), batch):
                engine.process(bulk[start : start + batch])
            if profiler:
                profiler.disable()

        wall = time.perf_counter()
        bulk_cpu = _cpu_timed(run_bulk)
        bulk_wall = time.perf_counter() - wall
        small_cpu = sorted(
            _cpu_timed(lambda s=s: engine.process(tail[s : s + small])) * 1000  # type: ignore[misc]
            for s in range(0, len(tail), small)
        )
        expiry_cpu = _cpu_timed(lambda: engine.expire())
        store.close()
    if profiler and profile:
        profiler.dump_stats(str(profile))
    return {
        "events_per_cpu_s": round(len(bulk) / bulk_cpu, 1),
        "events_per_wall_s": round(len(bulk) / bulk_wall, 1),
        "small_batch_cpu_ms": round(small_cpu[len(small_cpu) // 2], 2),
        "small_batch_cpu_ms_p90": round(small_cpu[len(small_cpu) * 9 // 10], 2),
        "full_expiry_cpu_s": round(expiry_cpu, 2),
        "events": events,
        "users_seen": users,
        "batch": batch,
        "small": small,
        "tiles_published": sink.published,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats of the large batches here")
    args = parser.parse_args()
    print(json.dumps(measure(args.events, args.users, args.batch, args.small, args.profile)))


if __name__ == "__main__":
    main()
