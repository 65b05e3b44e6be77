"""Brute-force oracle of DESIGN.md §4, written independently of the engine: for each feature,
scan every event and keep the ones inside the window. Slow on purpose; tests compare against it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec


@dataclass(frozen=True)
class Event:
    entity: tuple[Any, ...]
    ts_ms: int
    value: float | int | None


def window_of(t_ms: int, window_ms: int, interval_ms: int | None, offset_ms: int = 0) -> tuple[int, int]:
    end = (t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms) + offset_ms
    return end - window_ms, end


def windows_of(t_ms: int, agg: AggregationSpec, interval_ms: int | None, lifetime_start_ms: int | None) -> list[tuple[int, int]]:
    """Every window of ``agg`` at ``t_ms``, from the definitions in DESIGN.md §4 and Tecton's docs."""
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


def aggregate(function: str, values: Sequence[float | int | None]) -> Any:
    present = [v for v in values if v is not None]
    if function == "count":
        return len(present)
    if not present:
        return None
    if function == "sum":
        return sum(present)
    if function == "mean":
        return sum(present) / len(present)
    raise ValueError(function)


def feature_value(events: Iterable[Event], entity: tuple[Any, ...], t_ms: int, function: str,
                  window_ms: int, interval_ms: int | None) -> Any:
    start, end = window_of(t_ms, window_ms, interval_ms)
    return aggregate(function, [e.value for e in events if e.entity == entity and start <= e.ts_ms < end])


def value_of(events: Sequence[Event], entity: tuple[Any, ...], t_ms: int, agg: AggregationSpec,
             view: StreamFeatureViewSpec) -> Any:
    """The value of any window kind: a list (earliest window first) for a series."""
    values = [
        aggregate(agg.function, [e.value for e in events if e.entity == entity and start <= e.ts_ms < end])
        for start, end in windows_of(t_ms, agg, view.aggregation_interval_ms, view.lifetime_start_ms)
    ]
    return values if agg.window_kind == "series" else values[0]


def close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(close, a, b))
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= rel * max(1.0, abs(float(a)), abs(float(b)))
