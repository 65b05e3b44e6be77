"""Epoch milliseconds, the one time representation featurebus stores and computes with.

Every timestamp in specs, records, tiles and stores is integer milliseconds since the Unix epoch,
UTC; a naive ``datetime`` means UTC. Conversions are exact (floored to the millisecond, never
through a float), so ``to_epoch_ms(from_epoch_ms(t)) == t`` for every ``t``. Pure: no I/O.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "format_iso_ms", "from_epoch_ms", "now_ms", "parse_iso_ms", "to_epoch_ms"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def now_ms() -> int:
    """The wall clock, in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def to_epoch_ms(value: datetime) -> int:
    """Epoch milliseconds of ``value`` (naive: UTC), floored: 12:00:00.0009 is 12:00:00.000.
    A ``pandas.Timestamp`` works too (it is a datetime)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - EPOCH) // _MILLISECOND)


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of ``ms``."""
    return EPOCH + timedelta(milliseconds=ms)


def format_iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, e.g. ``2024-05-01T12:00:00.250Z``."""
    return from_epoch_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 date or time (``2024-05-01``, ``...T12:00:00.25Z``,
    ``...+02:00``; no zone means UTC). Raises ``ValueError`` naming the text when it is not one."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 timestamp") from None
    return to_epoch_ms(parsed)
