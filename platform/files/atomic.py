"""Writing a file so that readers and crashes see the old bytes or the new, never a torn mix.

The one way featurebus replaces a file it keeps (state markers, manifests, Parquet parts,
settings): write a temporary file beside it, fsync it, rename it over the target (atomic on one
file system), then fsync the folder so the rename itself survives a power loss.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_with", "fsync_path"]


def atomic_write(path: Path, data: bytes | str, *, temporary: Path | None = None) -> Path:
    """Replace ``path`` with ``data`` (str: UTF-8) atomically and durably; creates its folder.

    ``temporary`` (default ``<name>.tmp`` beside it) must be in the same folder; give a unique one
    when several processes may write the same target at once."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda target: target.write_bytes(payload), temporary=temporary)


def atomic_write_with(path: Path, write: Callable[[Path], object], *, temporary: Path | None = None) -> Path:
    """``atomic_write`` for content a library writes to a path itself (``df.to_parquet``,
    ``pq.write_table``): ``write(temporary)`` writes it, then it is fsynced and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary or path.with_name(path.name + ".tmp")
    write(temporary)
    fsync_path(temporary)
    os.replace(temporary, path)
    fsync_path(path.parent)
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk.

    A rename is only as durable as the data behind it (without the file's fsync, a power loss can
    leave a committed name pointing at an empty file) and as the folder entry it changed."""
    fd = os.open(path, os.O_RDONLY)  # os.open, not open(): folders too
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
