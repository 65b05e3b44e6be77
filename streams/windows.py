"""Window math (docs/design.md §4): pure functions over integer milliseconds, half-open intervals.

The same functions decide which events a value at time T covers online (serving) and offline
(training sets), which is half of why the two agree.

Every window is anchored at the *window end* ``E``: ``T`` in continuous mode, ``floor(T / I) * I``
in time-interval mode (complete tiles only). Relative to ``E`` (Tecton's convention: offsets and
series bounds are negative or zero):

* ``TimeWindow(W, offset=O)``: ``[E + O - W, E + O)``;
* ``LifetimeWindow()``: ``[lifetime_start, E)``;
* ``TimeWindowSeries(series_start=S, series_end=Z, step_size=P, window_size=W)``: the windows
  ``[E + s, E + s + W)`` for ``s = S, S + P, ...`` while ``s + W <= Z``, earliest first.
"""

from __future__ import annotations

from featurebus.schemas.kinds import AggregationLeadingEdge, WindowKind
from featurebus.schemas.specs import AggregationSpec

__all__ = [
    "WALL_CLOCK_TIME",
    "LATEST_EVENT_TIME",
    "window_end",
    "window_bounds",
    "lifetime_bounds",
    "series_windows",
    "aggregation_windows",
    "leading_edge_ms",
    "tile_start",
    "retention_ms",
    "lifetime_fold_cutoff",
    "format_duration",
]

# Kept for the modules that still import them; new code names the enum members.
WALL_CLOCK_TIME = AggregationLeadingEdge.WALL_CLOCK_TIME
LATEST_EVENT_TIME = AggregationLeadingEdge.LATEST_EVENT_TIME


def window_end(t_ms: int, interval_ms: int | None) -> int:
    """``E``: ``T`` in continuous mode, else the start of the tile holding ``T`` (the last
    complete tile ends there)."""
    return t_ms if interval_ms is None else tile_start(t_ms, interval_ms)


def window_bounds(t_ms: int, window_ms: int, interval_ms: int | None, offset_ms: int = 0) -> tuple[int, int]:
    """The half-open event-time range ``[start, end)`` a value at time ``t_ms`` aggregates.

    Continuous mode (``interval_ms is None``): ``[T + O - W, T + O)``.
    Time-interval mode: with ``E = floor(T / I) * I``, ``[E + O - W, E + O)`` (complete tiles only).
    ``offset_ms`` (``O``) is zero or negative, as Tecton's ``TimeWindow.offset``.
    """
    if window_ms <= 0:
        raise ValueError(f"window_ms must be positive, got {window_ms}")
    if offset_ms > 0:
        raise ValueError(f"offset_ms must be zero or negative, got {offset_ms}")
    end = window_end(t_ms, interval_ms) + offset_ms
    return end - window_ms, end


def lifetime_bounds(t_ms: int, lifetime_start_ms: int, interval_ms: int | None) -> tuple[int, int]:
    """``[lifetime_start, E)``; empty (``start == end``) while ``E`` is not after the start."""
    return lifetime_start_ms, max(lifetime_start_ms, window_end(t_ms, interval_ms))


def series_windows(series_start_ms: int, series_end_ms: int, step_ms: int, window_ms: int) -> list[tuple[int, int]]:
    """The windows of a series relative to ``E``, earliest first (Tecton's ``TimeWindowSeries``:
    starts from ``series_start`` by ``step`` while the window still ends by ``series_end``)."""
    if window_ms <= 0 or step_ms <= 0:
        raise ValueError(f"window_ms and step_ms must be positive, got {window_ms} and {step_ms}")
    return [(start, start + window_ms) for start in range(series_start_ms, series_end_ms - window_ms + 1, step_ms)]


def aggregation_windows(
    aggregation: AggregationSpec, t_ms: int, interval_ms: int | None, lifetime_start_ms: int | None
) -> list[tuple[int, int]]:
    """Every ``[start, end)`` the value of ``aggregation`` at ``t_ms`` covers: one window, or one
    per element of a series."""
    kind = aggregation.window_kind
    if kind == WindowKind.TIME:
        return [window_bounds(t_ms, aggregation.window_ms, interval_ms, aggregation.offset_ms)]
    if kind == WindowKind.LIFETIME:
        if lifetime_start_ms is None:
            raise ValueError(f"lifetime window {aggregation.name!r} needs the view's lifetime_start_ms")
        return [lifetime_bounds(t_ms, lifetime_start_ms, interval_ms)]
    if kind == WindowKind.SERIES:
        end = window_end(t_ms, interval_ms)
        relative = series_windows(
            aggregation.series_start_ms, aggregation.series_end_ms, aggregation.series_step_ms, aggregation.window_ms
        )
        return [(end + start, end + stop) for start, stop in relative]
    raise ValueError(f"unknown window kind {kind!r} of {aggregation.name!r}")


def leading_edge_ms(t_ms: int, high_watermark_ms: int | None, leading_edge: AggregationLeadingEdge) -> int:
    """The ``T`` windows are computed at, for a request at ``t_ms``.

    ``WALL_CLOCK_TIME``: the request's time. ``LATEST_EVENT_TIME``: just after the newest event
    time the view has processed (its stream high watermark), so that event is inside the window;
    the request's time while no event has been processed.
    """
    if leading_edge == AggregationLeadingEdge.WALL_CLOCK_TIME or high_watermark_ms is None:
        return t_ms
    if leading_edge == AggregationLeadingEdge.LATEST_EVENT_TIME:
        return high_watermark_ms + 1
    raise ValueError(f"unknown aggregation leading edge {leading_edge!r}")


def tile_start(event_ms: int, tile_ms: int) -> int:
    """Start of the tile of width ``tile_ms`` holding ``event_ms`` (floor, also for negatives)."""
    if tile_ms <= 0:
        raise ValueError(f"tile_ms must be positive, got {tile_ms}")
    return (event_ms // tile_ms) * tile_ms


def retention_ms(max_reach_ms: int, watermark_delay_ms: int, interval_ms: int | None) -> int:
    """How long state for an event must be kept after the watermark passes it.

    A tile can still be read by a window ending up to ``watermark_delay_ms`` after the newest
    event seen (late events are still accepted until then), plus one interval of alignment;
    ``max_reach_ms`` is how far before its end the earliest bounded window starts (window size
    plus offset, or a series' start). Lifetime windows do not keep tiles: see
    ``lifetime_fold_cutoff``.
    """
    return max_reach_ms + watermark_delay_ms + (interval_ms or 0)


def lifetime_fold_cutoff(watermark_ms: int, watermark_delay_ms: int, tile_ms: int) -> int:
    """Tiles starting before this are final and can be folded into an entity's lifetime prefix.

    An event is accepted only if it is at most ``watermark_delay_ms`` older than the watermark,
    so no accepted event can land in a tile that ends by ``watermark - delay``.
    """
    return tile_start(watermark_ms - watermark_delay_ms, tile_ms)


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
