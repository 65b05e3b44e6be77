"""A workspace whose one view uses every window kind: offsets, a lifetime, a series; with functions
that have a SQL shortcut offline (count, sum, mean) and some that do not (min, max)."""

from __future__ import annotations

import dataclasses

from featurebus.schemas.specs import AggregationSpec, FeatureSelectionSpec, FeatureServiceSpec, WorkspaceSpec
from tests.support.specs import HOUR, MINUTE, spending_workspace

VIEW = "user_spending"


def _aggregations() -> tuple[AggregationSpec, ...]:
    def agg(name: str, fn: str, **window: int | str) -> AggregationSpec:
        out = "int64" if fn == "count" else "float64"
        if window.get("window_kind") == "series":
            out = f"array<{out}>"
        return AggregationSpec(
            f"amount_{fn}_{name}", fn, "amount", "float64", int(window.pop("window_ms", 0)), out, **window
        )  # type: ignore[arg-type]

    return (
        agg("1h", "sum", window_ms=HOUR),
        # min and max have no SQL shortcut offline (platform/training/event_pairs.py): every window
        # kind goes through that path too. Order-independent, so shards may tie on event time.
        *(agg("30m_offset_1h", fn, window_ms=30 * MINUTE, offset_ms=-HOUR) for fn in ("count", "sum", "min")),
        *(agg("lifetime", fn, window_kind="lifetime") for fn in ("count", "sum", "mean", "max")),
        # 40-minute windows every 10 minutes from 2 h to 10 min before E: eight overlapping windows.
        *(
            agg(
                "40m_series",
                fn,
                window_kind="series",
                window_ms=40 * MINUTE,
                series_start_ms=-2 * HOUR,
                series_end_ms=-10 * MINUTE,
                series_step_ms=10 * MINUTE,
            )
            for fn in ("count", "mean", "max")
        ),
    )


def windowed_workspace(
    base_ms: int,
    interval_ms: int | None = None,
    watermark_delay_ms: int = 30 * MINUTE,
    leading_edge: str = "wall_clock_time",
) -> WorkspaceSpec:
    """``spending_workspace`` with the window kinds; the lifetime starts 20 minutes after ``base_ms``."""
    spec = spending_workspace(interval_ms=interval_ms, watermark_delay_ms=watermark_delay_ms)
    aggregations = _aggregations()
    view = dataclasses.replace(
        spec.stream_feature_views[0],
        aggregations=aggregations,
        lifetime_start_ms=base_ms + 20 * MINUTE,
        aggregation_leading_edge=leading_edge,
    )
    service = FeatureServiceSpec("spending", (FeatureSelectionSpec(VIEW, tuple(a.name for a in aggregations)),))
    return dataclasses.replace(spec, stream_feature_views=(view,), feature_services=(service,))
