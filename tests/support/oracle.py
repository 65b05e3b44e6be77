"""Brute-force oracle of DESIGN.md §4, written independently of the engine: for each feature,
scan every event and keep the ones inside the window. Slow on purpose; tests compare against it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    entity: tuple[Any, ...]
    ts_ms: int
    value: float | int | None


def window_of(t_ms: int, window_ms: int, interval_ms: int | None) -> tuple[int, int]:
    end = t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms
    return end - window_ms, end


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


def close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= rel * max(1.0, abs(float(a)), abs(float(b)))
