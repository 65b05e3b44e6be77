from __future__ import annotations

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


@given(st.integers(-10**15, 10**15), st.integers(1, 10**9), st.one_of(st.none(), st.integers(1, 10**7)))
def test_window_is_half_open_and_never_reaches_t(t: int, w: int, i: int | None) -> None:
    start, end = window_bounds(t, w, i)
    assert end - start == w
    assert end <= t
    if i is None:
        assert end == t
    else:
        assert end % i == 0 and t - end < i


@given(st.integers(-10**15, 10**15), st.integers(1, 10**7))
def test_tile_start_contains_event(event: int, tile: int) -> None:
    start = tile_start(event, tile)
    assert start <= event < start + tile and start % tile == 0


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        window_bounds(0, 0, None)
    with pytest.raises(ValueError):
        tile_start(0, 0)


@pytest.mark.parametrize(("ms", "text"), [(86_400_000, "1d"), (3_600_000, "1h"), (600_000, "10m"),
                                           (5_400_000, "1h30m"), (1500, "1s500ms")])
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_retention_covers_window_delay_and_interval() -> None:
    assert retention_ms(100, 20, None) == 120
    assert retention_ms(100, 20, 10) == 130
