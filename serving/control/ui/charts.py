"""Server-side SVG line charts: a few dozen points per panel do not need a JS chart library, and
an SVG string renders with no script, prints, and is testable as text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["bar_chart", "line_chart", "points_of"]


def points_of(data: Any) -> list[tuple[float, float]]:
    """(time, value) pairs from a metric-history answer: a list of ``[t, v]`` pairs or of objects
    with a time (``t``/``time``/``t_ms``/``timeMs``) and a ``value``, or ``{"points": [...]}``."""
    if isinstance(data, dict):
        data = data.get("points", data.get("series", []))
    points: list[tuple[float, float]] = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            t, v = item
        elif isinstance(item, dict):
            t = next((item[k] for k in ("t", "time", "t_ms", "timeMs", "time_ms") if k in item), None)
            v = item.get("value", item.get("v"))
        else:
            continue
        if isinstance(t, int | float) and isinstance(v, int | float):
            points.append((float(t), float(v)))
    return sorted(points)


def line_chart(points: Sequence[tuple[float, float]], label: str, width: int = 420, height: int = 120) -> Markup:
    if not points:
        return Markup('<p class="empty">no data yet</p>')
    t0, t1 = points[0][0], points[-1][0]
    low, high = min(v for _, v in points), max(v for _, v in points)
    span_t, span_v = (t1 - t0) or 1.0, (high - low) or 1.0
    pad = 4
    coords = " ".join(
        f"{pad + (t - t0) / span_t * (width - 2 * pad):.1f},{height - pad - (v - low) / span_v * (height - 2 * pad):.1f}"
        for t, v in points
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        f'points="{coords}"/><text x="{pad}" y="12">{escape(label)}: max {high:g}, last {points[-1][1]:g}</text></svg>'
    )


def bar_chart(
    edges: Sequence[float], counts: Sequence[float], label: str, width: int = 420, height: int = 120
) -> Markup:
    """A histogram: ``counts[i]`` rows between ``edges[i]`` and ``edges[i + 1]``."""
    if len(edges) != len(counts) + 1 or not counts:
        return Markup('<p class="empty">no histogram</p>')
    pad, top = 4, 16
    high = max(counts) or 1.0
    bar = (width - 2 * pad) / len(counts)
    bars = "".join(
        f'<rect x="{pad + i * bar:.1f}" y="{height - pad - c / high * (height - pad - top):.1f}" '
        f'width="{max(bar - 1, 1):.1f}" height="{c / high * (height - pad - top):.1f}">'
        f"<title>{edges[i]:g} – {edges[i + 1]:g}: {c:g}</title></rect>"
        for i, c in enumerate(counts)
    )
    return Markup(
        f'<svg class="chart histogram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><g fill="currentColor">{bars}</g>'
        f'<text x="{pad}" y="12">{escape(label)}: {edges[0]:g} to {edges[-1]:g}</text></svg>'
    )
