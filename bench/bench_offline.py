"""Training sets: featurebus computing the example's six windows from raw events, against Feast
joining a precomputed table of the same features, with the same spine.

Data: ``events`` card transactions over ``users`` users (the generator's skew: the busiest 1% of
users make about a fifth of them) spread over 30 days, written straight into the offline store's
Parquet layout with the materializer's own writer (``store.write_partition``, 1M-record flushes
over 4 partitions). Kafka is not involved: the materializer is tested against the broker
elsewhere, and producing 10M records would only make this benchmark slow. The spine has one row
per training example: users drawn like transactions (busy users are labelled more often), 5% of
them users with no events, at uniform times over the span plus a day.

featurebus: ``get_features_for_events`` for ``user_transaction_stats`` (count 10m and 1h, sum
and mean 1h and 1d, continuous windows) computed from the raw events, in a child process whose
own peak RSS is reported. Feast (pinned, ``bench/.venvs/feast``): ``get_historical_features`` on
a feature table precomputed (untimed, with DuckDB window functions) as each window's value just
after each event, ``ttl`` 1 day, with the default file offline store and with the DuckDB one.

Sizes: 10M events, 1M spine rows (``--quick``: 1M and 100k); ``--offline-events N`` (or
``FEATUREBUS_BENCH_OFFLINE_EVENTS``) overrides the event count, spine rows stay a tenth of it up
to 1M. Run the child alone by hand: ``python -m bench.bench_offline ROOT SPINE``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from bench.harness import REPO_ROOT, BenchContext, emit, load_1m, ratio
from bench.peer_venv import FEAST_VERSION, feast_python

log = logging.getLogger(__name__)

BENCH = "offline"
WORKSPACE = "bench"
TOPIC = "bench_transactions"  # only names the part files: nothing is produced
SERVICE = "user_stats"  # a service of the example's user view alone: its six aggregations
USER_VIEW = "user_transaction_stats"
START_MS = int(pd.Timestamp("2024-01-01T00:00:00Z").value // 1_000_000)
SPAN_MS = 30 * 86_400_000
PARTITIONS = 4
CHUNK = 1_000_000
FEAST_PEER = REPO_ROOT / "bench" / "peers" / "feast_offline.py"


@dataclasses.dataclass(frozen=True)
class Sizes:
    events: int
    users: int
    spine: int


def sizes(ctx: BenchContext) -> Sizes:
    override = ctx.offline_events or int(os.environ.get("FEATUREBUS_BENCH_OFFLINE_EVENTS", "0"))
    events = override or (1_000_000 if ctx.quick else 10_000_000)
    return Sizes(events=events, users=100_000, spine=min(1_000_000, max(events // 10, 1000)))


def _spec() -> Any:
    from bench.fraud_setup import fraud_spec
    from featurebus.schemas.specs import FeatureSelectionSpec, FeatureServiceSpec

    spec = fraud_spec(WORKSPACE, TOPIC)
    view = spec.view(USER_VIEW)
    service = FeatureServiceSpec(SERVICE, (FeatureSelectionSpec(USER_VIEW, tuple(a.name for a in view.aggregations)),))
    return dataclasses.replace(spec, feature_services=(*spec.feature_services, service))


def _users(rng: np.random.Generator, count: int, users: int) -> np.ndarray:
    # The generator's skew (platform/local/generator.py): user = int(users * u**3).
    return (users * rng.random(count) ** 3).astype(np.int64)


def write_events(root: Path, size: Sizes, seed: int = 7) -> None:
    """``size.events`` transactions into the offline store at ``root``, as the materializer would."""
    from featurebus.platform.offline.store import open_store, write_partition

    spec = _spec()
    source = spec.source("transactions")
    open_store(root)
    rng = np.random.default_rng(seed)
    step = SPAN_MS / size.events
    next_offset = [0] * PARTITIONS
    for first in range(0, size.events, CHUNK):
        n = min(CHUNK, size.events - first)
        index = np.arange(first, first + n)
        ts = START_MS + (index * step).astype(np.int64)
        frame = pd.DataFrame(
            {
                "transaction_id": "t" + pd.Series(index).astype(str),
                "user_id": "user_" + pd.Series(_users(rng, n, size.users)).astype(str),
                "merchant_id": "merchant_" + pd.Series(rng.integers(0, 1000, n)).astype(str),
                "amount": np.round(np.exp(rng.normal(3.0, 1.0, n)), 2),
                "is_online": rng.random(n) < 0.35,
                "timestamp": pd.to_datetime(ts, unit="ms", utc=True),
            }
        )
        partition = (first // CHUNK) % PARTITIONS
        offsets = np.arange(next_offset[partition], next_offset[partition] + n)
        next_offset[partition] += n
        write_partition(root, WORKSPACE, source, TOPIC, partition, frame, offsets)


def write_spine(path: Path, size: Sizes, seed: int = 11) -> None:
    rng = np.random.default_rng(seed)
    users = "user_" + pd.Series(_users(rng, size.spine, size.users)).astype(str)
    unknown = rng.random(size.spine) < 0.05
    users[unknown] = "nobody_" + pd.Series(np.flatnonzero(unknown)).astype(str).to_numpy()
    times = START_MS + rng.integers(0, SPAN_MS + 86_400_000, size.spine)
    pd.DataFrame(
        {
            "user_id": users,
            "event_timestamp": pd.to_datetime(times, unit="ms", utc=True),
        }
    ).to_parquet(path, index=False)


def write_feast_table(root: Path, path: Path, work: Path) -> None:
    """Every window's value just after each event: what a Feast user would have materialized."""
    from featurebus.platform.offline.store import source_glob

    def frame(name: str, window: str) -> str:
        return (
            f"{name}(amount) OVER (PARTITION BY user_id ORDER BY timestamp "
            f"RANGE BETWEEN INTERVAL {window} PRECEDING AND CURRENT ROW)"
        )

    with duckdb.connect(config={"memory_limit": "4GB", "temp_directory": str(work / "duckdb_tmp")}) as con:
        con.execute("PRAGMA disable_progress_bar")
        con.sql(f"""
            COPY (SELECT user_id, timestamp AS event_timestamp,
                         {frame("count", "10 MINUTE")} AS amount_count_10m_continuous,
                         {frame("count", "1 HOUR")} AS amount_count_1h_continuous,
                         {frame("sum", "1 HOUR")} AS amount_sum_1h_continuous,
                         {frame("avg", "1 HOUR")} AS amount_mean_1h_continuous,
                         {frame("sum", "1 DAY")} AS amount_sum_1d_continuous,
                         {frame("avg", "1 DAY")} AS amount_mean_1d_continuous
                  FROM read_parquet('{source_glob(root, WORKSPACE, "transactions")}'))
            TO '{path}' (FORMAT parquet)
        """)


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _peer_memory_cap() -> int:
    """$FEATUREBUS_BENCH_PEER_MEM_GIB, else what the machine has available now less 3 GiB (at
    least 4 GiB): a peer may use what is free, but must not push others into the OOM killer."""
    configured = os.environ.get("FEATUREBUS_BENCH_PEER_MEM_GIB")
    if configured:
        return int(float(configured) * 2**30)
    available = 8 * 2**30
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    return max(4 * 2**30, available - 3 * 2**30)


def _child(
    command: list[str],
    timeout_s: float,
    memory_cap: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one measured process; its last stdout line is its JSON result. On the time or memory
    cap the process is killed (by its PID) and the result says which cap and when."""
    started = time.monotonic()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
    ) as process:
        # Drain the pipes in the background so a chatty child never blocks on a full pipe.
        output: dict[str, str] = {}
        reader = threading.Thread(target=lambda: output.update(zip(("out", "err"), process.communicate(), strict=True)))
        reader.start()
        killed = None
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                killed = "time"
            elif memory_cap is not None and _rss_bytes(process.pid) > memory_cap:
                killed = "memory"
            if killed:
                log.warning("%s: over its %s cap after %.0f s; killed", command[:3], killed, elapsed)
                process.kill()
                break
            time.sleep(0.2)
        reader.join()
    if killed:
        return {"killed": killed, "after_s": time.monotonic() - started, "killed_at": time.time()}
    if process.returncode != 0:
        lines = output.get("err", "").strip().splitlines() or [f"exit status {process.returncode}"]
        log.warning("%s exited %d:\n%s", command[:3], process.returncode, "\n".join(lines[-20:]))
        return {"failed": lines[-1][-300:], "after_s": time.monotonic() - started, "killed_at": time.time()}
    result: dict[str, Any] = json.loads(output["out"].strip().splitlines()[-1])
    return result


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    size = sizes(ctx)
    work = ctx.scratch("offline")
    root, spine, table = work / "store", work / "spine.parquet", work / "feast_features.parquet"
    started = time.monotonic()
    write_events(root, size)
    write_spine(spine, size)
    log.info("offline: %d events, %d spine rows written in %.0fs", size.events, size.spine, time.monotonic() - started)
    # Its DuckDB spills under the featurebus home: the scratch's, not the caller's ./.featurebus.
    ours = _child(
        [sys.executable, "-m", "bench.bench_offline", str(root), str(spine)],
        timeout_s=3600,
        env={**os.environ, "FEATUREBUS_HOME": str(work / "home")},
    )
    if "seconds" not in ours:
        raise RuntimeError(f"featurebus's training set did not finish: {ours}")
    log.info("offline: featurebus %s", ours)
    detail = {"events": size.events, "users": size.users, "spine_rows": size.spine, "load_1m_after": load_1m()}
    results = [
        emit(BENCH, "training_set_s", ours["seconds"], "s", None, None, detail),
        emit(BENCH, "peak_rss_mib", ours["peak_rss_bytes"] / 2**20, "MiB", None, None),
        emit(BENCH, "rows_returned", ours["rows"], "rows", None, None, {"spine_rows": size.spine}),
    ]
    if size.events > 20_000_000:
        log.info("offline: %d events: Feast not run (the peer comparison is at 10M)", size.events)
        return results
    python = feast_python()
    started = time.monotonic()
    write_feast_table(root, table, work)
    log.info("offline: Feast's feature table precomputed in %.0fs", time.monotonic() - started)
    cap_s = float(os.environ.get("FEATUREBUS_BENCH_PEER_CAP_S", 600 if ctx.quick else 1800))
    cap_bytes = _peer_memory_cap()
    for kind in ("file", "duckdb"):
        peer = f"feast {FEAST_VERSION} {kind} offline store"
        command = [str(python), str(FEAST_PEER), str(work / f"feast_{kind}"), str(table), str(spine), kind]
        # In the scratch: Feast's DuckDB spills into ./.tmp of its working directory.
        theirs = _child(command, cap_s, cap_bytes, cwd=work)
        log.info("offline: %s %s", peer, theirs)
        marker = work / f"feast_{kind}" / "timing_started"
        timed_s = theirs.get("killed_at", 0.0) - float(marker.read_text()) if marker.exists() else 0.0
        peer_s: float | None
        if "killed" in theirs:
            # Killed at a cap: it would have taken at least as long as it had been timed (the peer
            # notes when its timed call started), so the ratio is a lower bound.
            peer_s = timed_s
            peer_detail = {
                "peer_killed_at_cap": theirs["killed"],
                "peer_s_at_least": round(peer_s, 1),
                "peer_cap_s": cap_s,
                "peer_cap_mib": cap_bytes // 2**20,
            }
        elif "failed" in theirs:
            # It never returns a training set (e.g. its join asks for more memory than exists): no ratio.
            peer_s = None
            peer_detail = {"peer_failed": theirs["failed"], "peer_failed_after_s": round(timed_s, 1)}
        else:
            peer_s = theirs["seconds"]
            peer_detail = {
                "peer_s": round(peer_s, 3),
                "peer_rows": theirs["rows"],
                "peer_rows_with_features": theirs["non_null"],
                "peer_peak_rss_mib": round(theirs["peak_rss_bytes"] / 2**20),
            }
        results.append(
            emit(
                BENCH,
                f"training_set_s_vs_feast_{kind}",
                ours["seconds"],
                "s",
                peer,
                ratio(ours["seconds"], peer_s, higher_is_better=False),
                {
                    **peer_detail,
                    "rows": ours["rows"],
                    "rows_with_features": ours["non_null"],
                    "spine_rows": size.spine,
                    "peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
                },
            )
        )
    return results


def _measure(root: Path, spine_path: Path) -> dict[str, Any]:
    """The featurebus side, in its own process: time and peak RSS of one training set."""
    from featurebus.platform.training.training_sets import get_features_for_events

    spec = _spec()
    spine = pd.read_parquet(spine_path)
    started = time.perf_counter()
    frame = get_features_for_events(spec, SERVICE, spine, root, timestamp_key="event_timestamp")
    seconds = time.perf_counter() - started
    last = f"{USER_VIEW}__amount_mean_1d_continuous"
    return {
        "seconds": seconds,
        "rows": len(frame),
        "non_null": int(frame[last].notna().sum()),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (``ru_maxrss`` would carry
    the forking parent's size over into a child that never reached it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    print(json.dumps(_measure(Path(sys.argv[1]), Path(sys.argv[2]))))
