"""Compaction of the offline store: merge a date folder's small part files of one Kafka partition.

The materializer writes one file per partition flush and date, so a store fed by a trickle of
events fills with tiny files that make every read slow. Compaction merges runs of consecutive
small files of one ``(date, topic, partition)`` into one file, named by the run's offset range.

Crash safety, for readers going through ``store.list_parts`` (training sets, ranges):
1. the merged rows are written to ``part-...parquet.compacting`` (outside the part glob) and fsynced;
2. one ``os.replace`` gives it its final name: from that instant its range covers the inputs', and
   ``store.live_parts`` hides them: readers switch from the inputs to the merged file atomically;
3. the inputs are deleted: at once by default, so that plain globs of ``part-*.parquet`` (pandas,
   DuckDB without featurebus) see them next to the merged file only for the microseconds between
   the rename and the unlinks; or ``grace_s`` later, for stores whose readers all go through
   ``list_parts`` and may be mid-read of an input (a read that listed an input just before the
   switch and opens it after its deletion fails, and is run again: training-set reads do that
   themselves, ``training/training_sets.py``).
A SIGKILL before 2 leaves a stray ``.compacting`` file (deleted by the next compaction), after 2
superseded inputs (deleted by the next compaction). Either way every record is visible exactly
once, and re-running is idempotent. Only runs of *consecutive* files are merged: a merged range
never spans a file it did not absorb. A flush in flight only holds offsets above every visible
file's, so it never lands inside a merged range either.

One compactor per source folder at a time (an ``flock`` on ``_compaction.lock``, released by the
kernel when its process dies); the materializer may keep writing meanwhile.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurebus.platform.files.atomic import fsync_path
from featurebus.platform.offline.store import PartFile, all_parts, live_parts, part_name

__all__ = [
    "CompactionResult",
    "Merge",
    "compact_source",
    "compact_workspace",
    "compaction_work",
    "plan_merges",
    "source_folder_lock",
]

_log = logging.getLogger(__name__)

SMALL_FILE_BYTES = 16 << 20  # files under this are merged
TARGET_FILE_BYTES = 128 << 20  # a merged file stays under this (inputs' on-disk sizes summed)
_PENDING_SUFFIX = ".compacting"


@dataclass(frozen=True)
class Merge:
    inputs: tuple[PartFile, ...]  # consecutive in offset order, same date, topic and partition
    name: str  # the merged file's name, in the inputs' folder


@dataclass
class CompactionResult:
    merged_files: int = 0  # merges done
    input_files: int = 0  # files those merges absorbed
    deleted_files: int = 0  # superseded files and stray temporary files removed
    cancelled: bool = False


def plan_merges(
    parts: Sequence[PartFile],
    sizes: Mapping[Path, int],
    small_bytes: int = SMALL_FILE_BYTES,
    target_bytes: int = TARGET_FILE_BYTES,
) -> list[Merge]:
    """The merges worth doing among ``parts`` (live files), pure: runs of at least two consecutive
    small files of one ``(date, topic, partition)``, cut where a run would exceed ``target_bytes``."""
    live, _ = live_parts(parts)
    merges: list[Merge] = []
    run: list[PartFile] = []
    run_bytes = 0

    def close_run() -> None:
        nonlocal run, run_bytes
        if len(run) >= 2:
            name = part_name(run[0].topic, run[0].partition, run[0].first_offset, max(p.last_offset for p in run))
            merges.append(Merge(tuple(run), name))
        run, run_bytes = [], 0

    previous: PartFile | None = None
    for part in live:  # sorted by (date, topic, partition, first offset)
        size = sizes.get(part.path, 0)
        if previous is None or (previous.date, previous.topic, previous.partition) != (
            part.date,
            part.topic,
            part.partition,
        ):
            close_run()
        previous = part
        if size >= small_bytes:
            close_run()  # a big file breaks the run: a merge must not span it
            continue
        if run and run_bytes + size > target_bytes:
            close_run()
        run.append(part)
        run_bytes += size
    close_run()
    return merges


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    with open(directory / "_compaction.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits for another compactor of this folder
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# Deletes (``featurebus.platform.deletes.offline``) rewrite part files in place: they take the
# same lock, so a merge never reads a file a delete is replacing, nor the other way round.
source_folder_lock = _exclusive


def _merge(merge: Merge) -> None:
    folder = merge.inputs[0].path.parent
    tables = [pq.read_table(part.path) for part in merge.inputs]
    table = pa.concat_tables(tables, promote_options="default")
    # Readers scan files in offset order and rely on each file being in offset order.
    table = table.take(pc.sort_indices(table, sort_keys=[("_offset", "ascending")]))
    final = folder / merge.name
    pending = folder / (merge.name + _PENDING_SUFFIX)
    pq.write_table(table, pending, compression="zstd")
    fsync_path(pending)
    os.replace(pending, final)  # the switch: from here on the inputs are superseded
    fsync_path(folder)


def _remove_garbage(source_folder: Path, grace_s: float, now: float) -> int:
    """Delete stray ``.compacting`` files and superseded inputs whose cover is older than ``grace_s``."""
    deleted = 0
    for stray in source_folder.glob(f"date=*/*{_PENDING_SUFFIX}"):
        stray.unlink(missing_ok=True)  # only a compactor writes these, and we hold the lock
        deleted += 1
    live, superseded = live_parts(_parts_of(source_folder))
    covers: dict[tuple[str, str, int], list[PartFile]] = {}
    for part in live:
        covers.setdefault((part.date, part.topic, part.partition), []).append(part)
    for part in superseded:
        cover = next(
            c
            for c in covers[(part.date, part.topic, part.partition)]
            if c.first_offset <= part.first_offset and part.last_offset <= c.last_offset
        )
        try:
            if now - cover.path.stat().st_mtime >= grace_s:
                part.path.unlink(missing_ok=True)
                deleted += 1
        except FileNotFoundError:
            continue
    return deleted


def _parts_of(source_folder: Path) -> list[PartFile]:
    return all_parts(source_folder.parent.parent.parent, source_folder.parent.name, source_folder.name)


def compact_source(
    source_folder: Path,
    *,
    small_bytes: int = SMALL_FILE_BYTES,
    target_bytes: int = TARGET_FILE_BYTES,
    grace_s: float = 0.0,
    progress: Callable[[float], None] = lambda f: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> CompactionResult:
    """Compact one source's folder (``<root>/sources/<workspace>/<source>``); see the module doc."""
    result = CompactionResult()
    if not source_folder.is_dir():
        return result
    with _exclusive(source_folder):
        result.deleted_files += _remove_garbage(source_folder, grace_s, time.time())
        parts = _parts_of(source_folder)
        sizes = {p.path: p.path.stat().st_size for p in parts if p.path.exists()}
        merges = plan_merges(parts, sizes, small_bytes, target_bytes)
        for done, merge in enumerate(merges):
            if cancelled():  # between merges: each merge is all or nothing
                result.cancelled = True
                break
            _merge(merge)
            if grace_s <= 0:
                for part in merge.inputs:
                    part.path.unlink(missing_ok=True)
                result.deleted_files += len(merge.inputs)
            result.merged_files += 1
            result.input_files += len(merge.inputs)
            progress((done + 1) / len(merges))
    return result


def compact_workspace(
    root: Path,
    workspace: str,
    *,
    small_bytes: int = SMALL_FILE_BYTES,
    target_bytes: int = TARGET_FILE_BYTES,
    grace_s: float = 0.0,
    progress: Callable[[float], None] = lambda f: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> CompactionResult:
    """Compact every source folder of the workspace in the offline store at ``root``."""
    base = root / "sources" / workspace
    folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    total = CompactionResult()
    for index, folder in enumerate(folders):

        def scaled(fraction: float, index: int = index) -> None:
            progress((index + fraction) / len(folders))

        result = compact_source(
            folder,
            small_bytes=small_bytes,
            target_bytes=target_bytes,
            grace_s=grace_s,
            progress=scaled,
            cancelled=cancelled,
        )
        total.merged_files += result.merged_files
        total.input_files += result.input_files
        total.deleted_files += result.deleted_files
        if result.cancelled:
            total.cancelled = True
            break
        progress((index + 1) / len(folders))
    if total.merged_files:
        _log.info("compacted %s: %d files merged into %d", workspace, total.input_files, total.merged_files)
    return total


def compaction_work(
    root: Path, workspace: str, small_bytes: int = SMALL_FILE_BYTES, target_bytes: int = TARGET_FILE_BYTES
) -> int:
    """Merges and leftover files (superseded inputs, stray temporary files) a compaction would
    handle now: the runner queues a periodic compaction only when this is above 0."""
    base = root / "sources" / workspace
    work = 0
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        parts = _parts_of(folder)
        sizes = {}
        for part in parts:
            try:
                sizes[part.path] = part.path.stat().st_size
            except FileNotFoundError:  # deleted by a compaction meanwhile
                continue
        work += len(plan_merges(parts, sizes, small_bytes, target_bytes)) + len(live_parts(parts)[1])
        work += sum(1 for _ in folder.glob(f"date=*/*{_PENDING_SUFFIX}"))
    return work
