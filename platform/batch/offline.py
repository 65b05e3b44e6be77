"""A batch view's materialized rows in the offline store, replaced range by range.

Layout (next to the source records of ``offline/store.py``, readable without featurebus)::

    <root>/batch_views/<workspace>/<view>/date=YYYY-MM-DD/part-<lo_ms>-<hi_ms>.parquet

A file holds the view's output rows (join keys, timestamp, feature columns) with a timestamp in
``[lo_ms, hi_ms)``, a span inside one UTC date. Materializing ``[start, end)`` again writes files
of the same names (replaced atomically: a temporary file, then ``os.replace``) and first cuts the
range out of any file written for another, overlapping range (its rows outside the range are
rewritten under their own span), so the store holds every row once whatever ranges were run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["ViewPart", "view_dir", "list_view_parts", "replace_range", "read_rows"]

_DAY_MS = 86_400_000
_PART = re.compile(r"^part-(?P<lo>-?\d+)-(?P<hi>-?\d+)\.parquet$")


@dataclass(frozen=True)
class ViewPart:
    path: Path
    lo_ms: int
    hi_ms: int


def view_dir(root: Path, workspace: str, view: str) -> Path:
    return root / "batch_views" / workspace / view


def _date(ms: int) -> str:
    return str(np.datetime64(ms // _DAY_MS, "D"))


def list_view_parts(root: Path, workspace: str, view: str) -> list[ViewPart]:
    parts = []
    for path in view_dir(root, workspace, view).glob("date=*/part-*.parquet"):
        match = _PART.match(path.name)
        if match is not None:
            parts.append(ViewPart(path, int(match["lo"]), int(match["hi"])))
    return sorted(parts, key=lambda p: p.lo_ms)


def _write(directory: Path, lo_ms: int, hi_ms: int, table: pa.Table) -> Path:
    path = directory / f"date={_date(lo_ms)}" / f"part-{lo_ms}-{hi_ms}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _between(table: pa.Table, timestamp_field: str, lo_ms: int, hi_ms: int) -> pa.Table:
    ms = table.column(timestamp_field).cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(ms, lo_ms), pc.less(ms, hi_ms)))


def replace_range(root: Path, workspace: str, view: str, timestamp_field: str, start_ms: int, end_ms: int,
                  rows: pa.Table) -> list[Path]:
    """Make ``rows`` (all with a timestamp in ``[start_ms, end_ms)``) the view's rows of that range."""
    directory = view_dir(root, workspace, view)
    overlapping = [p for p in list_view_parts(root, workspace, view) if p.lo_ms < end_ms and start_ms < p.hi_ms]
    # Rows of other ranges' files that lie outside this range keep a file of their own span.
    for part in overlapping:
        if (part.lo_ms, part.hi_ms) == (max(part.lo_ms, start_ms), min(part.hi_ms, end_ms)):
            continue  # wholly inside the range: replaced below (same name) or removed
        old = pq.read_table(part.path)
        for lo, hi in ((part.lo_ms, min(part.hi_ms, start_ms)), (max(part.lo_ms, end_ms), part.hi_ms)):
            if lo < hi:
                kept = _between(old, timestamp_field, lo, hi)
                if kept.num_rows:
                    _write(directory, lo, hi, kept)
    written = []
    day = (start_ms // _DAY_MS) * _DAY_MS
    while day < end_ms:
        lo, hi = max(start_ms, day), min(end_ms, day + _DAY_MS)
        written.append(_write(directory, lo, hi, _between(rows, timestamp_field, lo, hi)))
        day += _DAY_MS
    keep = set(written)
    for part in overlapping:
        if part.path not in keep:
            part.path.unlink(missing_ok=True)
    return written


def read_rows(root: Path, workspace: str, view: str, timestamp_field: str, lo_ms: int, hi_ms: int) -> pa.Table | None:
    """The materialized rows with a timestamp in ``[lo_ms, hi_ms)``; None if the view was never
    materialized offline (callers then compute it from its sources)."""
    parts = list_view_parts(root, workspace, view)
    if not parts:
        return None
    wanted = [p for p in parts if p.lo_ms < hi_ms and lo_ms < p.hi_ms]
    tables = [pq.read_table(p.path) for p in wanted]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pq.read_table(parts[0].path).slice(0, 0)
    table = pa.concat_tables(tables, promote_options="permissive")
    return _between(table, timestamp_field, lo_ms, hi_ms)
