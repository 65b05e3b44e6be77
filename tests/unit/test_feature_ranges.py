"""``get_features_in_range`` evaluates a view only at its change points: between two consecutive
points every feature value is constant. Checked against the brute-force oracle at every
millisecond of small random histories."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.training.ranges import change_points
from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec
from tests.support.oracle import Event, feature_value
from tests.support.specs import spending_workspace

FUNCTIONS = ("count", "sum", "max", "last")


def _view(windows: list[int], interval: int | None, attribute_ttl: int | None) -> StreamFeatureViewSpec:
    view = spending_workspace().stream_feature_views[0]
    aggregations = [
        AggregationSpec(f"a{i}_{fn}", fn, "amount", "float64", w, "float64")
        for i, w in enumerate(windows)
        for fn in FUNCTIONS
    ]
    if attribute_ttl is not None:
        aggregations.append(
            AggregationSpec("amount", "last", "amount", "float64", attribute_ttl, "float64", attribute=True)
        )
    return dataclasses.replace(view, aggregations=tuple(aggregations), aggregation_interval_ms=interval)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 120), min_size=0, max_size=8),
    windows=st.lists(st.integers(1, 40), min_size=1, max_size=2),
    interval=st.sampled_from([None, 5, 10]),
    ttl=st.one_of(st.none(), st.integers(1, 30)),
    start=st.integers(0, 60),
    length=st.integers(1, 100),
)
def test_values_are_constant_between_change_points(
    times: list[int], windows: list[int], interval: int | None, ttl: int | None, start: int, length: int
) -> None:
    if interval is not None:
        windows = [max(1, w // interval) * interval for w in windows]  # windows are multiples of the interval
    view = _view(windows, interval, ttl)
    end = start + length
    events = [Event(("u",), t, float(i)) for i, t in enumerate(times)]
    points = change_points(view, np.array(times, dtype=np.int64), start, end)
    assert points[0] == start and np.all(np.diff(points) > 0) and points[-1] < end

    def values(t: int) -> list[object]:
        row: list[object] = []
        for a in view.aggregations:
            effective_interval = None if a.attribute or interval is None else interval
            row.append(feature_value(events, ("u",), t, a.function, a.window_ms, effective_interval))
        return row

    current = values(start)
    index = 0
    for t in range(start, end):
        if index + 1 < len(points) and t == points[index + 1]:
            index += 1
            current = values(t)
        assert values(t) == current, (t, points.tolist())
