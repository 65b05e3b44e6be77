"""What training sets read for batch views and for stream sources' history files.

A batch view's rows come from the offline store when the view was materialized there (what
serving was given too), and are computed from its sources on the fly otherwise: a development
workspace, or a view never materialized (Tecton's ad hoc ``get_features_for_events``). A view
with ``incremental_backfills``, or whose sources' ``select_range`` moves with the materialization
window, is computed one window at a time, the windows its materialization jobs run, so ad hoc
rows equal materialized ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurebus.platform.batch.compute import compute_rows, source_range, table_frame
from featurebus.platform.batch.inputs import computed_per_window, read_inputs
from featurebus.platform.batch.materialize import materialization_chunks
from featurebus.platform.batch.offline import list_view_parts, read_rows
from featurebus.platform.batch.sources import read_stream_history
from featurebus.platform.offline.locations import OfflineLocations
from featurebus.platform.offline.store import list_parts
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.cutover import history_pieces, history_read_range
from featurebus.streams.transform import Transformation, view_input_frame

__all__ = ["batch_view_rows", "history_rows", "oldest_store_event_ms"]

Rows = tuple[pd.DataFrame, np.ndarray]  # a view's input columns, and their times in ms


def _sorted(frame: pd.DataFrame, ts_ms: np.ndarray) -> Rows:
    order = np.argsort(ts_ms, kind="stable")
    return frame.iloc[order].reset_index(drop=True), ts_ms[order]


def batch_view_rows(
    spec: WorkspaceSpec, view: BatchFeatureViewSpec, root: Path, offline_data: OfflineLocations | None
) -> Callable[[int, int], Rows]:
    """``(lo_ms, hi_ms) -> rows`` of the view with a timestamp in the range, sorted by time."""
    # A development workspace (offline_data set) is never materialized: always computed.
    materialized = offline_data is None and bool(list_view_parts(root, spec.name, view.name))
    as_view = view.as_view_spec()

    def computed(lo_ms: int, hi_ms: int) -> Rows:
        return compute_rows(
            view, read_inputs(spec, view, *source_range(view, lo_ms, hi_ms), (lo_ms, hi_ms)), lo_ms, hi_ms
        )

    def rows(lo_ms: int, hi_ms: int) -> Rows:
        if not materialized:
            if not computed_per_window(view):
                return computed(lo_ms, hi_ms)
            parts = [computed(lo, hi) for lo, hi in materialization_chunks(view, lo_ms, hi_ms)]
            if not parts:
                return computed(lo_ms, hi_ms)
            return (pd.concat([p[0] for p in parts], ignore_index=True), np.concatenate([p[1] for p in parts]))
        table = read_rows(root, spec.name, view.name, view.timestamp_field, lo_ms, hi_ms)
        assert table is not None  # materialized: the view has files
        return _sorted(*view_input_frame(as_view, table_frame(table)))

    return rows


def history_rows(source: StreamSourceSpec, view: StreamFeatureViewSpec, lo_ms: int, hi_ms: int) -> list[Rows]:
    """A stream view's input rows from its source's ``batch_config`` files in ``[lo_ms, hi_ms)``,
    transformed by the view's own transformation (as the stream worker would have). A
    ``select_range`` on the source narrows each window's read as the backfill jobs narrow it
    (``streams.cutover.history_read_range``)."""
    transformation = Transformation(view.transformation)
    pieces = []
    for piece_lo, piece_hi in history_pieces(view, lo_ms, hi_ms):
        selected = history_read_range(view, piece_lo, piece_hi)
        if selected is None:
            continue
        table = read_stream_history(source, *selected)
        if not table.num_rows:
            continue
        frame, ts_ms = view_input_frame(view, transformation.apply(table_frame(table)))
        # The view's own event times decide, as online (streams/cutover.py); never before feature_start_time.
        keep = (ts_ms >= piece_lo) & (ts_ms < piece_hi)
        if view.feature_start_ms is not None:
            keep &= ts_ms >= view.feature_start_ms
        if not keep.all():
            frame, ts_ms = frame.loc[keep].reset_index(drop=True), ts_ms[keep]
        if len(frame):
            pieces.append(_sorted(frame, ts_ms))
    return pieces


def oldest_store_event_ms(root: Path, locations: tuple[tuple[str, str], ...], source: StreamSourceSpec) -> int | None:
    """The earliest event time the offline store holds for the source (None: it holds none).
    Files are partitioned by date, so only the earliest date's files are read."""
    parts = [p for workspace, name in locations for p in list_parts(root, workspace, name)]
    if not parts:
        return None
    first = min(p.date for p in parts)
    field = source.kafka.timestamp_field
    oldest = None
    for part in (p for p in parts if p.date == first):
        column = pq.read_table(part.path, columns=[field]).column(field)
        low = pc.min(column.cast("int64")).as_py() if len(column) else None
        if low is not None and (oldest is None or low < oldest):
            oldest = int(low)
    return oldest
