"""Brute-force oracle of docs/design.md §4, written independently of the engine: for each feature,
scan every event and keep the ones inside the window. Slow on purpose; tests compare against it.

Events are listed in arrival order; order-dependent functions sort the window's events by event
time with Python's stable sort, so ties keep arrival order. The approximate functions return the
exact answer here (distinct count, the value at rank ``floor(p * (count - 1))``); ``matches``
accepts a sketch result within its documented error bound.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec


@dataclass(frozen=True)
class Event:
    entity: tuple[Any, ...]
    ts_ms: int
    value: Any


def window_of(t_ms: int, window_ms: int, interval_ms: int | None, offset_ms: int = 0) -> tuple[int, int]:
    end = (t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms) + offset_ms
    return end - window_ms, end


def windows_of(
    t_ms: int, agg: AggregationSpec, interval_ms: int | None, lifetime_start_ms: int | None
) -> list[tuple[int, int]]:
    """Every window of ``agg`` at ``t_ms``, from the definitions in docs/design.md §4 and Tecton's docs."""
    anchor = t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms
    if agg.window_kind == "lifetime":
        assert lifetime_start_ms is not None
        return [(lifetime_start_ms, anchor)]
    if agg.window_kind == "series":
        windows, start = [], agg.series_start_ms
        while start + agg.window_ms <= agg.series_end_ms:
            windows.append((anchor + start, anchor + start + agg.window_ms))
            start += agg.series_step_ms
        return windows
    return [window_of(t_ms, agg.window_ms, interval_ms, agg.offset_ms)]


def _last_n(values: list[Any], n: int) -> list[Any]:
    return values[len(values) - n :] if len(values) > n else values


def _distinct(values: Iterable[Any]) -> list[Any]:
    kept: list[Any] = []
    for v in values:
        if v not in kept:
            kept.append(v)
    return kept


def aggregate(
    function: str,
    values: Sequence[Any],
    n: int | None = None,
    percentile: float | None = None,
    keep_nulls: bool = False,
) -> Any:
    """``values`` in event-time order (ties: arrival order)."""
    if keep_nulls and function == "last":
        return values[-1] if values else None
    present = [v for v in values if v is not None]
    if function == "count":
        return len(present)
    if not present:
        return None
    if function == "sum":
        return sum(present)
    if function == "mean":
        return sum(present) / len(present)
    if function == "min":
        return min(present)
    if function == "max":
        return max(present)
    if function == "last":
        return present[-1]
    if function in ("first_n", "last_n", "first_distinct_n", "last_distinct_n"):
        assert n is not None
        if function == "first_n":
            return present[:n]
        if function == "last_n":
            return _last_n(present, n)
        if function == "first_distinct_n":
            return _distinct(present)[:n]
        return _distinct(present[::-1])[:n][::-1]
    if function in ("var_pop", "stddev_pop"):
        variance = statistics.pvariance([float(v) for v in present])
        return math.sqrt(variance) if function == "stddev_pop" else variance
    if function in ("var_samp", "stddev_samp"):
        if len(present) < 2:
            return None
        variance = statistics.variance([float(v) for v in present])
        return math.sqrt(variance) if function == "stddev_samp" else variance
    if function == "approx_count_distinct":
        return len(set(present))
    if function == "approx_percentile":
        assert percentile is not None
        finite = sorted(float(v) for v in present if math.isfinite(float(v)))
        return finite[math.floor(percentile * (len(finite) - 1))] if finite else None
    raise ValueError(function)


def feature_value(
    events: Iterable[Event],
    entity: tuple[Any, ...],
    t_ms: int,
    function: str,
    window_ms: int,
    interval_ms: int | None,
    **params: Any,
) -> Any:
    start, end = window_of(t_ms, window_ms, interval_ms)
    inside = sorted((e for e in events if e.entity == entity and start <= e.ts_ms < end), key=lambda e: e.ts_ms)
    return aggregate(function, [e.value for e in inside], **params)


def value_of(
    events: Sequence[Event], entity: tuple[Any, ...], t_ms: int, agg: AggregationSpec, view: StreamFeatureViewSpec
) -> Any:
    """The value of any window kind: a list (earliest window first) for a series."""
    interval_ms = None if agg.attribute else view.aggregation_interval_ms  # Attributes are continuous
    ordered = sorted((e for e in events if e.entity == entity), key=lambda e: e.ts_ms)
    values = [
        aggregate(
            agg.function,
            [e.value for e in ordered if start <= e.ts_ms < end],
            n=agg.n,
            percentile=agg.percentile,
            keep_nulls=agg.attribute,
        )
        for start, end in windows_of(t_ms, agg, interval_ms, view.lifetime_start_ms)
    ]
    return values if agg.window_kind == "series" else values[0]


def close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= rel * max(1.0, abs(float(a)), abs(float(b)))


def matches(function: str, got: Any, want: Any, precision: int | None = None) -> bool:
    """``got`` (engine or training set) against the oracle's exact ``want``."""
    if got is None or want is None:
        return got is None and want is None
    if function == "approx_count_distinct":
        # Far below 2**precision registers HyperLogLog is linear counting: off only by register
        # collisions. Allow 3 standard errors, at least 1.
        bound = 3 * 1.04 / math.sqrt(1 << (precision or 8))
        return abs(got - want) <= max(1, bound * want)
    if function == "approx_percentile":
        accuracy = 1.0 / (precision or 100)
        return abs(got - want) <= accuracy * abs(want) * (1 + 1e-9) + 1e-300
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(close(g, w) if isinstance(w, float) else g == w for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, (str, bool)):
        return bool(got == want)
    if function in ("var_pop", "var_samp", "stddev_pop", "stddev_samp"):
        return close(got, want, rel=1e-7)
    return close(got, want)


def keyed_feature_value(
    events: Sequence[Event],
    keys: Sequence[Any],
    entity: tuple[Any, ...],
    t_ms: int,
    agg: AggregationSpec,
    interval_ms: int | None,
    **params: Any,
) -> Any:
    """A secondary-key aggregation by brute force: ``keys[i]`` is event ``i``'s secondary key.
    One value per key present in the window (null keys belong to none), keys ascending; the
    keys themselves for the ``_keys_`` feature; None when the window holds no keyed event."""
    start, end = window_of(t_ms, agg.window_ms, interval_ms, agg.offset_ms)
    inside = [(e, k) for e, k in zip(events, keys, strict=True) if e.entity == entity and start <= e.ts_ms < end]
    present = sorted({k for _, k in inside if k is not None})
    if not present:
        return None
    if agg.keys_feature:
        return present
    values = []
    for key in present:
        ordered = sorted((e for e, k in inside if k == key), key=lambda e: e.ts_ms)
        values.append(aggregate(agg.function, [e.value for e in ordered], **params))
    return values
