"""SIGKILL a real compaction process at many moments: every record stays visible exactly once to
readers of the offline store, and a re-run finishes the job (real files, a real child process)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from featurebus.platform.offline.store import all_parts, list_parts, open_store, source_dir, write_partition
from featurebus.schemas.specs import FieldSpec, KafkaConfigSpec, StreamSourceSpec

SOURCE = StreamSourceSpec(
    "clicks",
    (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
    KafkaConfigSpec(("clicks",), "ts"),
)
DAY_MS = 86_400_000
T0 = 1_700_000_000_000
FLUSHES = 150
PER_FLUSH = 40
DATES = 6

_CHILD = """
import sys
from pathlib import Path
from featurebus.platform.offline.compaction import compact_source
compact_source(Path(sys.argv[1]), grace_s=0, target_bytes=int(sys.argv[2]))
"""


def _fill(root: Path) -> int:
    open_store(root)
    offset = 0
    for _ in range(FLUSHES):
        offsets = list(range(offset, offset + PER_FLUSH))
        frame = pd.DataFrame(
            {
                "user_id": [f"u{o % 13}" for o in offsets],
                "amount": [float(o) for o in offsets],
                "ts": pd.to_datetime([T0 + (o % DATES) * DAY_MS + o for o in offsets], unit="ms", utc=True),
            }
        )
        for partition in (0, 1):
            write_partition(root, "ws", SOURCE, "clicks", partition, frame, offsets)
        offset += PER_FLUSH
    return offset


def _visible(root: Path) -> list[tuple[int, int]]:
    """(partition, offset) of every row a reader of the store sees, sorted."""
    rows: list[tuple[int, int]] = []
    for part in list_parts(root, "ws", "clicks"):
        table = pq.read_table(part.path, columns=["_partition", "_offset"])
        rows.extend(zip(table.column("_partition").to_pylist(), table.column("_offset").to_pylist(), strict=True))
    return sorted(rows)


def _start(folder: Path, target_bytes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder), str(target_bytes)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_during_compaction_never_duplicates_or_loses_a_record(tmp_path: Path) -> None:
    total = _fill(tmp_path)
    expected = sorted((p, o) for p in (0, 1) for o in range(total))
    folder = source_dir(tmp_path, "ws", "clicks")
    files_before = len(all_parts(tmp_path, "ws", "clicks"))
    rng = random.Random(7)
    caught_mid_write = 0
    for round_ in range(8):
        # Small merged files: many merges, so the kill lands between and inside them.
        process = _start(folder, target_bytes=8_000 * (round_ + 1))
        deadline = time.monotonic() + 60
        if round_ % 2 == 0:  # kill as soon as a merged file is being written
            while time.monotonic() < deadline and process.poll() is None:
                if next(folder.glob("date=*/*.compacting"), None) is not None:
                    caught_mid_write += 1
                    break
                time.sleep(0.001)
        else:  # or at a random moment
            time.sleep(rng.uniform(0.2, 1.5))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert _visible(tmp_path) == expected, f"round {round_}: a reader sees a record twice or not at all"
    assert caught_mid_write > 0, "no kill landed while a merged file was being written"
    finish = _start(folder, target_bytes=10_000_000)
    _, stderr = finish.communicate(timeout=120)
    assert finish.returncode == 0, stderr.decode()
    assert _visible(tmp_path) == expected
    after = all_parts(tmp_path, "ws", "clicks")
    assert len(after) == 2 * DATES < files_before  # one file per (date, partition), nothing left over
    assert not list(folder.glob("date=*/*.compacting"))
