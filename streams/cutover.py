"""Where a stream view's batch history ends and its stream begins: one rule, applied by every side.

A stream view whose source has a ``batch_config`` and which sets ``feature_start_time`` has
*batch history* (``StreamFeatureViewSpec.backfill_from_batch``). Its events are split by event
time (the view's timestamp after the transformation, in ms) at one instant per view, the
*cut-over* ``T_cut`` (``stream_cutover_ms``):

- ``feature_start_ms <= t < T_cut``: counted from the ``batch_config`` files only (backfill jobs
  online, ``platform/training`` offline);
- ``t >= T_cut``: counted from the topic only (the stream engine online, the offline store's
  copy of the topic offline);
- ``t < feature_start_ms``: counted nowhere.

``T_cut`` is fixed once, by the apply that first gives the view its history
(``platform/registry/cutover.py``): the latest, over the source topic's partitions, of the event
time of each partition's earliest retained record (each partition holds all its records from
there on, so every partition is complete from ``T_cut``), or the apply time when the topic holds
no record. It is kept in the spec, so restarts, rebuilds and re-applies use the same instant.
Every event is thereby counted by exactly one side, whichever processes it and in whatever order,
with no gap as long as the files hold the events before ``T_cut`` and the topic keeps those after.

Pure: integers in, masks and ranges out.
"""

from __future__ import annotations

import numpy as np

from featurebus.schemas.specs import StreamFeatureViewSpec

__all__ = ["stream_start_ms", "stream_mask", "history_range", "history_mask"]


def stream_start_ms(view: StreamFeatureViewSpec) -> int | None:
    """The earliest event time the stream side counts (None: every event)."""
    bounds = [
        b
        for b in (view.feature_start_ms, view.stream_cutover_ms if view.backfill_from_batch else None)
        if b is not None
    ]
    return max(bounds) if bounds else None


def stream_mask(view: StreamFeatureViewSpec, ts_ms: np.ndarray) -> np.ndarray | None:
    """Which of the stream's rows count (None: all of them, the common case, with no array made)."""
    start = stream_start_ms(view)
    if start is None or not len(ts_ms) or int(ts_ms.min()) >= start:
        return None
    mask: np.ndarray = ts_ms >= start
    return mask


def history_range(view: StreamFeatureViewSpec) -> tuple[int, int] | None:
    """``[feature_start_ms, T_cut)``: the event times the batch files provide (None: no history,
    or its cut-over is not fixed yet, i.e. the view was never applied)."""
    if not view.backfill_from_batch or view.feature_start_ms is None or view.stream_cutover_ms is None:
        return None
    return view.feature_start_ms, max(view.feature_start_ms, view.stream_cutover_ms)


def history_mask(view: StreamFeatureViewSpec, ts_ms: np.ndarray, lo_ms: int, hi_ms: int) -> np.ndarray:
    """Which batch rows (event times ``ts_ms``) count, within ``[lo_ms, hi_ms)``."""
    bounds = history_range(view)
    if bounds is None:
        return np.zeros(len(ts_ms), dtype=bool)
    lo, hi = max(lo_ms, bounds[0]), min(hi_ms, bounds[1])
    mask: np.ndarray = (ts_ms >= lo) & (ts_ms < hi)
    return mask
