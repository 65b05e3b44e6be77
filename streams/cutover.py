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

A view whose source is ``stream_source.select_range(start, end)`` (``source_range``) reads, for
each backfill materialization window, only the ``batch_config`` rows whose source time is in the
range as evaluated for that window (``SourceRangeSpec.resolve``, the code batch views use), on
top of the rule above; the stream is never filtered by it. A range that moves with the window
(``MATERIALIZATION_START_TIME``/``END_TIME``) is evaluated per ``batch_schedule`` period aligned
from the epoch, the windows scheduled batch views run, so the value does not depend on how the
backfill is cut into jobs (``max_backfill_interval``, manual runs, retries) nor on who reads
(backfill jobs online, training sets offline): ``history_pieces`` cuts a range at those windows
and ``history_read_range`` says what each piece reads.

Pure: integers in, masks and ranges out.
"""

from __future__ import annotations

import numpy as np

from featurebus.schemas.specs import StreamFeatureViewSpec

__all__ = [
    "stream_start_ms",
    "stream_mask",
    "history_range",
    "history_mask",
    "range_window_ms",
    "history_pieces",
    "history_read_range",
]


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


def range_window_ms(view: StreamFeatureViewSpec) -> int | None:
    """The materialization window a ``source_range`` is evaluated per (``batch_schedule``), or None
    when there is no range or it does not move with the window (fixed or unbounded bounds)."""
    selected = view.source_range
    if selected is None or not selected.relative or view.batch_schedule_ms is None:
        return None
    return view.batch_schedule_ms


def history_pieces(view: StreamFeatureViewSpec, lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """``[lo_ms, hi_ms)`` cut where a materialization window ends, so that each piece reads
    under one evaluation of the range (one piece when the range does not move with the window)."""
    step = range_window_ms(view)
    if step is None:
        return [(lo_ms, hi_ms)] if lo_ms < hi_ms else []
    pieces = []
    while lo_ms < hi_ms:
        piece_hi = min(hi_ms, (lo_ms // step + 1) * step)
        pieces.append((lo_ms, piece_hi))
        lo_ms = piece_hi
    return pieces


def history_read_range(view: StreamFeatureViewSpec, lo_ms: int, hi_ms: int) -> tuple[int, int] | None:
    """The source times of the ``batch_config`` rows that piece ``[lo_ms, hi_ms)`` of the history
    (within one window: ``history_pieces``) reads: the piece itself, narrowed by the view's
    ``source_range`` evaluated for the window holding it; None: nothing to read."""
    selected = view.source_range
    if selected is None:
        return (lo_ms, hi_ms) if lo_ms < hi_ms else None
    step = range_window_ms(view)
    window = (lo_ms, hi_ms) if step is None else (lo_ms // step * step, lo_ms // step * step + step)
    start, end = selected.resolve(*window)
    read_lo = lo_ms if start is None else max(lo_ms, start)
    read_hi = hi_ms if end is None else min(hi_ms, end)
    return (read_lo, read_hi) if read_lo < read_hi else None
