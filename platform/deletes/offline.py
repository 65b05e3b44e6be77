"""Removing entities' rows from the offline store, one file at a time, crash-safely.

Only files holding at least one deleted entity's row are rewritten; the others are not opened
for writing. Per file:

- **source part files** (``offline/store.py``; stream views and feature tables compute training
  sets from them): the kept rows are written to ``<name>.deleting`` (outside the part glob) and
  fsynced, and one ``os.replace`` puts them under the *same* name (a part file's name is the
  Kafka offset range it covers, which the materializer resumes from and compaction merges by:
  it must not change). A SIGKILL before the rename leaves the old file whole and a stray
  ``.deleting`` file (removed by the next delete); after it, the new file whole. Never a mix.
  Re-running finds the old files' rows again and finishes; files already rewritten hold no
  matching row and are left alone. The folder's compaction lock is held throughout.
- **batch view files** (``batch/offline.py``): each affected file's time range is replaced by
  its kept rows through ``replace_range``, whose manifest swap is the same all-or-nothing step.

Superseded part files (inputs a compaction merged but has not deleted yet) hold the rows too:
they are rewritten like live ones, so no copy survives on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurebus.platform.batch.offline import list_view_parts, replace_range
from featurebus.platform.deletes.receipt import FileRewrite, NotDeleted
from featurebus.platform.files.atomic import fsync_path
from featurebus.platform.offline.compaction import source_folder_lock
from featurebus.platform.offline.store import all_parts, source_dir
from featurebus.schemas.encoding import JoinKeyValue
from featurebus.schemas.specs import StreamSourceSpec

__all__ = ["DELETING_SUFFIX", "delete_batch_view_rows", "delete_source_rows", "matching_rows"]

DELETING_SUFFIX = ".deleting"
# Called with the temporary file after it is fsynced, before the rename: tests kill the process
# there to check a delete killed midway.
BeforeSwap = Callable[[Path], None]


def matching_rows(table: pa.Table, join_keys: Sequence[str], keys: set[tuple[JoinKeyValue, ...]]) -> pa.Array:
    """A boolean mask of the rows of ``table`` whose join-key values are one of ``keys``."""
    if table.num_rows == 0:
        return pa.array([], pa.bool_())
    frame = table.select(list(join_keys)).to_pandas()
    if len(join_keys) == 1:
        mask = frame[join_keys[0]].isin([k[0] for k in keys])
    else:
        mask = pd.MultiIndex.from_frame(frame).isin(list(keys))
    return pa.array(pd.Series(mask).fillna(False).to_numpy(dtype=bool))


def delete_source_rows(
    root: Path,
    workspace: str,
    source: StreamSourceSpec,
    join_keys: Sequence[str],
    keys: set[tuple[JoinKeyValue, ...]],
    before_swap: BeforeSwap = lambda path: None,
) -> tuple[list[FileRewrite], list[NotDeleted]]:
    """Rewrite the source's part files without the rows of ``keys`` (see the module doc)."""
    folder = source_dir(root, workspace, source.name)
    columns = {f.name for f in source.schema}
    missing = [k for k in join_keys if k not in columns]
    if missing:
        return [], [
            NotDeleted(
                str(folder),
                f"source {source.name!r} has no column(s) {missing}: its records cannot be matched to the view's "
                "join keys (the view's transformation derives them), so no source row was removed offline",
            )
        ]
    if not folder.is_dir():
        return [], []
    rewrites: list[FileRewrite] = []
    with source_folder_lock(folder):
        for stray in folder.glob(f"date=*/*{DELETING_SUFFIX}"):
            stray.unlink(missing_ok=True)  # a killed delete's: only deletes write these, under this lock
        for part in all_parts(root, workspace, source.name):
            try:
                table = pq.read_table(part.path)
            except FileNotFoundError:
                continue  # a superseded input removed meanwhile
            mask = matching_rows(table, join_keys, keys)
            removed = int(pc.sum(mask).as_py() or 0)
            if not removed:
                continue
            kept = table.filter(pc.invert(mask))
            pending = part.path.with_name(part.path.name + DELETING_SUFFIX)
            pq.write_table(kept, pending, compression="zstd")
            fsync_path(pending)
            before_swap(pending)
            os.replace(pending, part.path)
            fsync_path(part.path.parent)
            rewrites.append(FileRewrite(str(part.path), str(part.path), table.num_rows, removed, "source"))
    return rewrites, []


def delete_batch_view_rows(
    root: Path,
    workspace: str,
    view: str,
    timestamp_field: str,
    join_keys: Sequence[str],
    keys: set[tuple[JoinKeyValue, ...]],
) -> list[FileRewrite]:
    """Replace each of the batch view's files holding rows of ``keys`` by one without them."""
    rewrites: list[FileRewrite] = []
    for part in list_view_parts(root, workspace, view):
        table = pq.read_table(part.path)
        mask = matching_rows(table, join_keys, keys)
        removed = int(pc.sum(mask).as_py() or 0)
        if not removed:
            continue
        written = replace_range(
            root, workspace, view, timestamp_field, part.lo_ms, part.hi_ms, table.filter(pc.invert(mask))
        )
        new_path = str(written[0]) if len(written) == 1 else ", ".join(str(p) for p in written)
        rewrites.append(FileRewrite(str(part.path), new_path, table.num_rows, removed, "batch_view"))
    return rewrites
