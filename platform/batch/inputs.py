"""A batch view's inputs for a time range: one frame per source, in the transformation's order."""

from __future__ import annotations

import pandas as pd

from featurebus.platform.batch.compute import table_frame
from featurebus.platform.batch.sources import read_batch_source, read_stream_history
from featurebus.schemas.errors import DefinitionError
from featurebus.schemas.specs import BatchFeatureViewSpec, WorkspaceSpec

__all__ = ["read_inputs"]


def read_inputs(spec: WorkspaceSpec, view: BatchFeatureViewSpec, lo_ms: int, hi_ms: int) -> list[pd.DataFrame]:
    """Each source's rows in ``[lo_ms, hi_ms)``, or all of them for ``source.unfiltered()``."""
    batch = {s.name: s for s in spec.batch_sources}
    stream = {s.name: s for s in spec.stream_sources}
    frames = []
    for name in view.sources:
        lo, hi = (None, None) if name in view.unfiltered_sources else (lo_ms, hi_ms)
        if name in batch:
            table = read_batch_source(batch[name], lo, hi, view.timestamp_field)
        elif name in stream:
            table = read_stream_history(stream[name], lo, hi)
        else:
            raise DefinitionError(f"batch feature view {view.name!r} reads source {name!r}, which workspace "
                                  f"{spec.name!r} does not have; re-apply the repository")
        frames.append(table_frame(table))
    return frames
