"""Serving a lifetime window for one entity with a long history (10k events, continuous mode).

In continuous mode every event time is its own 1 ms tile, so merging the whole history on every
request costs one tile per event ever seen. The stream engine folds tiles into per-(entity, shard)
lifetime prefixes when it expires state (``streams/lifetime.py``: a final prefix behind the
watermark delay, and an eager one up to the watermark), after which a lookup reads each shard's
prefix plus the tiles of events since the last expiry. The events come from 3 source partitions,
so 3 shards. Two figures: the lookup before the first expiry (every
tile merged) and after it, through ``FeatureServer`` over a RocksDB online store fed with what the
engine published. No peer: nothing else here serves lifetime aggregations.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.harness import BenchContext, emit, median
from featurebus.platform.kv import MemoryStore, RocksStore
from featurebus.schemas.encoding import store_key
from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine

START_MS = 1_700_000_000_000
EVERY_MS = 10_000  # one event every 10 s: 10k events span ~28 h, beyond the 24 h watermark delay
SHARDS = 3  # events spread over 3 source partitions: each shard keeps its own lifetime prefixes


def _workspace() -> WorkspaceSpec:
    aggregations = tuple(
        AggregationSpec(
            f"amount_{fn}_lifetime_continuous",
            fn,
            "amount",
            "float64",
            0,
            "int64" if fn == "count" else "float64",
            window_kind="lifetime",
        )
        for fn in ("count", "sum", "mean")
    )
    view = StreamFeatureViewSpec(
        "user_lifetime",
        "transactions",
        ("user",),
        ("user_id",),
        "ts",
        TransformationSpec("pandas", "t", "def t(df):\n    return df\n"),
        aggregations,
        lifetime_start_ms=START_MS,
    )
    source = StreamSourceSpec(
        "transactions",
        (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
        KafkaConfigSpec(("transactions",), "ts"),
    )
    return WorkspaceSpec(
        "bench",
        (EntitySpec("user", (FieldSpec("user_id", "string"),)),),
        (source,),
        (view,),
        (FeatureServiceSpec("lifetime", (FeatureSelectionSpec(view.name, tuple(a.name for a in aggregations)),)),),
    )


def _lookup_ms(spec: WorkspaceSpec, sink: MemorySink, events: int, repeats: int, directory: Path) -> tuple[float, int]:
    latest: dict[bytes, bytes | None] = {}
    for _, _, key, value in sink.records:
        latest[key] = value
    store = RocksStore(directory)
    name = online_view_name(spec.name, "user_lifetime")
    store.write([(store_key(name, key), value) for key, value in latest.items()])
    server = FeatureServer(lambda: {spec.name: spec}, store, lambda: START_MS + events * EVERY_MS)
    samples = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            features = server.get_features(spec.name, "lifetime", {"user_id": "u1"})["result"]["features"]
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        store.close()
    if features[0] != str(events):
        raise AssertionError(f"lifetime count {features[0]} != {events}")
    return median(samples), sum(1 for value in latest.values() if value is not None)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    events = 2_000 if ctx.quick else 10_000
    repeats = 20 if ctx.quick else 200
    spec = _workspace()
    sink = MemorySink()
    engine = StreamEngine(spec, MemoryStore(), sink, lambda view: (f"features.{view}", SHARDS))
    for first in range(0, events, 1000):
        engine.process(
            [
                RawRecord(
                    "transactions",
                    i % SHARDS,
                    i // SHARDS,
                    orjson.dumps({"user_id": "u1", "amount": 1.0, "ts": START_MS + i * EVERY_MS}),
                )
                for i in range(first, min(events, first + 1000))
            ]
        )
    results = []
    with tempfile.TemporaryDirectory(dir=ctx.scratch("lifetime")) as tmp:
        before, tiles_before = _lookup_ms(spec, sink, events, repeats, Path(tmp) / "before")
        engine.expire()
        after, tiles_after = _lookup_ms(spec, sink, events, repeats, Path(tmp) / "after")
    detail = {"events": events, "tiles_before": tiles_before, "tiles_after": tiles_after}
    results.append(emit("lifetime", "lookup_all_tiles_ms", before, "ms", None, None, detail))
    results.append(emit("lifetime", "lookup_with_prefix_ms", after, "ms", None, None, detail))
    return results
