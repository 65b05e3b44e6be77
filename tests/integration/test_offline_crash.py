"""SIGKILL the offline materializer process while it writes files; after a restart the offline
store holds every record exactly once (real broker, the real ``featurebus offline`` process).

The records' times span 60 days, so each flush of a partition writes some 60 files (one per date
folder): the kill lands while a flush's ``*.tmp`` files, manifest or renames are in flight, which
is exactly the window ``store.recover_partition`` and the resume-from-files logic must cover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pytest

from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.offline.store import source_dir, source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka

DAY_MS = 86_400_000
T0 = 1_700_000_000_000
RECORDS = 120_000
KILLS = 3


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    with reliable_producer(bootstrap, **{"linger.ms": 20}) as producer:
        for i in range(first, first + count):
            record = {"user_id": f"u{i % 97}", "amount": float(i), "ts": T0 + (i % 60) * DAY_MS + i}
            producer.produce(topic, orjson.dumps(record), key=str(record["user_id"]).encode())
            if i % 10_000 == 0:
                producer.poll(0)


def _start(bootstrap: str, home: Path, workspace: str) -> subprocess.Popen[bytes]:
    with open(home / f"offline-{time.monotonic_ns()}.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurebus",
                "offline",
                "--workspace",
                workspace,
                "--bootstrap",
                bootstrap,
                "--home",
                str(home),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _kill_mid_write(process: subprocess.Popen[bytes], directory: Path, timeout_s: float) -> bool:
    """SIGKILL ``process`` as soon as a flush is in flight; True if one was caught in the act."""
    deadline = time.monotonic() + timeout_s
    caught = False
    while time.monotonic() < deadline and process.poll() is None:
        if directory.exists() and (
            next(directory.glob("date=*/*.parquet.tmp"), None) is not None
            or next(directory.glob("_pending-*.json"), None) is not None
        ):
            caught = True
            break
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    return caught


def _counts(root: Path, workspace: str) -> tuple[int, int, int]:
    """(rows, distinct Kafka addresses, most copies of one address) over every Parquet file."""
    with duckdb.connect() as con:
        row = con.execute(
            "SELECT sum(n), count(*), max(n) FROM (SELECT count(*) AS n FROM "
            f"read_parquet('{source_glob(root, workspace, 'transactions')}') GROUP BY _topic, _partition, _offset)"
        ).fetchone()
    assert row is not None
    return int(row[0] or 0), int(row[1]), int(row[2] or 0)


def test_sigkill_mid_write_then_restart_stores_each_record_exactly_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    workspace = f"crash{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), spending_workspace(topic=topic, name=workspace))
    home = tmp_path / "home"
    home.mkdir()
    root = home / "offline"
    directory = source_dir(root, workspace, "transactions")
    _produce(kafka_bootstrap, topic, 0, RECORDS)

    caught = 0
    for _ in range(KILLS):
        caught += _kill_mid_write(_start(kafka_bootstrap, home, workspace), directory, timeout_s=60)
    assert caught >= 1, "no kill landed during a flush; the test did not exercise a crash mid-write"
    # What the crashes left may hold half-written flushes; duplicates must not be visible.
    rows, distinct, most = _counts(root, workspace) if list(directory.glob("date=*/*.parquet")) else (0, 0, 0)
    assert rows == distinct and most <= 1

    # More records while it is down, then a restart that runs to the end.
    _produce(kafka_bootstrap, topic, RECORDS, 1000)
    with OfflineMaterializer(kafka_bootstrap, root, workspace) as materializer:
        materializer.run_until_caught_up(timeout_s=120)
    assert _counts(root, workspace) == (RECORDS + 1000, RECORDS + 1000, 1)
    assert not list(directory.glob("date=*/*.tmp")) and not list(directory.glob("_pending-*"))
    with duckdb.connect() as con:
        amounts = con.execute(
            f"SELECT sum(amount), min(amount), max(amount) FROM read_parquet('{source_glob(root, workspace, 'transactions')}')"
        ).fetchone()
    n = RECORDS + 1000
    assert amounts == (float(n * (n - 1) // 2), 0.0, float(n - 1))
