"""Backfilling a stream view's history from its source's ``batch_config``: what its jobs run.

``backfill_stream_view`` computes the view over ``[start, end)`` clamped to its history
``[feature_start_time, T_cut)`` (``streams.cutover``): it reads the files chunk by chunk (whole
tiles about a day long), runs the view's own transformation on the rows exactly as the stream
worker runs it on records (``streams.transform.Transformation``, pandas or python mode), folds
them into tiles with the engine's tile builder (``streams.tiles.batch_tiles``) and publishes them
on the view's feature topic under the batch shard (``platform/batch/online.py``). Serving merges a
tile's shards, so a tile the cut-over splits is the batch part plus the stream's parts: every
event counted once.

Retrying a killed job counts nothing twice: a record key is ``(entity, tile start, batch shard)``
and its value the tile's partials over *all* of that tile's history, never an increment, so a
re-run writes the same keys with the same values and compaction keeps one. That needs every tile
to be computed by one chunk, whole: chunk and job bounds are tile multiples (``batch_schedule``
is validated to be a multiple of the aggregation interval), except ``T_cut``, which only the last
chunk of the history reaches.

A view whose source is ``stream_source.select_range(...)`` reads, per chunk, only the rows the
range selects for the chunk's materialization window (``streams.cutover.history_read_range``);
chunks are then ``batch_schedule`` periods, so no chunk straddles two windows.

Offline, training sets read the same files under the same rule (``platform/training/events.py``),
so they need no copy of these tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from featurebus.platform.batch.compute import table_frame
from featurebus.platform.batch.online import publish_tiles
from featurebus.platform.batch.sources import read_stream_history
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import StreamFeatureViewSpec, WorkspaceSpec
from featurebus.streams.cutover import history_mask, history_range, history_read_range, range_window_ms
from featurebus.streams.tiles import CompiledView, TileUpdate, batch_tiles
from featurebus.streams.transform import Transformation, view_input_frame

__all__ = ["StreamBackfillResult", "backfill_stream_view", "history_chunk_tiles", "history_chunks", "history_tiles"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class StreamBackfillResult:
    view: str
    start_ms: int  # the range actually backfilled: the request within [feature_start, T_cut)
    end_ms: int
    rows_read: int  # batch rows read from the files
    tiles_written: int
    cancelled: bool = False


def history_chunks(view: StreamFeatureViewSpec, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` within the view's history, in chunks of whole tiles about a day long,
    or one ``batch_schedule`` period each when the source's range moves with the window (the
    first starts at a tile boundary; only ``T_cut`` may end one inside a tile)."""
    bounds = history_range(view)
    if bounds is None:
        return []
    tile_ms = view.tile_ms
    lo = max(start_ms, bounds[0]) // tile_ms * tile_ms
    hi = min(end_ms, bounds[1])
    # batch_schedule is validated to be whole tiles, so period chunks are whole tiles too.
    step = range_window_ms(view) or tile_ms * max(1, -(-_DAY_MS // tile_ms))
    chunks = []
    while lo < hi:
        chunk_hi = min(hi, (lo // step + 1) * step)
        chunks.append((lo, chunk_hi))
        lo = chunk_hi
    return chunks


def history_tiles(compiled: CompiledView, table: pa.Table, lo_ms: int, hi_ms: int) -> list[TileUpdate]:
    """Tiles of the batch rows ``table`` (the source's files over ``[lo_ms, hi_ms)``): transformed
    as the stream worker transforms records, kept where the history's rule counts them."""
    view = compiled.spec
    if not table.num_rows:
        return []
    transformed = Transformation(view.transformation).apply(table_frame(table))
    rows, ts_ms = view_input_frame(view, transformed)
    keep = history_mask(view, ts_ms, lo_ms, hi_ms)
    if not keep.all():
        rows, ts_ms = rows.loc[keep].reset_index(drop=True), ts_ms[keep]
    # In time order (stable: file order among equal times), as batch views fold their rows.
    order = np.argsort(ts_ms, kind="stable")
    return batch_tiles(compiled, rows.iloc[order].reset_index(drop=True), ts_ms[order])


def history_chunk_tiles(
    compiled: CompiledView, read: Callable[[int, int], pa.Table], lo_ms: int, hi_ms: int
) -> tuple[int, list[TileUpdate]]:
    """Rows read and tiles of chunk ``[lo_ms, hi_ms)`` (one of ``history_chunks``): ``read(a, b)``
    gives the files' rows with source time in ``[a, b)``, asked for the rows the source's range
    selects for the chunk's window only."""
    selected = history_read_range(compiled.spec, lo_ms, hi_ms)
    if selected is None:
        return 0, []
    table = read(*selected)
    return table.num_rows, history_tiles(compiled, table, lo_ms, hi_ms)


def backfill_stream_view(
    bootstrap: str,
    spec: WorkspaceSpec,
    view_name: str,
    start_ms: int,
    end_ms: int,
    *,
    progress: Callable[[float], None] = lambda f: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> StreamBackfillResult:
    """Publish stream view ``view_name``'s tiles of its batch history within ``[start_ms, end_ms)``."""
    view = spec.view(view_name)
    if not spec.live:
        raise InvalidRequestError(
            f"workspace {spec.name!r} is a development workspace, which is never materialized; "
            "backfill in a live workspace (`featurebus workspace create NAME --live`)"
        )
    bounds = history_range(view)
    if bounds is None:
        raise InvalidRequestError(
            f"stream feature view {view_name!r} has no batch history to backfill: it needs feature_start_time "
            "and a source with batch_config (and must have been applied, which fixes its cut-over)"
        )
    if not view.online:
        raise InvalidRequestError(
            f"stream feature view {view_name!r} has online=False: its history is read from the files by training "
            "sets; set online=True and re-apply to serve it"
        )
    source = spec.source(view.source)
    compiled = CompiledView.compile(view, list(spec.join_key_dtypes(view)))
    chunks = history_chunks(view, start_ms, end_ms)
    rows_read = tiles_written = 0
    progress(0.0)
    for done, (lo, hi) in enumerate(chunks):
        if cancelled():
            return StreamBackfillResult(view_name, chunks[0][0], chunks[-1][1], rows_read, tiles_written, True)
        read, tiles = history_chunk_tiles(compiled, lambda a, b: read_stream_history(source, a, b), lo, hi)
        rows_read += read
        tiles_written += publish_tiles(bootstrap, spec.name, view_name, tiles)
        progress((done + 1) / len(chunks))
    first, last = (chunks[0][0], chunks[-1][1]) if chunks else (bounds[0], bounds[0])
    return StreamBackfillResult(view_name, first, last, rows_read, tiles_written)
