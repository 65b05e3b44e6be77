"""Training-set values of the aggregations without a SQL shortcut (min, max, last, first/last(n),
distinct, variance family, sketches, Attribute), computed with the stream engine's own aggregators.

DuckDB range-joins spine rows to the events each row's windows can see, producing
``(spine row, event)`` pairs ordered by row then arrival; the pairs stream out in chunks (memory
stays bounded by the chunk, not the join), and for each aggregation the events inside that
aggregation's window go through ``aggregator.from_groups`` with the spine row as the group, the
same call the stream engine makes per tile. A row split over two chunks merges its two partials,
as tiles merge. So online and offline agree by construction, not by two implementations.

Like the SQL path in ``training``, both sides carry a time bucket as wide as the widest row range,
so the equi-join pairs each row only with events near its time (at most two buckets per row).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.training.event_columns import ROW, SEQ, TS
from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec
from featurebus.streams.aggregations import Aggregator, aggregator_of, group_partials, input_column

__all__ = ["PAIR_CHUNK_ROWS", "aggregate_pairs", "feature_array"]

PAIR_CHUNK_ROWS = 500_000


def aggregate_pairs(
    view: StreamFeatureViewSpec,
    aggregations: Sequence[AggregationSpec],
    spine_keys: dict[str, pa.Array],
    windows: Sequence[tuple[np.ndarray, np.ndarray]],
    events: pa.Table | None,
    input_aliases: dict[str, str],
    chunk_rows: int | None = None,
) -> list[list[Any]]:
    """Per aggregation, the value at every spine row.

    ``spine_keys`` are the spine's key columns and ``events`` the view's events, both in the
    schema of ``event_columns.EventColumns`` (``input_aliases``: its input column names);
    ``windows[j]`` is the window ``[start, end)`` of ``aggregations[j]`` per row (an aggregation
    may appear once per window of a series).
    """
    rows = len(windows[0][1]) if windows else 0
    aggregators = [aggregator_of(a) for a in aggregations]
    partials: list[list[Any]] = [[None] * rows for _ in aggregations]
    touched = np.zeros(rows, dtype=bool)
    if events is not None and events.num_rows and rows:
        starts = [start for start, _ in windows]
        ends = [end for _, end in windows]
        lo = np.minimum.reduce(starts)
        hi = np.maximum.reduce(list(ends))
        for chunk in _pairs(view, spine_keys, lo, hi, events, input_aliases, chunk_rows or PAIR_CHUNK_ROWS):
            _fold(chunk, aggregations, aggregators, starts, ends, input_aliases, partials, touched)
    return [
        [agg.result(p if t else agg.initialize()) for p, t in zip(column, touched.tolist(), strict=True)]
        for agg, column in zip(aggregators, partials, strict=True)
    ]


def _pairs(
    view: StreamFeatureViewSpec,
    spine_keys: dict[str, pa.Array],
    lo: np.ndarray,
    hi: np.ndarray,
    events: pa.Table,
    input_aliases: dict[str, str],
    chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    bucket_ms = max(int((hi - lo).max()), 1)
    first = np.floor_divide(lo, bucket_ms)
    second = np.floor_divide(hi - 1, bucket_ms)  # first or first + 1
    straddling = np.flatnonzero(second != first)
    take = pa.array(np.concatenate([np.arange(len(lo), dtype=np.int64), straddling]))
    spine_table = pa.table(
        {
            ROW: take,
            **{name: column.take(take) for name, column in spine_keys.items()},
            "__lo": pa.array(lo).take(take),
            "__hi": pa.array(hi).take(take),
            "__b": pa.array(np.concatenate([first, second[straddling]])),
        }
    )
    events = events.append_column("__b", pa.array(np.floor_divide(events.column(TS).to_numpy(), bucket_ms)))
    values = sorted(set(input_aliases.values()))
    on = " AND ".join([f"e.{k} = s.{k}" for k in spine_keys] + ["e.__b = s.__b"])
    query = (
        f"SELECT s.{ROW}, e.{TS}, {', '.join('e.' + v for v in values)} FROM spine_table s JOIN events e "
        f"ON {on} AND e.{TS} >= s.__lo AND e.{TS} < s.__hi ORDER BY s.{ROW}, e.{SEQ}"
    )
    with connect() as con:
        con.register("spine_table", spine_table)
        con.register("events", events)
        yield from con.sql(query).to_arrow_reader(chunk_rows)


def _fold(
    chunk: pa.RecordBatch,
    aggregations: Sequence[AggregationSpec],
    aggregators: Sequence[Aggregator],
    starts: Sequence[np.ndarray],
    ends: Sequence[np.ndarray],
    input_aliases: dict[str, str],
    partials: list[list[Any]],
    touched: np.ndarray,
) -> None:
    if not chunk.num_rows:
        return
    row = chunk.column(ROW).to_numpy()
    ts = chunk.column(TS).to_numpy()
    groups, group_ids = np.unique(row, return_inverse=True)  # rows come sorted: groups in row order
    group_rows = groups.tolist()
    for j, (a, agg) in enumerate(zip(aggregations, aggregators, strict=True)):
        inside = (ts >= starts[j][row]) & (ts < ends[j][row])

        def column(name: str, dtype: str, inside: np.ndarray = inside) -> tuple[np.ndarray, np.ndarray]:
            values, valid = input_column(chunk.column(input_aliases[name]).to_pandas(types_mapper=_nullable), dtype)
            return values[inside], valid[inside]

        found = group_partials(agg, a, column, group_ids[inside], len(groups), ts[inside])
        target = partials[j]
        for r, partial in zip(group_rows, found, strict=True):
            # A row split over two chunks: its first part arrived earlier, as a stored tile does.
            target[r] = agg.merge(target[r], partial) if touched[r] else partial
    touched[groups] = True


def _nullable(arrow_type: pa.DataType) -> Any:
    """Integers with nulls stay exact (``Int64``), not float64 as pandas would make them."""
    return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None


def feature_array(values: list[Any], output_dtype: str) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A training-set column of ``output_dtype`` from per-row values (None: null)."""
    if output_dtype == "int64":
        return pd.array(values, dtype="Int64")
    if output_dtype == "float64":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element-wise: numpy would read equal-length lists as 2-D
        column[i] = value
    return column
