"""Tecton's ``TectonTimeConstant`` and the bounds ``source.select_range(start_time, end_time)`` takes.

    transactions.select_range(
        start_time=TectonTimeConstant.MATERIALIZATION_START_TIME - timedelta(days=29),
        end_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
    )

As in Tecton: the materialization constants take a timedelta offset (``+`` / ``-``, giving a
``FilterDateTime``), the unbounded ones refuse one, and a plain datetime is a fixed bound (naive:
UTC). They compile to ``featurebus.schemas.time_range`` specs, evaluated per materialization window.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from featurebus.schemas.time_range import TimeBoundSpec, TimeReference

__all__ = ["FilterDateTime", "TectonTimeConstant", "TimeBound", "time_bound_spec"]


class TectonTimeConstant(enum.Enum):
    MATERIALIZATION_START_TIME = TimeReference.MATERIALIZATION_START_TIME.value
    MATERIALIZATION_END_TIME = TimeReference.MATERIALIZATION_END_TIME.value
    UNBOUNDED_PAST = TimeReference.UNBOUNDED_PAST.value
    UNBOUNDED_FUTURE = TimeReference.UNBOUNDED_FUTURE.value

    def _offset(self, delta: timedelta, sign: int) -> FilterDateTime:
        if not isinstance(delta, timedelta):
            raise TypeError(f"only a datetime.timedelta can be added to or subtracted from {self}, got {delta!r}")
        if self in (TectonTimeConstant.UNBOUNDED_PAST, TectonTimeConstant.UNBOUNDED_FUTURE):
            raise ValueError(
                f"cannot offset {self}: it is unbounded; use MATERIALIZATION_START_TIME or "
                "MATERIALIZATION_END_TIME with a timedelta, or a fixed datetime"
            )
        return FilterDateTime(self, delta * sign)

    def __add__(self, other: timedelta) -> FilterDateTime:
        return self._offset(other, 1)

    def __sub__(self, other: timedelta) -> FilterDateTime:
        return self._offset(other, -1)

    def __str__(self) -> str:
        return f"TectonTimeConstant.{self.name}"


@dataclass(frozen=True)
class FilterDateTime:
    """A materialization time constant plus an offset (what ``constant +/- timedelta`` gives)."""

    time_reference: TectonTimeConstant
    offset: timedelta = timedelta(0)

    def __add__(self, other: timedelta) -> FilterDateTime:
        return self.time_reference + (self.offset + other)

    def __sub__(self, other: timedelta) -> FilterDateTime:
        return self.time_reference + (self.offset - other)

    def __str__(self) -> str:
        return f"{self.time_reference} + {self.offset!r}" if self.offset else str(self.time_reference)


TimeBound = datetime | TectonTimeConstant | FilterDateTime


def _epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def time_bound_spec(value: object) -> TimeBoundSpec | None:
    """The spec of a ``select_range`` bound, or None when ``value`` is not one."""
    if isinstance(value, TectonTimeConstant):
        return TimeBoundSpec(TimeReference(value.value))
    if isinstance(value, FilterDateTime):
        if value.offset % timedelta(milliseconds=1):
            return None
        return TimeBoundSpec(TimeReference(value.time_reference.value), value.offset // timedelta(milliseconds=1))
    if isinstance(value, datetime):
        return TimeBoundSpec(TimeReference.FIXED, _epoch_ms(value))
    return None
