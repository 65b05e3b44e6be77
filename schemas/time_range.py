"""Time-bounded sources: ``source.select_range(start_time, end_time)`` as specs, and their meaning.

A bound is a ``TimeReference`` plus a millisecond offset, Tecton's ``TectonTimeConstant`` (+/-
a timedelta) or a fixed time. Bounds relative to the materialization window are evaluated per
window: a job materializing ``[start, end)`` reads such a source over
``[reference + offset, reference + offset)`` of that window, whatever range the whole job covers
(``featurebus.platform.batch.inputs``). The unbounded references mean no bound on that side.
Pure: no I/O, integer milliseconds, half-open ranges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["TimeReference", "TimeBoundSpec", "SourceRangeSpec", "empty_range_reason"]


class TimeReference(enum.StrEnum):
    MATERIALIZATION_START_TIME = "materialization_start_time"
    MATERIALIZATION_END_TIME = "materialization_end_time"
    UNBOUNDED_PAST = "unbounded_past"
    UNBOUNDED_FUTURE = "unbounded_future"
    FIXED = "fixed"  # a datetime given as is: ``offset_ms`` is its epoch milliseconds


_RELATIVE = (TimeReference.MATERIALIZATION_START_TIME, TimeReference.MATERIALIZATION_END_TIME)
_UNBOUNDED = (TimeReference.UNBOUNDED_PAST, TimeReference.UNBOUNDED_FUTURE)


@dataclass(frozen=True)
class TimeBoundSpec:
    reference: TimeReference
    offset_ms: int = 0  # added to the reference (FIXED: the time itself); 0 for the unbounded ones

    @property
    def relative(self) -> bool:
        return self.reference in _RELATIVE

    def resolve(self, window_start_ms: int, window_end_ms: int) -> int | None:
        """The bound for the materialization window ``[window_start_ms, window_end_ms)``; None: unbounded."""
        reference = self.reference
        if reference in _UNBOUNDED:
            return None
        if reference is TimeReference.FIXED:
            return self.offset_ms
        base = window_start_ms if reference is TimeReference.MATERIALIZATION_START_TIME else window_end_ms
        return base + self.offset_ms


@dataclass(frozen=True)
class SourceRangeSpec:
    """``source.select_range(start, end)`` in a batch view (or a stream view's history): the rows read per window."""

    source: str
    start: TimeBoundSpec
    end: TimeBoundSpec

    @property
    def relative(self) -> bool:
        """Whether the range moves with the materialization window (then each window is a run)."""
        return self.start.relative or self.end.relative

    def resolve(self, window_start_ms: int, window_end_ms: int) -> tuple[int | None, int | None]:
        return self.start.resolve(window_start_ms, window_end_ms), self.end.resolve(window_start_ms, window_end_ms)


def empty_range_reason(start: TimeBoundSpec, end: TimeBoundSpec) -> str | None:
    """Why ``[start, end)`` selects nothing for every materialization window, or None if some
    window can have rows. Windows are non-empty, so ``MATERIALIZATION_START_TIME + a`` is before
    ``MATERIALIZATION_END_TIME + b`` whenever ``a <= b``; bounds of different kinds compare only
    through that (a fixed time against a moving one is empty only for some windows: allowed)."""
    s, e = start.reference, end.reference
    if s is TimeReference.UNBOUNDED_FUTURE:
        return "start_time is UNBOUNDED_FUTURE: no row is after it"
    if e is TimeReference.UNBOUNDED_PAST:
        return "end_time is UNBOUNDED_PAST: no row is before it"
    if s in _UNBOUNDED or e in _UNBOUNDED:
        return None
    same_kind = s is e or (s is not TimeReference.FIXED and e is not TimeReference.FIXED)
    if not same_kind:
        return None
    if s is e and end.offset_ms <= start.offset_ms:
        return "end_time is not after start_time"
    if (
        s is TimeReference.MATERIALIZATION_END_TIME
        and e is TimeReference.MATERIALIZATION_START_TIME
        and end.offset_ms <= start.offset_ms
    ):
        return "end_time (from MATERIALIZATION_START_TIME) is before start_time (from MATERIALIZATION_END_TIME)"
    return None
