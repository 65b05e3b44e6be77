"""A batch view's materialized rows in the offline store, replaced range by range, crash-safely.

Layout (next to the source records of ``offline/store.py``)::

    <root>/batch_views/<workspace>/<view>/_manifest.json
    <root>/batch_views/<workspace>/<view>/date=YYYY-MM-DD/part-<lo_ms>-<hi_ms>-<digest>.parquet

A file holds the view's output rows (join keys, timestamp, feature columns) with a timestamp in
``[lo_ms, hi_ms)``, a span inside one UTC date; ``digest`` is a hash of the file's bytes, so a
re-run that computes the same rows writes the same file under the same name (re-running changes
nothing) and a re-run over changed sources writes a new name, never overwriting a live file.

The manifest lists the live files; it is the one thing readers trust. Replacing a range:
1. under an ``flock`` on ``_write.lock`` (one writer per view; the kernel releases it when its
   process dies), the rows outside the range of overlapping live files, and the range's new rows,
   are written to ``_*.tmp`` files, fsynced and renamed to their final (unlisted) names;
2. a new manifest is written beside the old one and swapped in with one ``os.replace``: readers
   switch from the old set of files to the new one atomically;
3. files the manifest does not list are deleted: superseded ones in the folders this write
   touched, and, when a ``_writing`` marker says the previous writer was killed, its leftovers
   in every folder (the marker exists from a write's first file to the end of its clean-up).
A SIGKILL at any moment leaves the old or the new manifest whole, so readers see every row
exactly once, before and after; the next write cleans up what the killed one left. A reader
that listed files a writer then deleted retries with the newer manifest (``read_rows``).

Readers without featurebus (pandas, DuckDB over the folder) see exactly the live files once no
write is in flight and none was killed since the last completed one; the ``_``-prefixed files
are ignored by pyarrow datasets, DuckDB globs of ``*.parquet`` and Spark alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurebus.platform.files.atomic import atomic_write
from featurebus.schemas.errors import InvalidRequestError

__all__ = ["MANIFEST", "ViewPart", "view_dir", "list_view_parts", "replace_range", "read_rows"]

MANIFEST = "_manifest.json"
_MANIFEST_FORMAT = 1
_DAY_MS = 86_400_000
# ``digest`` is absent from files written before the manifest existed (adopted when none exists).
_PART = re.compile(r"^part-(?P<lo>-?\d+)-(?P<hi>-?\d+)(?:-(?P<digest>[0-9a-f]+))?\.parquet$")
_READ_ATTEMPTS = 5
_WRITING = "_writing"


@dataclass(frozen=True)
class ViewPart:
    path: Path
    lo_ms: int
    hi_ms: int
    rows: int = -1  # -1: unknown (a file adopted from before manifests)


def view_dir(root: Path, workspace: str, view: str) -> Path:
    return root / "batch_views" / workspace / view


def _date(ms: int) -> str:
    return str(np.datetime64(ms // _DAY_MS, "D"))


def _legacy_parts(directory: Path) -> list[ViewPart]:
    """Files written before manifests existed (no digest in their name). Named files with a digest
    but no manifest are what a first write killed before its manifest left: never live."""
    parts = []
    for path in directory.glob("date=*/part-*.parquet"):
        match = _PART.match(path.name)
        if match is not None and match["digest"] is None:
            parts.append(ViewPart(path, int(match["lo"]), int(match["hi"])))
    return parts


def _load_manifest(directory: Path) -> tuple[int, list[ViewPart]] | None:
    try:
        document = orjson.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None
    if document.get("format") != _MANIFEST_FORMAT:
        raise InvalidRequestError(
            f"{directory / MANIFEST} has format {document.get('format')!r}, this featurebus reads format "
            f"{_MANIFEST_FORMAT}; upgrade featurebus, or delete {directory} and materialize the view again"
        )
    parts = [
        ViewPart(directory / p["file"], int(p["lo_ms"]), int(p["hi_ms"]), int(p["rows"])) for p in document["parts"]
    ]
    return int(document["version"]), parts


def _live(directory: Path) -> tuple[int, list[ViewPart]]:
    loaded = _load_manifest(directory)
    if loaded is None:  # written before manifests: every file is live (that version had no other)
        return 0, sorted(_legacy_parts(directory), key=lambda p: p.lo_ms)
    return loaded[0], sorted(loaded[1], key=lambda p: p.lo_ms)


def list_view_parts(root: Path, workspace: str, view: str) -> list[ViewPart]:
    """The view's live files, in time order (empty: never materialized offline)."""
    return _live(view_dir(root, workspace, view))[1]


def _write(directory: Path, lo_ms: int, hi_ms: int, table: pa.Table) -> ViewPart:
    folder = directory / f"date={_date(lo_ms)}"
    folder.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    path = folder / f"part-{lo_ms}-{hi_ms}-{hashlib.blake2b(data, digest_size=8).hexdigest()}.parquet"
    tmp = folder / f"_part-{lo_ms}-{hi_ms}-{os.getpid()}.tmp"
    atomic_write(
        path, data, temporary=tmp
    )  # same name, same bytes: replacing a live file changes nothing a reader sees
    return ViewPart(path, lo_ms, hi_ms, table.num_rows)


def _swap_manifest(directory: Path, version: int, parts: list[ViewPart]) -> None:
    document = {
        "format": _MANIFEST_FORMAT,
        "version": version,
        "parts": [
            {"file": f"{p.path.parent.name}/{p.path.name}", "lo_ms": p.lo_ms, "hi_ms": p.hi_ms, "rows": p.rows}
            for p in sorted(parts, key=lambda p: p.lo_ms)
        ],
    }
    tmp = directory / f"_manifest-{os.getpid()}.tmp"
    atomic_write(
        directory / MANIFEST, orjson.dumps(document), temporary=tmp
    )  # the switch from the old set of files to the new


def _remove_unlisted(directory: Path, parts: list[ViewPart], folders: set[Path] | None) -> None:
    """Delete what the manifest does not list in ``folders`` (None: every date folder): superseded
    files, and what a killed writer left behind. Only called under the write lock, so no other
    writer has files in flight."""
    listed = {p.path for p in parts}
    scanned = list(directory.glob("date=*")) if folders is None else [f for f in folders if f.exists()]
    for path in [*(p for f in scanned for p in f.iterdir()), *directory.glob("_*.tmp")]:
        if path not in listed and (path.suffix == ".tmp" or _PART.match(path.name)):
            path.unlink(missing_ok=True)
    for folder in scanned:
        if folder.is_dir() and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:
                continue  # a file arrived meanwhile


@contextmanager
def _write_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "_write.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits for another writer of this view
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _between(table: pa.Table, timestamp_field: str, lo_ms: int, hi_ms: int) -> pa.Table:
    ms = table.column(timestamp_field).cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(ms, lo_ms), pc.less(ms, hi_ms)))


def replace_range(
    root: Path, workspace: str, view: str, timestamp_field: str, start_ms: int, end_ms: int, rows: pa.Table
) -> list[Path]:
    """Make ``rows`` (all with a timestamp in ``[start_ms, end_ms)``) the view's rows of that range,
    atomically for readers; returns the files written for the range (one per UTC date)."""
    directory = view_dir(root, workspace, view)
    with _write_lock(directory):
        # Present while a write is between its first file and its clean-up: found at the next
        # write, it says a writer was killed, whose leftovers may be in any date folder.
        marker = directory / _WRITING
        killed = marker.exists()
        marker.touch()
        version, live = _live(directory)
        overlapping = [p for p in live if p.lo_ms < end_ms and start_ms < p.hi_ms]
        parts = [p for p in live if p not in overlapping]
        # Rows of other ranges' files that lie outside this range keep a file of their own span.
        for part in overlapping:
            pieces = [
                (lo, hi)
                for lo, hi in ((part.lo_ms, min(part.hi_ms, start_ms)), (max(part.lo_ms, end_ms), part.hi_ms))
                if lo < hi
            ]
            if not pieces:
                continue  # wholly inside the range
            old = pq.read_table(part.path)
            for lo, hi in pieces:
                kept = _between(old, timestamp_field, lo, hi)
                if kept.num_rows:
                    parts.append(_write(directory, lo, hi, kept))
        written = []
        day = (start_ms // _DAY_MS) * _DAY_MS
        while day < end_ms:
            lo, hi = max(start_ms, day), min(end_ms, day + _DAY_MS)
            written.append(_write(directory, lo, hi, _between(rows, timestamp_field, lo, hi)))
            day += _DAY_MS
        parts.extend(written)
        _swap_manifest(directory, version + 1, parts)
        # Cut-outs are written in the folder of the file they come from: these are all it touched.
        touched = {p.path.parent for p in (*overlapping, *written)}
        _remove_unlisted(directory, parts, None if killed else touched)
        marker.unlink()
    return [p.path for p in written]


def _read_once(parts: list[ViewPart], timestamp_field: str, lo_ms: int, hi_ms: int) -> pa.Table:
    wanted = [p for p in parts if p.lo_ms < hi_ms and lo_ms < p.hi_ms and p.rows != 0]
    tables = [t for t in (pq.read_table(p.path) for p in wanted) if t.num_rows]
    if not tables:
        return pq.read_schema(parts[0].path).empty_table()
    table = pa.concat_tables(tables, promote_options="permissive")
    return _between(table, timestamp_field, lo_ms, hi_ms)


def read_rows(root: Path, workspace: str, view: str, timestamp_field: str, lo_ms: int, hi_ms: int) -> pa.Table | None:
    """The materialized rows with a timestamp in ``[lo_ms, hi_ms)``, as of one manifest; None if the
    view was never materialized offline (callers then compute it from its sources)."""
    directory = view_dir(root, workspace, view)
    for _ in range(_READ_ATTEMPTS):
        version, parts = _live(directory)
        if not parts:
            return None
        try:
            return _read_once(parts, timestamp_field, lo_ms, hi_ms)
        except FileNotFoundError:
            if _live(directory)[0] == version:
                raise  # not a concurrent replacement: a file of the current manifest is missing
    raise InvalidRequestError(
        f"batch view {view!r} of workspace {workspace!r}: its offline files kept changing "
        f"while being read ({_READ_ATTEMPTS} attempts); retry when its materialization ends"
    )
