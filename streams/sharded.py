"""Running a view's transformation once per micro-batch while knowing each output row's shard.

Tiles are sharded by source partition, so every transformed row must be traced to the partition
its event came from. Running the transformation once per partition does that trivially, but
costs its fixed pandas overhead (and that of the steps after it) once per partition: at 5,000
events/s a batch holds a few dozen events over every partition, and that overhead was most of a
batch's time. So a pandas transformation runs once over the whole batch (a default 0..n-1
index, as before), and each output row is traced back through the index pandas carries along
filters, reorders, column selections and explodes. Where the trace is not certain, the caller
runs the transformation per partition as before:

* the output index is not integers within ``[0, n)``;
* it is ``0..k-1`` with ``k < n``: also what ``reset_index(drop=True)`` after a filter gives,
  which would map rows to the wrong events;
* a join key the output shares with the input differs from the traced input row's (rows that
  the transformation rebuilt, e.g. an aggregation), or the output has a join key the input
  lacks (nothing to check the trace against).

Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from featurebus.streams.transform import has_default_index

__all__ = ["SHARD_COLUMN", "trace_shards"]

SHARD_COLUMN = "__featurebus_shard"  # carried through view_input_frame to batch_tiles


def trace_shards(
    frame: pd.DataFrame, transformed: pd.DataFrame, shards: np.ndarray, join_keys: Sequence[str]
) -> np.ndarray | None:
    """The shard of each row of ``transformed`` (the output of a transformation given ``frame``,
    whose rows have ``shards``), or None where it cannot be traced for certain."""
    n = len(frame)
    if not has_default_index(frame.index):
        raise ValueError("trace_shards needs the transformation's input to have the default index")
    index = transformed.index
    if index.dtype.kind not in "iu":
        return None
    if has_default_index(index) and len(index) < n:
        return None
    positions = index.to_numpy()
    if len(positions) and (int(positions.min()) < 0 or int(positions.max()) >= n):
        return None
    for key in join_keys:
        if key not in frame.columns or key not in transformed.columns:
            return None
        before = frame[key].to_numpy()[positions]
        after = transformed[key].to_numpy()
        missing = pd.isna(before)
        if not np.array_equal(missing, pd.isna(after)) or not np.array_equal(before[~missing], after[~missing]):
            return None
    traced: np.ndarray = shards[positions]
    return traced
