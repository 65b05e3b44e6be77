"""Saved datasets: named training sets kept next to the offline store, e.g. as the reference a
feature's served distribution is compared with for drift (``platform.served.drift_monitor``).

    <root>/datasets/<workspace>/<name>.parquet

A dataset is a plain Parquet file (readable without featurebus); saving a name again replaces it
atomically.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurebus.platform.files.atomic import atomic_write_with
from featurebus.schemas.errors import InvalidRequestError, NotFoundError

__all__ = ["dataset_path", "list_datasets", "read_dataset", "save_dataset"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def dataset_path(root: Path, workspace: str, name: str) -> Path:
    if not _NAME.match(name):
        raise InvalidRequestError(
            f"dataset name {name!r} must be letters, digits, '_', '.' or '-' (at most 200), not starting with '.' or '-'"
        )
    return root / "datasets" / workspace / f"{name}.parquet"


def save_dataset(root: Path, workspace: str, name: str, frame: pd.DataFrame) -> Path:
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise InvalidRequestError(f"dataset {name!r}: pass a non-empty pandas DataFrame (e.g. a training set)")
    path = dataset_path(root, workspace, name)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return atomic_write_with(path, lambda target: pq.write_table(table, target, compression="zstd"))


def read_dataset(root: Path, workspace: str, name: str) -> pd.DataFrame:
    path = dataset_path(root, workspace, name)
    if not path.exists():
        known = ", ".join(list_datasets(root, workspace)) or "none"
        raise NotFoundError(f"no dataset named {name!r} in workspace {workspace!r} (saved: {known})")
    frame: pd.DataFrame = pq.read_table(path).to_pandas()
    return frame


def list_datasets(root: Path, workspace: str) -> list[str]:
    directory = root / "datasets" / workspace
    return sorted(p.stem for p in directory.glob("*.parquet")) if directory.exists() else []
