"""Backfilling a stream view's batch history next to a batch view's backfill of the same rows.

Data: N rows (10M; 500k with ``--quick``) of (user_id over 100k users, amount, ts over 7 days) in
7 Parquet files, one per day. Both sides compute the same features (sum and count over 1 h and
1 day, 1-hour tiles) through the same pandas transformation and publish their tiles to a
compacted feature topic on the run's broker:

* **stream view** (featurebus, ``platform/batch/stream_backfill.py``): a ``@stream_feature_view``
  whose ``StreamSource`` has the files as ``batch_config``, ``feature_start_time`` at the first
  row and its cut-over after the last, so every row is history; ``backfill_stream_view`` over it.
* **peer: featurebus batch view backfill** (``platform/batch/materialize.py``): a
  ``@batch_feature_view`` over a ``BatchSource`` of the same files, ``materialize_view`` online
  only (the stream view's history job writes online only too).

Each side runs in its own process (``python -m bench.bench_backfill SIDE ...``), so its peak RSS
(VmHWM) is its own. Reported: ``stream_rows_per_s`` (ratio: stream / batch speed, the target is
above 1/1.5), ``stream_peak_rss_mib`` (ratio: batch RSS / stream RSS) and the batch view's own
figures in ``detail``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import REPO_ROOT, BenchContext, emit, ratio

BENCH = "backfill"
PEER = "featurebus batch view backfill"
DAY_MS = 86_400_000
START_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z
DAYS = 7


def _write_rows(directory: Path, rows: int) -> None:
    rng = np.random.default_rng(11)
    per_day = rows // DAYS
    for day in range(DAYS):
        n = per_day if day < DAYS - 1 else rows - per_day * (DAYS - 1)
        ts = START_MS + day * DAY_MS + np.sort(rng.integers(0, DAY_MS, n))
        pd.DataFrame(
            {
                "user_id": pd.Series(rng.integers(0, 100_000, n)).map("u{}".format),
                "amount": rng.integers(1, 10_000, n) / 100.0,
                "ts": pd.to_datetime(ts, unit="ms", utc=True),
            }
        ).to_parquet(directory / f"day-{day}.parquet")


def _definitions(files: Path) -> list[Any]:
    from featurebus import (
        Aggregate,
        BatchSource,
        Entity,
        Field,
        FileConfig,
        KafkaConfig,
        StreamSource,
        batch_feature_view,
        stream_feature_view,
    )
    from featurebus.types import Float64, String, Timestamp

    user = Entity(name="user", join_keys=[Field("user_id", String)])
    schema = [Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)]
    files_config = FileConfig(uri=str(files), timestamp_field="ts")
    live = StreamSource(
        name="tx_live",
        schema=schema,
        stream_config=KafkaConfig(topics="bench_backfill_tx", timestamp_field="ts"),
        batch_config=files_config,
    )
    history = BatchSource(name="tx_history", batch_config=files_config)
    features = [
        Aggregate(function=fn, time_window=window, input_column=Field("amount", Float64))
        for fn in ("sum", "count")
        for window in (timedelta(hours=1), timedelta(days=1))
    ]

    def spend(tx):  # type: ignore[no-untyped-def]
        return tx[["user_id", "amount", "ts"]]

    common: dict[str, Any] = dict(
        entities=[user],
        mode="pandas",
        online=True,
        aggregation_interval=timedelta(hours=1),
        features=features,
        feature_start_time=datetime.fromtimestamp(START_MS / 1000, UTC),
        batch_schedule=timedelta(days=1),
    )
    stream_view = stream_feature_view(source=live, name="spend_stream", **common)(spend)
    batch_view = batch_feature_view(sources=[history], name="spend_batch", **common)(spend)
    return [user, live, history, stream_view, batch_view]


def _measure(side: str, bootstrap: str, files: Path, workspace: str) -> dict[str, Any]:
    """One side, in this process: seconds, tiles and peak RSS of one backfill of every row."""
    from featurebus.compile import compile_workspace

    spec = compile_workspace(workspace, _definitions(files))
    end_ms = START_MS + DAYS * DAY_MS
    started = time.perf_counter()
    if side == "stream":
        from featurebus.platform.batch.stream_backfill import backfill_stream_view

        view = dataclasses.replace(spec.view("spend_stream"), stream_cutover_ms=end_ms)  # every row is history
        spec = dataclasses.replace(
            spec, stream_feature_views=tuple(view if v.name == view.name else v for v in spec.stream_feature_views)
        )
        result = backfill_stream_view(bootstrap, spec, "spend_stream", START_MS, end_ms)
        tiles, rows = result.tiles_written, result.rows_read
    else:
        from featurebus.platform.batch.materialize import materialize_view

        done = materialize_view(
            bootstrap,
            files.parent / "offline",
            spec,
            "spend_batch",
            datetime.fromtimestamp(START_MS / 1000, UTC),
            datetime.fromtimestamp(end_ms / 1000, UTC),
            online=True,
            offline=False,
        )
        tiles, rows = done.tiles_written, -1
    return {"seconds": time.perf_counter() - started, "tiles": tiles, "rows": rows, "peak_rss_bytes": _peak_rss()}


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _run_side(side: str, bootstrap: str, files: Path, workspace: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.bench_backfill", side, bootstrap, str(files), workspace],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the {side} backfill failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    rows = 500_000 if ctx.quick else 10_000_000
    files = ctx.scratch("backfill") / "rows"
    files.mkdir(parents=True, exist_ok=True)
    _write_rows(files, rows)
    bootstrap = ctx.kafka_bootstrap()
    workspace = f"bench_backfill_{ctx.run_id}"
    batch = _run_side("batch", bootstrap, files, workspace)
    stream = _run_side("stream", bootstrap, files, workspace)
    if stream["tiles"] != batch["tiles"]:
        raise AssertionError(
            f"the two backfills wrote different tiles: stream {stream['tiles']}, batch {batch['tiles']}"
        )
    stream_speed, batch_speed = rows / stream["seconds"], rows / batch["seconds"]
    detail = {
        "rows": rows,
        "tiles": stream["tiles"],
        "stream_seconds": round(stream["seconds"], 2),
        "batch_seconds": round(batch["seconds"], 2),
        "peer_rows_per_s": round(batch_speed),
        "peer_peak_rss_mib": round(batch["peak_rss_bytes"] / 2**20),
    }
    return [
        emit(BENCH, "stream_rows_per_s", stream_speed, "rows/s", PEER, ratio(stream_speed, batch_speed, True), detail),
        emit(
            BENCH,
            "stream_peak_rss_mib",
            stream["peak_rss_bytes"] / 2**20,
            "MiB",
            PEER,
            ratio(stream["peak_rss_bytes"], batch["peak_rss_bytes"], False),
            detail,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4])))
