"""The rule deciding which events of a source partition count: one function, used by the stream
engine online and by training-set reads offline, so both drop exactly the same events.

Per source partition, in arrival (offset) order:
- **ahead**: an event whose time is more than ``FUTURE_TOLERANCE_MS`` after its record's
  reference time is dead-lettered (reason ``event time ahead of its record time``): it neither
  counts nor moves the watermark. The reference time is the record's Kafka timestamp (the time
  the producer client or the broker stamped it), and online never later than the worker's wall
  clock. So a producer whose clock runs hours ahead cannot move the watermark past real time,
  and expiry, which follows the watermark, cannot drop tiles that requests at the current time
  still need. Dead-lettering (rather than holding the event until the wall clock reaches it)
  keeps the engine's state free of a buffer that would have to survive restarts, and the rule
  depends only on the records, so the offline side replays it exactly (records stored without
  a Kafka timestamp, written before it was kept, are never ahead offline).
- **late**: an event older than the partition's watermark (the newest counted event time
  before it) minus the source's ``watermark_delay_threshold`` is dropped, as docs/design.md §4 says.

Dropped events are counted per view and partition (``EngineCounters``, the worker's
``featurebus_events_dropped_total`` and ``featurebus describe``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["FUTURE_TOLERANCE_MS", "NO_WATERMARK", "ArrivalVerdict", "judge_partition"]

FUTURE_TOLERANCE_MS = 60_000  # producers' clocks may run this far ahead of the record's time
NO_WATERMARK = -(2**62)


class ArrivalVerdict(NamedTuple):
    ahead: np.ndarray  # bool per event: dead-lettered, ahead of its reference time
    late: np.ndarray  # bool per event: dropped, behind the watermark by more than the delay
    watermark: int  # the partition's watermark after these events


def judge_partition(
    ts_ms: np.ndarray, reference_ms: np.ndarray | None, watermark: int, delay_ms: int
) -> ArrivalVerdict:
    """The verdict on one partition's events, in arrival order, given its watermark before them.

    ``reference_ms`` is each record's reference time (None: no record carries one, nothing is
    ahead)."""
    ahead = np.zeros(len(ts_ms), dtype=bool) if reference_ms is None else ts_ms > reference_ms + FUTURE_TOLERANCE_MS
    counted = np.where(ahead, NO_WATERMARK, ts_ms)
    seen_before = np.maximum.accumulate(np.concatenate(([watermark], counted)))[:-1]
    late = ~ahead & (ts_ms < seen_before - delay_ms)
    new_watermark = int(max(watermark, counted.max())) if len(counted) else watermark
    return ArrivalVerdict(ahead, late, new_watermark)
