"""A stream view's history backfill killed midway (SIGKILL, after some chunks were published) and
run again counts nothing twice: the view's feature topic then holds exactly the tiles one clean
run computes, and the values they give are the brute-force sums over the files (real broker)."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus import Aggregate, Entity, Field, FileConfig, KafkaConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.batch.compute import BATCH_SHARD
from featurebus.platform.batch.sources import read_stream_history
from featurebus.platform.batch.stream_backfill import backfill_stream_view, history_chunks, history_tiles
from featurebus.platform.kafka.admin import read_compacted
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.encoding import decode_partials, encode_partials, split_tile_key, tile_key
from featurebus.schemas.specs import FileConfigSpec
from featurebus.streams.cutover import history_range
from featurebus.streams.runtime.engine import compile_views
from featurebus.streams.tiles import compute_values
from featurebus.types import Float64, String, Timestamp

pytestmark = pytest.mark.kafka

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = int(time.time() * 1000) // HOUR * HOUR
START = NOW - 6 * DAY

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = StreamSource(
    name="tx",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="replaced_in_the_test", timestamp_field="ts"),
    batch_config=FileConfig(uri="/replaced/in/the/test", timestamp_field="ts"),
)


@stream_feature_view(
    source=tx,
    entities=[user],
    mode="pandas",
    online=True,
    aggregation_interval=timedelta(hours=1),
    features=[Aggregate(function="sum", time_window=timedelta(days=3), input_column=Field("amount", Float64))],
    feature_start_time=datetime.fromtimestamp(START / 1000, UTC),
    batch_schedule=timedelta(days=1),
)
def spend(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


_KILLABLE = """
import sys, time
from pathlib import Path
from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.batch.stream_backfill import backfill_stream_view
bootstrap, workspace, marker = sys.argv[1:4]
spec = KafkaRegistry(bootstrap).get(workspace)

def progress(done):
    if 0 < done < 1:  # some chunks are published: say so, and wait for the kill
        Path(marker).write_text(str(done))
        time.sleep(600)

backfill_stream_view(bootstrap, spec, "spend", -2**62, 2**62, progress=progress)
"""


def test_a_killed_backfill_run_again_counts_each_event_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    events = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i}" for i in range(50)], n),
            "amount": rng.integers(-100, 100, n).astype(float),
            "ts": pd.to_datetime(START - DAY + rng.integers(0, 7 * DAY, n), unit="ms", utc=True),
        }
    )
    (tmp_path / "tx").mkdir()
    events.to_parquet(tmp_path / "tx" / "part.parquet")
    workspace = f"sbf{uuid.uuid4().hex[:10]}"
    compiled = compile_workspace(workspace, [user, tx, spend])
    source = dataclasses.replace(
        compiled.stream_sources[0],
        kafka=dataclasses.replace(compiled.stream_sources[0].kafka, topics=(f"{workspace}_tx",)),
        batch_config=FileConfigSpec(str(tmp_path / "tx"), "parquet", "ts"),
    )
    registry = KafkaRegistry(kafka_bootstrap)
    spec = apply_workspace(registry, dataclasses.replace(compiled, stream_sources=(source,)))
    view = spec.view("spend")
    cutover = view.stream_cutover_ms
    assert cutover is not None and cutover >= NOW  # an empty topic: the apply time
    assert len(history_chunks(view, -(2**62), 2**62)) >= 6

    marker = tmp_path / "published"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, kafka_bootstrap, workspace, str(marker)], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:] if child.stderr else ""
            assert time.monotonic() < deadline, "the backfill published no chunk within 2 minutes"
            time.sleep(0.1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    topic = feature_topic(workspace, "spend")
    partial = read_compacted(kafka_bootstrap, topic)

    # What one clean run computes, from the files alone.
    views = compile_views(spec)
    bounds = history_range(view)
    assert bounds is not None
    table = read_stream_history(source, None, None)
    expected = {
        tile_key(t.entity_key, t.tile_start_ms, BATCH_SHARD): encode_partials(t.partials)
        for lo, hi in history_chunks(view, *bounds)
        for t in history_tiles(views["spend"], table, lo, hi)
    }
    assert 0 < len(partial) < len(expected)  # killed midway

    result = backfill_stream_view(kafka_bootstrap, spec, "spend", START, cutover)
    assert not result.cancelled and result.tiles_written == len(expected)
    assert read_compacted(kafka_bootstrap, topic) == expected
    backfill_stream_view(kafka_bootstrap, spec, "spend", START, cutover)  # once more: nothing changes
    tiles = read_compacted(kafka_bootstrap, topic)
    assert tiles == expected

    by_entity: dict[bytes, list[tuple[int, list[object]]]] = {}
    for key, value in tiles.items():
        entity, start, _ = split_tile_key(key)
        by_entity.setdefault(entity, []).append((start, decode_partials(value)))
    ms = (events.ts.astype("int64") // 1_000_000).to_numpy()
    for t in (START + DAY + 5 * HOUR, START + 3 * DAY, NOW):
        end = t // HOUR * HOUR
        for name in ("u0", "u7", "u49"):
            inside = events.amount[(events.user_id == name) & (ms >= max(end - 3 * DAY, START)) & (ms < end)]
            got = compute_values(views["spend"], by_entity.get(views["spend"].entity_key([name]), []), t)[0]
            assert (got is None) if inside.empty else math.isclose(got, math.fsum(inside), rel_tol=1e-9)
