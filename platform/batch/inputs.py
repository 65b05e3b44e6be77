"""A batch view's inputs for a time range: one frame per source, in the transformation's order."""

from __future__ import annotations

import pandas as pd

from featurebus.platform.batch.compute import table_frame
from featurebus.platform.batch.sources import read_batch_source, read_stream_history
from featurebus.schemas.errors import DefinitionError
from featurebus.schemas.specs import BatchFeatureViewSpec, WorkspaceSpec

__all__ = ["computed_per_window", "read_inputs"]


def computed_per_window(view: BatchFeatureViewSpec) -> bool:
    """Whether the view is computed one materialization window (batch_schedule period) at a time,
    in jobs and ad hoc alike: with ``incremental_backfills`` (each run's transformation sees its
    own period as context, Tecton's meaning), or when a source's ``select_range`` moves with the
    window (so a backfill reads what the scheduled runs would have read)."""
    return view.incremental_backfills or any(r.relative for r in view.source_ranges)


def read_inputs(
    spec: WorkspaceSpec, view: BatchFeatureViewSpec, lo_ms: int, hi_ms: int, window: tuple[int, int] | None = None
) -> list[pd.DataFrame]:
    """Each source's rows in ``[lo_ms, hi_ms)``, all of them for ``source.unfiltered()``, and for
    ``source.select_range(...)`` its range evaluated for the materialization ``window`` (the
    ``[start, end)`` being computed; default ``[lo_ms, hi_ms)``), as Tecton evaluates it."""
    batch = {s.name: s for s in spec.batch_sources}
    stream = {s.name: s for s in spec.stream_sources}
    ranges = {r.source: r for r in view.source_ranges}
    window_start, window_end = window or (lo_ms, hi_ms)
    frames = []
    for name in view.sources:
        lo: int | None
        hi: int | None
        if name in ranges:
            lo, hi = ranges[name].resolve(window_start, window_end)
        elif name in view.unfiltered_sources:
            lo, hi = None, None
        else:
            lo, hi = lo_ms, hi_ms
        if name in batch:
            table = read_batch_source(batch[name], lo, hi, view.timestamp_field)
        elif name in stream:
            table = read_stream_history(stream[name], lo, hi)
        else:
            raise DefinitionError(
                f"batch feature view {view.name!r} reads source {name!r}, which workspace "
                f"{spec.name!r} does not have; re-apply the repository"
            )
        frames.append(table_frame(table))
    return frames
