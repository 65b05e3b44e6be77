"""Computing a batch feature view over a time range. Pure: frames in, rows or tiles out, no I/O.

A materialization of ``[start, end)`` runs the view's transformation on its sources' rows (read
from ``source_range``: the range widened back by the view's longest window, so a transformation
that looks back sees what it needs), keeps the output rows whose timestamp is in ``[start, end)``
(and not before ``feature_start_time``) and, for aggregations, turns them into tiles with the
stream engine's own ``streams.tiles.batch_tiles``: one implementation of every aggregation.
Aggregation ranges are aligned outward to whole tiles so each run writes only complete tiles.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.batch.sources import ms_to_datetime
from featurebus.schemas.batch_context import FilterContext, MaterializationContext, materialization_context
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.specs import BatchFeatureViewSpec, FieldSpec
from featurebus.streams.records import decode_json_records
from featurebus.streams.tiles import CompiledView, TileUpdate, batch_tiles
from featurebus.streams.transform import TransformationError, load_function, view_input_frame

__all__ = [
    "BATCH_SHARD",
    "BatchTransformation",
    "aligned_range",
    "source_range",
    "output_columns",
    "view_rows",
    "view_tiles",
    "compute_rows",
    "table_frame",
]

# The tile shard every batch view's tiles carry (the last u16). Stream shards are
# topic index * 1024 + partition and never reach it, so serving, which merges a tile's shards,
# can never mix a batch tile with a stream one; defined here once.
BATCH_SHARD = 0xFFFF


def _without_defaults(code: str, function_name: str) -> ast.Module:
    """The code with the function's parameter defaults replaced by None: the context argument's
    default (``materialization_context()``, however the user imported it) is never evaluated,
    since featurebus passes the context itself."""
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            node.args.defaults = [ast.Constant(None) for _ in node.args.defaults]
            node.args.kw_defaults = [None if d is None else ast.Constant(None) for d in node.args.kw_defaults]
    return ast.fix_missing_locations(tree)


class BatchTransformation:
    """A batch view's transformation compiled from its spec's source code (never a pickle).

    Its namespace also provides ``materialization_context`` and ``FilterContext`` for code that
    uses them in its body."""

    def __init__(self, view: BatchFeatureViewSpec) -> None:
        spec = view.transformation
        self._function = load_function(
            _without_defaults(spec.code, spec.function_name),
            spec.function_name,
            f"transformation {spec.function_name!r}",
            {"materialization_context": materialization_context, "FilterContext": FilterContext},
        )
        self._view = view

    def apply(self, inputs: Sequence[pd.DataFrame], context: MaterializationContext) -> pd.DataFrame:
        kwargs = {} if self._view.context_parameter is None else {self._view.context_parameter: context}
        name = self._view.transformation.function_name
        try:
            result = self._function(*inputs, **kwargs)
        except Exception as exc:
            raise TransformationError(
                f"batch feature view {self._view.name!r}: transformation {name!r} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, pd.DataFrame):
            raise TransformationError(
                f"batch feature view {self._view.name!r}: transformation {name!r} returned "
                f"{type(result).__name__}; return a pandas DataFrame"
            )
        return result


def aligned_range(view: BatchFeatureViewSpec, start_ms: int, end_ms: int) -> tuple[int, int]:
    """``[start, end)`` widened to whole tiles (aggregations) so no tile is written half-full."""
    if end_ms <= start_ms:
        raise FeaturebusError(f"batch feature view {view.name!r}: the range end must be after its start")
    tile_ms = view.aggregation_interval_ms or 1
    return (start_ms // tile_ms) * tile_ms, -(-end_ms // tile_ms) * tile_ms


def source_range(view: BatchFeatureViewSpec, start_ms: int, end_ms: int) -> tuple[int, int]:
    """What the sources are read for: back by the view's longest window for aggregations."""
    reach = view.as_view_spec().max_reach_ms if view.aggregation_interval_ms is not None else 0
    return start_ms - reach, end_ms


def table_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as the frame transformations get: timestamps as UTC datetimes, nested
    values as Python lists and dicts (what stream transformations see too)."""
    frame: pd.DataFrame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_map(field.type):
            frame[field.name] = pd.Series(
                [None if v is None else dict(v) for v in table.column(field.name).to_pylist()], dtype=object
            )
        elif pa.types.is_list(field.type) or pa.types.is_struct(field.type):
            frame[field.name] = table.column(field.name).to_pylist()
    return frame


def output_columns(view: BatchFeatureViewSpec, inputs: Sequence[Sequence[FieldSpec]]) -> set[str] | None:
    """The transformation's output columns, from a run on empty frames of its inputs' columns;
    None when it cannot run on no rows (materialization then reports a missing column)."""
    frames = []
    for fields in inputs:
        stamps = [f.name for f in fields if f.dtype == "timestamp"]
        frames.append(
            decode_json_records([], list(fields), stamps[0] if stamps else "").frame
            if stamps
            else pd.DataFrame({f.name: pd.Series(dtype=object) for f in fields})
        )
    try:
        result = BatchTransformation(view).apply(frames, MaterializationContext())
    except FeaturebusError:
        return None
    return {str(c) for c in result.columns}


def view_rows(
    view: BatchFeatureViewSpec, transformed: pd.DataFrame, start_ms: int, end_ms: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The view's output rows (join keys, timestamp, feature columns) with a timestamp in
    ``[start_ms, end_ms)`` and not before ``feature_start_time``, sorted by time (stable), and
    their times in ms. Rows with a null join key or timestamp belong to no entity: dropped."""
    frame, ts_ms = view_input_frame(view.as_view_spec(), transformed)
    lo = start_ms if view.feature_start_ms is None else max(start_ms, view.feature_start_ms)
    keep = (ts_ms >= lo) & (ts_ms < end_ms)
    frame, ts_ms = frame.loc[keep], ts_ms[keep]
    order = np.argsort(ts_ms, kind="stable")
    return frame.iloc[order].reset_index(drop=True), ts_ms[order]


def view_tiles(compiled: CompiledView, rows: pd.DataFrame, ts_ms: np.ndarray) -> list[TileUpdate]:
    """Tiles of the rows, one per touched (entity, tile start): the stream engine's tile builder."""
    return batch_tiles(compiled, rows, ts_ms)


def compute_rows(
    view: BatchFeatureViewSpec, inputs: Sequence[pd.DataFrame], start_ms: int, end_ms: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Run the transformation on its inputs (already read for ``source_range``) and keep the
    output rows of ``[start_ms, end_ms)`` (``view_rows``)."""
    lo, hi = source_range(view, start_ms, end_ms)
    context = MaterializationContext(
        ms_to_datetime(lo), ms_to_datetime(hi), timedelta(milliseconds=view.batch_schedule_ms)
    )
    transformed = BatchTransformation(view).apply(inputs, context)
    return view_rows(view, transformed, start_ms, end_ms)
