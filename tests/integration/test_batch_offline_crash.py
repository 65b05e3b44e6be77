"""SIGKILL a process materializing a batch view offline at many moments; readers never see a row
twice or a half-replaced range, and a re-run after the kills leaves every row exactly once.

The child (``tests/support/batch_writer.py``) runs ``materialize_view`` over overlapping ranges
with unaligned ends, so its writes cut other ranges' files apart (platform/batch/offline.py).
Between kills the source alternates between two versions of its amounts, so each replacement
changes the files and a torn one (old rows and new rows side by side, or none) would show.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from featurebus import Attribute, BatchSource, Entity, Field, FileConfig, batch_feature_view
from featurebus.compile import compile_workspace
from featurebus.platform.batch.offline import MANIFEST, list_view_parts, read_rows, view_dir
from featurebus.schemas.specs import FileConfigSpec
from featurebus.types import Float64, String

HOUR = 3_600_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z
SPAN = 12 * 24 * HOUR
ROWS = 6000
KILLS = 16
REPO = Path(__file__).resolve().parents[2]

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri="/replaced/in/the/test", timestamp_field="ts"))


@batch_feature_view(
    sources=[tx],
    entities=[user],
    mode="pandas",
    offline=True,
    ttl=timedelta(days=2),
    features=[Attribute("amount", Float64)],
)
def last_amount(tx):  # type: ignore[no-untyped-def]
    return tx[["user_id", "amount", "ts"]]


def _events(version: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    stamps = T0 + rng.choice(SPAN, size=ROWS, replace=False)  # distinct: (user, ts) is a row's key
    users = rng.choice([f"u{i}" for i in range(20)], ROWS)
    # Version 1 and 2 differ in every amount: which version a row comes from is visible.
    return pd.DataFrame({"user_id": users, "amount": np.arange(ROWS, dtype=float) + 0.25 * version, "ts_ms": stamps})


def _write_source(folder: Path, version: int) -> None:
    events = _events(version)
    events.assign(ts=pd.to_datetime(events.ts_ms, unit="ms", utc=True)).drop(columns="ts_ms").to_parquet(
        folder / "tx.parquet"
    )


def _ranges() -> list[tuple[int, int]]:
    """Overlapping ranges with unaligned ends, ending with the whole span."""
    rng = np.random.default_rng(5)
    ranges = []
    for _ in range(6):
        lo = int(rng.integers(0, SPAN - HOUR))
        ranges.append((T0 + lo, T0 + int(rng.integers(lo + HOUR, SPAN + 1))))
    return [*ranges, (T0 + 7 * HOUR + 13, T0 + SPAN)]


def _start(spec_path: Path, root: Path, ranges_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.batch_writer",
            str(spec_path),
            str(root),
            "last_amount",
            str(ranges_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready", "the writer did not start"


def _ms(stamps: pd.Series) -> pd.Series:
    return stamps.astype("datetime64[ms, UTC]").astype("int64")


def _await_write_in_flight(directory: Path, timeout_s: float) -> None:
    """Return once a replacement's temporary files exist (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if next(directory.glob("date=*/_part-*.tmp"), None) or next(directory.glob("_manifest-*.tmp"), None):
            return
        time.sleep(0.0005)


def _check_consistent(root: Path) -> tuple[int, int]:
    """Every live file holds exactly one source version's rows of its span; spans are disjoint;
    the rows read hold each key at most once. Returns (rows read, live files)."""
    versions = {v: _events(v).set_index(["user_id", "ts_ms"]).amount for v in (1, 2)}
    parts = list_view_parts(root, "w", "last_amount")
    for before, after in itertools.pairwise(parts):
        assert before.hi_ms <= after.lo_ms, f"overlapping live files {before} and {after}"
    for part in parts:
        table = pq.read_table(part.path).to_pandas()
        keys = set(zip(table.user_id, _ms(table.ts), strict=True))
        events = _events(1)
        expected = set(
            zip(
                *[events[(events.ts_ms >= part.lo_ms) & (events.ts_ms < part.hi_ms)][c] for c in ("user_id", "ts_ms")],
                strict=True,
            )
        )
        assert keys == expected and len(keys) == len(table), f"{part.path.name} is not its span's rows, once"
        amounts = [versions[v].loc[list(keys)].sort_index().tolist() for v in (1, 2)] if keys else [[], []]
        got = table.assign(ts_ms=_ms(table.ts)).set_index(["user_id", "ts_ms"]).amount
        assert got.sort_index().tolist() in amounts, f"{part.path.name} mixes source versions"
    rows = read_rows(root, "w", "last_amount", "ts", T0, T0 + SPAN)
    if rows is None:
        return 0, 0
    frame = rows.to_pandas()
    assert not frame.duplicated(subset=["user_id", "ts"]).any(), "a row is read twice"
    assert len(frame) == sum(len(pq.read_table(p.path)) for p in parts)
    return len(frame), len(parts)


def test_sigkill_at_many_moments_then_rerun_stores_each_row_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "tx"
    data.mkdir()
    _write_source(data, 1)
    spec = compile_workspace("w", [user, tx, last_amount])
    spec = dataclasses.replace(
        spec,
        batch_sources=(
            dataclasses.replace(spec.batch_sources[0], batch_config=FileConfigSpec(str(data), "parquet", "ts")),
        ),
    )
    spec_path, ranges_path = tmp_path / "spec.json", tmp_path / "ranges.json"
    spec_path.write_bytes(spec.to_json())
    ranges_path.write_bytes(orjson.dumps(_ranges()))
    root = tmp_path / "offline"

    # One uninterrupted run: how long the work takes, so the kills spread over all of it.
    process = _start(spec_path, root, ranges_path)
    _wait_ready(process)
    began = time.monotonic()
    assert process.wait(120) == 0
    work_s = time.monotonic() - began
    first = min(lo for lo, _ in _ranges())
    assert _check_consistent(root)[0] == int((_events(1).ts_ms >= first).sum())  # the ranges' union, once

    torn = 0
    rng = np.random.default_rng(3)
    for kill in range(KILLS):
        _write_source(data, 2 if kill % 2 == 0 else 1)
        process = _start(spec_path, root, ranges_path)
        _wait_ready(process)
        directory = view_dir(root, "w", "last_amount")
        if kill % 2:
            _await_write_in_flight(directory, timeout_s=work_s * 2)  # in the act of a replacement
        else:
            time.sleep(work_s * (kill + rng.random()) / KILLS)  # a moment in each slice of the work
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        listed = {p.path for p in list_view_parts(root, "w", "last_amount")}
        leftovers = [
            p for p in directory.rglob("*") if p.is_file() and p.suffix in (".tmp", ".parquet") and p not in listed
        ]
        torn += bool(leftovers)
        _check_consistent(root)
    assert torn >= KILLS // 4, (
        f"only {torn} of {KILLS} kills landed inside a replacement; the test exercised too little"
    )

    # A run to the end after the kills: the final source version, every row exactly once, no leftovers.
    _write_source(data, 2)
    process = _start(spec_path, root, ranges_path)
    _wait_ready(process)
    assert process.wait(120) == 0
    _check_consistent(root)
    rows = read_rows(root, "w", "last_amount", "ts", T0, T0 + SPAN)
    assert rows is not None
    frame = rows.to_pandas().assign(ts_ms=lambda f: _ms(f.ts))
    events = _events(2)
    covered = events[events.ts_ms >= first]
    merged = frame.merge(covered, on=["user_id", "ts_ms"], how="outer", suffixes=("", "_source"), indicator=True)
    assert (merged["_merge"] == "both").all() and (merged.amount == merged.amount_source).all()
    directory = view_dir(root, "w", "last_amount")
    assert (directory / MANIFEST).exists()
    assert not [p for p in directory.rglob("*.tmp")]
    # Readers without featurebus (DuckDB over the folder) see the same rows, once.
    with duckdb.connect() as con:
        found = con.execute(
            f"SELECT count(*), count(DISTINCT (user_id, ts)), sum(amount) FROM "
            f"read_parquet('{directory}/date=*/*.parquet')"
        ).fetchone()
    assert found == (len(covered), len(covered), covered.amount.sum())
