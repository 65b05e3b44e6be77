"""The spine of a training set: which column holds the times, and what ``T`` means per row.

Kept apart from the join so the time rules (UTC, sub-millisecond spine times, interval alignment)
read in one place and match ``streams.windows.window_bounds`` exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.schemas.errors import InvalidRequestError

__all__ = ["timestamp_column", "spine_times_ns", "window_ends_ms", "check_join_key_types"]

_NS_PER_MS = 1_000_000


def timestamp_column(spine: pd.DataFrame, timestamp_key: str | None) -> str:
    """``timestamp_key``, or the spine's only datetime column; errors list the columns."""
    if timestamp_key is not None:
        if timestamp_key not in spine.columns:
            raise InvalidRequestError(
                f"timestamp_key {timestamp_key!r} is not a spine column; it has {list(spine.columns)}"
            )
        return timestamp_key
    candidates = [str(c) for c in spine.columns if pd.api.types.is_datetime64_any_dtype(spine[c])]
    if len(candidates) != 1:
        found = f"datetime columns {candidates}" if candidates else "no datetime column"
        raise InvalidRequestError(
            f"the spine has {found} (columns: {list(spine.columns)}); pass timestamp_key=<column>"
        )
    return candidates[0]


def spine_times_ns(spine: pd.DataFrame, column: str) -> np.ndarray:
    """Row times as int64 UTC nanoseconds (naive times are taken as UTC, as docs/design.md §4 says)."""
    times = pd.to_datetime(spine[column], utc=True)
    nulls = int(times.isna().sum())
    if nulls:
        raise InvalidRequestError(f"{nulls} spine rows have no timestamp in {column!r}; drop or fill them")
    ns: np.ndarray = times.dt.as_unit("ns").astype("int64").to_numpy()
    return ns


def window_ends_ms(t_ns: np.ndarray, interval_ms: int | None) -> np.ndarray:
    """``end`` of ``window_bounds`` per row, exact also for sub-millisecond spine times.

    Events are whole milliseconds, so ``event < T`` iff ``event < ceil_ms(T)`` (continuous), and
    ``floor(T / I)`` equals ``floor(floor_ms(T) / I)`` for whole-millisecond ``I`` (interval mode).
    """
    if interval_ms is None:
        ceil: np.ndarray = -np.floor_divide(-t_ns, _NS_PER_MS)
        return ceil
    floor_ms = np.floor_divide(t_ns, _NS_PER_MS)
    ends: np.ndarray = np.floor_divide(floor_ms, interval_ms) * interval_ms
    return ends


def check_join_key_types(name: str, spine_type: pa.DataType, event_type: pa.DataType) -> None:
    """Refuse string-vs-number key pairs: SQL would cast or fail obscurely instead of saying so."""

    def kind(t: pa.DataType) -> str:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "string"
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return "number"
        return "null" if pa.types.is_null(t) else str(t)

    spine_kind, event_kind = kind(spine_type), kind(event_type)
    if "null" not in (spine_kind, event_kind) and spine_kind != event_kind:
        raise InvalidRequestError(
            f"spine column {name!r} holds {spine_type} values but the events' join key is {event_type}; "
            "convert the spine column"
        )
