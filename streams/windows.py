"""Window math (DESIGN.md §4): pure functions over integer milliseconds, half-open intervals.

The same functions decide which events a value at time T covers online (serving) and offline
(training sets), which is half of why the two agree.
"""

from __future__ import annotations

__all__ = ["window_bounds", "tile_start", "retention_ms", "format_duration"]


def window_bounds(t_ms: int, window_ms: int, interval_ms: int | None) -> tuple[int, int]:
    """The half-open event-time range ``[start, end)`` a value at time ``t_ms`` aggregates.

    Continuous mode (``interval_ms is None``): ``[T - W, T)``.
    Time-interval mode: with ``E = floor(T / I) * I``, ``[E - W, E)`` (complete tiles only).
    """
    if window_ms <= 0:
        raise ValueError(f"window_ms must be positive, got {window_ms}")
    end = t_ms if interval_ms is None else tile_start(t_ms, interval_ms)
    return end - window_ms, end


def tile_start(event_ms: int, tile_ms: int) -> int:
    """Start of the tile of width ``tile_ms`` holding ``event_ms`` (floor, also for negatives)."""
    if tile_ms <= 0:
        raise ValueError(f"tile_ms must be positive, got {tile_ms}")
    return (event_ms // tile_ms) * tile_ms


def retention_ms(max_window_ms: int, watermark_delay_ms: int, interval_ms: int | None) -> int:
    """How long state for an event must be kept after the watermark passes it.

    A tile can still be read by a window ending up to ``watermark_delay_ms`` after the newest
    event seen (late events are still accepted until then), plus one interval of alignment.
    """
    return max_window_ms + watermark_delay_ms + (interval_ms or 0)


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def format_duration(ms: int) -> str:
    """Tecton-style compact duration: ``1d``, ``1h``, ``10m``, ``1h30m``, ``500ms``."""
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {ms} ms")
    parts = []
    rest = ms
    for suffix, size in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)
