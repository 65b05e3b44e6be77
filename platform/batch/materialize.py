"""Materializing a batch feature view over a time range: the one entry point jobs call.

``materialize_view`` reads the view's sources, runs its transformation (``compute``), writes the
output rows to the offline store (``offline``) and the tiles to the view's feature topic
(``online``). The range is processed in chunks of whole tiles about a day long (a batch_schedule
period with ``incremental_backfills``), so memory is bounded by a chunk, ``progress`` advances per chunk and ``cancelled`` is honoured between chunks.
Re-running a range rewrites the same files and the same record keys: it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.batch.compute import aligned_range, compute_rows, source_range, table_frame, view_tiles
from featurebus.platform.batch.inputs import computed_per_window, read_inputs
from featurebus.platform.batch.offline import read_rows, replace_range
from featurebus.platform.batch.online import publish_tiles
from featurebus.platform.offline.store import open_store
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import BatchFeatureViewSpec, WorkspaceSpec
from featurebus.schemas.time import from_epoch_ms, to_epoch_ms
from featurebus.streams.tiles import CompiledView
from featurebus.streams.transform import view_input_frame

__all__ = ["MaterializationResult", "materialize_view", "materialization_chunks", "compiled_view", "rows_table"]

_DAY_MS = 86_400_000
_TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class MaterializationResult:
    view: str
    start: datetime  # the range actually materialized: the request widened to whole tiles
    end: datetime
    rows_written: int  # output rows written to the offline store
    tiles_written: int  # tiles published to the feature topic
    offline_files: int
    cancelled: bool = False  # stopped between chunks by ``cancelled()``; what was written stays


def compiled_view(spec: WorkspaceSpec, view: BatchFeatureViewSpec) -> CompiledView:
    """The batch view as the tile builder and serving see it, with its join keys' types."""
    return CompiledView.compile(view.as_view_spec(), list(spec.join_key_dtypes(view)))


def rows_table(view: BatchFeatureViewSpec, rows: pd.DataFrame, ts_ms: np.ndarray) -> pa.Table:
    """Output rows as written offline: their columns, the timestamp as UTC milliseconds."""
    table = pa.Table.from_pandas(rows.drop(columns=[view.timestamp_field]), preserve_index=False)
    return table.append_column(view.timestamp_field, pa.array(ts_ms, type=pa.int64()).cast(_TIMESTAMP))


def _stale_tiles(
    compiled: CompiledView, previous: pa.Table | None, current: set[tuple[bytes, int]]
) -> list[tuple[bytes, int]]:
    if previous is None or not previous.num_rows:
        return []
    rows, ts_ms = view_input_frame(compiled.spec, table_frame(previous))
    return sorted({(t.entity_key, t.tile_start_ms) for t in view_tiles(compiled, rows, ts_ms)} - current)


def materialization_chunks(view: BatchFeatureViewSpec, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    tile_ms = view.aggregation_interval_ms or 1
    # One run per batch_schedule period where a run's window matters (``computed_per_window``);
    # otherwise about a day at a time, to bound memory.
    period = view.batch_schedule_ms if computed_per_window(view) else _DAY_MS
    step = tile_ms * max(1, -(-period // tile_ms))  # whole tiles
    bounds = []
    lo = start_ms
    while lo < end_ms:
        hi = min(end_ms, (lo // step + 1) * step)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def materialize_view(
    bootstrap: str,
    data_dir: Path,
    spec: WorkspaceSpec,
    view: str,
    start: datetime,
    end: datetime,
    *,
    online: bool,
    offline: bool,
    progress: Callable[[float], None] = lambda f: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> MaterializationResult:
    """Compute batch view ``view`` of ``spec`` over ``[start, end)`` and write it offline (to the
    offline store at ``data_dir``, what training sets read: ``<home>/offline``) and/or online (to
    its feature topic on ``bootstrap``). Aggregation ranges widen to whole aggregation intervals.
    Idempotent: running a range again writes the same files and record keys."""
    view_spec = spec.batch_view(view)
    if not spec.live:
        raise InvalidRequestError(
            f"workspace {spec.name!r} is a development workspace, which is never "
            "materialized; materialize in a live workspace (`featurebus workspace create "
            "NAME --live`), or compute ad hoc with get_features_for_events"
        )
    if not online and not offline:
        raise InvalidRequestError("materialize at least one of online or offline")
    if online and not view_spec.online:
        raise InvalidRequestError(
            f"batch feature view {view!r} has online=False; set online=True and re-apply, or materialize offline only"
        )
    if offline and not view_spec.offline:
        raise InvalidRequestError(
            f"batch feature view {view!r} has offline=False; set offline=True and re-apply, or materialize online only"
        )
    start_ms, end_ms = aligned_range(view_spec, to_epoch_ms(start), to_epoch_ms(end))
    compiled = compiled_view(spec, view_spec)
    if offline:
        open_store(Path(data_dir), create=True)
    rows_written = tiles_written = files = 0
    chunks = materialization_chunks(view_spec, start_ms, end_ms)
    progress(0.0)
    for done, (lo, hi) in enumerate(chunks):
        if cancelled():
            return MaterializationResult(
                view, from_epoch_ms(start_ms), from_epoch_ms(end_ms), rows_written, tiles_written, files, cancelled=True
            )
        read_lo, read_hi = source_range(view_spec, lo, hi)
        rows, ts_ms = compute_rows(view_spec, read_inputs(spec, view_spec, read_lo, read_hi, (lo, hi)), lo, hi)
        # What an earlier run of this range wrote (known when it was materialized offline): its
        # tiles that this run does not rewrite are deleted online, so a re-run after the source
        # changed leaves no stale tile behind.
        previous = (
            read_rows(Path(data_dir), spec.name, view, view_spec.timestamp_field, lo, hi)
            if online and offline
            else None
        )
        if offline:
            files += len(
                replace_range(
                    Path(data_dir),
                    spec.name,
                    view,
                    view_spec.timestamp_field,
                    lo,
                    hi,
                    rows_table(view_spec, rows, ts_ms),
                )
            )
            rows_written += len(rows)
        if online:
            tiles = view_tiles(compiled, rows, ts_ms)
            removed = _stale_tiles(compiled, previous, {(t.entity_key, t.tile_start_ms) for t in tiles})
            tiles_written += publish_tiles(bootstrap, spec.name, view, tiles, removed)
        progress((done + 1) / len(chunks))
    return MaterializationResult(
        view, from_epoch_ms(start_ms), from_epoch_ms(end_ms), rows_written, tiles_written, files
    )
