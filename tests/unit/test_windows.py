from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurebus.streams.windows import format_duration, retention_ms, tile_start, window_bounds


@pytest.mark.parametrize(
    ("t", "w", "i", "expected"),
    [
        (1000, 100, None, (900, 1000)),
        (1000, 1000, None, (0, 1000)),
        (1005, 100, 10, (900, 1000)),  # E = floor(T / I) * I
        (1000, 100, 10, (900, 1000)),  # T on a boundary: the tile ending at T is complete
        (999, 100, 10, (890, 990)),
        (-5, 10, 10, (-20, -10)),  # floor, not truncation, before the epoch
    ],
)
def test_window_bounds_table(t: int, w: int, i: int | None, expected: tuple[int, int]) -> None:
    assert window_bounds(t, w, i) == expected


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**9), st.one_of(st.none(), st.integers(1, 10**7)))
def test_window_is_half_open_and_never_reaches_t(t: int, w: int, i: int | None) -> None:
    start, end = window_bounds(t, w, i)
    assert end - start == w
    assert end <= t
    if i is None:
        assert end == t
    else:
        assert end % i == 0 and t - end < i


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**7))
def test_tile_start_contains_event(event: int, tile: int) -> None:
    start = tile_start(event, tile)
    assert start <= event < start + tile and start % tile == 0


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        window_bounds(0, 0, None)
    with pytest.raises(ValueError):
        tile_start(0, 0)


@pytest.mark.parametrize(
    ("ms", "text"), [(86_400_000, "1d"), (3_600_000, "1h"), (600_000, "10m"), (5_400_000, "1h30m"), (1500, "1s500ms")]
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_retention_covers_window_delay_and_interval() -> None:
    assert retention_ms(100, 20, None) == 120
    assert retention_ms(100, 20, 10) == 130


# -- window kinds ------------------------------------------------------------------------------

from featurebus.schemas.specs import AggregationSpec  # noqa: E402
from featurebus.streams.windows import (  # noqa: E402
    LATEST_EVENT_TIME,
    WALL_CLOCK_TIME,
    aggregation_windows,
    leading_edge_ms,
    lifetime_bounds,
    lifetime_fold_cutoff,
    series_windows,
    window_end,
)
from tests.support.oracle import windows_of  # noqa: E402

DAY = 86_400_000


@pytest.mark.parametrize(
    ("t", "w", "i", "offset", "expected"),
    [
        (1000, 100, None, -50, (850, 950)),  # [T + O - W, T + O)
        (1005, 100, 10, -20, (880, 980)),  # interval mode: from the aligned end E = 1000
        (1000, 100, 10, 0, (900, 1000)),
        (-5, 10, 10, -10, (-30, -20)),
    ],
)
def test_window_bounds_with_offset(t: int, w: int, i: int | None, offset: int, expected: tuple[int, int]) -> None:
    assert window_bounds(t, w, i, offset) == expected


def test_positive_offsets_are_rejected() -> None:
    with pytest.raises(ValueError, match="zero or negative"):
        window_bounds(0, 10, None, 5)


@pytest.mark.parametrize(
    ("t", "start", "i", "expected"),
    [
        (1000, 100, None, (100, 1000)),
        (1005, 100, 10, (100, 1000)),
        (50, 100, None, (100, 100)),
        (100, 100, None, (100, 100)),
    ],
)
def test_lifetime_bounds(t: int, start: int, i: int | None, expected: tuple[int, int]) -> None:
    assert lifetime_bounds(t, start, i) == expected


def test_series_windows_as_tecton_builds_them() -> None:
    # TimeWindowSeries(series_start=-7d, window_size=1d): seven back-to-back days, earliest first.
    days = series_windows(-7 * DAY, 0, DAY, DAY)
    assert days == [(-k * DAY, -(k - 1) * DAY) for k in range(7, 0, -1)]
    # Overlapping windows: 3 d windows every day from -7 d to -1 d.
    assert series_windows(-7 * DAY, -DAY, DAY, 3 * DAY) == [
        (-7 * DAY, -4 * DAY),
        (-6 * DAY, -3 * DAY),
        (-5 * DAY, -2 * DAY),
        (-4 * DAY, -DAY),
    ]
    # Tecton ends a series early when the step does not divide it (the SDK refuses that).
    assert series_windows(-10, 0, 4, 3) == [(-10, -7), (-6, -3)]
    with pytest.raises(ValueError):
        series_windows(-10, 0, 0, 3)


def _spec(
    kind: str, window_ms: int = 0, offset_ms: int = 0, start: int = 0, end: int = 0, step: int = 0
) -> AggregationSpec:
    return AggregationSpec(
        "f",
        "count",
        "x",
        "float64",
        window_ms,
        "int64",
        window_kind=kind,
        offset_ms=offset_ms,
        series_start_ms=start,
        series_end_ms=end,
        series_step_ms=step,
    )


@st.composite
def _aggregation_specs(draw: st.DrawFn, interval: int | None) -> AggregationSpec:
    unit = interval or 1
    kind = draw(st.sampled_from(["time", "lifetime", "series"]))
    if kind == "lifetime":
        return _spec("lifetime")
    if kind == "time":
        return _spec("time", draw(st.integers(1, 50)) * unit, -draw(st.integers(0, 50)) * unit)
    window = draw(st.integers(1, 20)) * unit
    step = draw(st.integers(1, 10)) * unit
    end = -draw(st.integers(0, 20)) * unit
    count = draw(st.integers(2, 8))
    return _spec("series", window, start=end - window - (count - 1) * step, end=end, step=step)


@given(
    data=st.data(),
    t=st.integers(-(10**6), 10**6),
    interval=st.one_of(st.none(), st.integers(1, 1000)),
    lifetime_start=st.integers(-(10**6), 10**6),
    events=st.lists(st.integers(-2 * 10**6, 2 * 10**6), max_size=50),
)
def test_windows_contain_exactly_the_events_the_oracle_keeps(
    data: st.DataObject, t: int, interval: int | None, lifetime_start: int, events: list[int]
) -> None:
    agg = data.draw(_aggregation_specs(interval))
    ours = aggregation_windows(agg, t, interval, lifetime_start)
    theirs = windows_of(t, agg, interval, lifetime_start)
    assert len(ours) == len(theirs)
    for (start, end), (o_start, o_end) in zip(ours, theirs, strict=True):
        assert [e for e in events if start <= e < end] == [e for e in events if o_start <= e < o_end]
        assert start == end or end <= window_end(t, interval) <= t  # never an event at or after T
    if agg.window_kind == "series":
        assert [b - a for a, b in ours] == [agg.window_ms] * len(ours)
        assert all(b[0] - a[0] == agg.series_step_ms for a, b in itertools.pairwise(ours))
        assert ours[-1][1] == window_end(t, interval) + agg.series_end_ms


@given(
    data=st.data(),
    watermark=st.integers(-(10**6), 10**6),
    delay=st.integers(0, 10**4),
    interval=st.one_of(st.none(), st.integers(1, 1000)),
    late=st.integers(0, 10**5),
)
def test_every_servable_window_starts_after_the_expiry_cutoff(
    data: st.DataObject, watermark: int, delay: int, interval: int | None, late: int
) -> None:
    """A value at T >= watermark - delay (the oldest time served exactly) never reads a tile that
    retention lets expire, and lifetime folding never swallows a tile such a T still splits."""
    aggs = data.draw(st.lists(_aggregation_specs(interval), min_size=1, max_size=4))
    reaches = [a.reach_ms for a in aggs if a.reach_ms is not None]
    cutoff = watermark - retention_ms(max(reaches, default=0), delay, interval)
    tile = interval or 1
    t = watermark - delay + late
    for agg in aggs:
        for start, end in aggregation_windows(agg, t, interval, lifetime_start_ms=cutoff - 10**6):
            if agg.window_kind != "lifetime" and end > start:
                assert tile_start(start, tile) + tile > cutoff  # the first tile read is kept
    fold = lifetime_fold_cutoff(watermark, delay, tile)
    assert fold % tile == 0 and fold <= watermark - delay < fold + tile
    assert fold <= window_end(t, interval)  # the lifetime prefix never covers past E
    assert cutoff <= fold  # every tile that expires was folded first


def test_leading_edge() -> None:
    assert leading_edge_ms(1000, 700, WALL_CLOCK_TIME) == 1000
    assert leading_edge_ms(1000, 700, LATEST_EVENT_TIME) == 701  # the newest event is inside
    assert leading_edge_ms(1000, None, LATEST_EVENT_TIME) == 1000  # nothing processed yet
    with pytest.raises(ValueError):
        leading_edge_ms(1000, 700, "sometimes")


def test_unknown_or_incomplete_window_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="lifetime_start_ms"):
        aggregation_windows(_spec("lifetime"), 0, None, None)
    with pytest.raises(ValueError, match="unknown window kind"):
        aggregation_windows(_spec("hopping", 10), 0, None, None)
