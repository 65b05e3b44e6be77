"""Every DuckDB connection featurebus opens, with its spill files under the featurebus home.

DuckDB writes what does not fit its memory limit (sorts, joins, aggregates, in-memory tables) to a
temporary directory, by default ``.tmp`` in the process's working directory: a training set run
from a checkout left spill files in the repository. Here each connection gets its own directory
``<home>/duckdb-spill/<pid>-<random>``. Its own, because DuckDB databases sharing one temporary
directory name their files alike in the DuckDB versions featurebus accepts (duckdb#15173), and
the first to close deletes the files of the others. DuckDB creates the directory at the first
spill and removes it when the connection closes; a killed process leaves its directory behind,
named by its pid, and deleting it is safe once that process is gone.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from featurebus.platform.config import home_dir

__all__ = ["connect", "spill_root"]


def spill_root() -> Path:
    """The directory holding every connection's spill directory: ``<home>/duckdb-spill``."""
    return home_dir() / "duckdb-spill"


def connect(**settings: str | int | bool) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection spilling under the featurebus home; ``settings`` are DuckDB
    configuration options (``memory_limit="4GB"``, ``preserve_insertion_order=True``, ...)."""
    root = spill_root()
    # DuckDB creates the connection's own directory when it first spills, but not its parent:
    # without this, the first query too large for memory would fail instead of spilling.
    root.mkdir(parents=True, exist_ok=True)
    spill_dir = root / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return duckdb.connect(config={"temp_directory": str(spill_dir), **settings})
