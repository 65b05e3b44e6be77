"""Windowed counts and sums for every spine row, in SQL (DuckDB) or by prefix sums.

Counts, sums and means (a mean is sum / count, as online) of the windows that end at a row's
end come from prefix sums over the events sorted by (entity, time) (``prefix.window_parts``:
cost independent of how busy an entity is). Offset and series windows, and what the prefix path
declines, take the bucketed join: both sides carry a time bucket of width ``reach`` (the longest
window plus offset), so an event is paired only with rows whose range overlaps its bucket (at
most two per row) instead of every row of its entity. Lifetime windows are running aggregates
over one sequence of spine rows and events per entity (``lifetime_parts``).

Tables are in the declared schema of ``event_columns.py``; each need is ``(kind, input column,
window)`` where kind is ``count`` or ``sum`` and window is ``(start, end)`` relative to the row's
end, or None for the lifetime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.training.event_columns import ROW, TS, EventColumns
from featurebus.platform.training.prefix import window_parts
from featurebus.schemas.specs import StreamFeatureViewSpec

__all__ = ["Need", "Parts", "Window", "bounded_parts", "lifetime_parts"]

# Where a needed count or sum is taken: a window relative to the row's end E, or the lifetime.
Window = tuple[int, int] | None
Need = tuple[str, str, Window]  # (count | sum, input column, window)
# alias -> (spine rows with a value, the values there, their null mask)
Parts = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _integral(view: StreamFeatureViewSpec) -> dict[str, bool]:
    return {a.input_column: a.input_dtype.startswith("int") for a in view.aggregations}


def _part_select(kind: str, value: str, integral: bool, condition: str) -> str:
    """SQL for one count or sum (``condition`` is a FILTER or an OVER clause)."""
    if kind == "count":
        return f"count({value}) {condition}"
    if integral:
        return f"CAST(sum({value}) {condition} AS BIGINT)"
    return f"fsum(CAST({value} AS DOUBLE)) {condition}"  # compensated: nearer the exact sum


def _results(result: pa.Table, needs: dict[Need, str]) -> Parts:
    rows = result.column(ROW).to_numpy()
    values = {}
    for alias in needs.values():
        column = result.column(alias)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        values[alias] = (rows, column.fill_null(0).to_numpy(zero_copy_only=False), nulls)
    return values


def bounded_parts(
    spine: pd.DataFrame,
    view: StreamFeatureViewSpec,
    events: pa.Table,
    ends: np.ndarray,
    reach_ms: int,
    bounded: dict[Need, str],
) -> Parts:
    """Counts and sums over bounded windows: by prefix sums (``prefix.window_parts``) when every
    window ends at the row's end, else (offsets, series) by the bucketed SQL join."""
    plain = {
        (kind, name, -window[0]): alias
        for (kind, name, window), alias in bounded.items()
        if window is not None and window[1] == 0
    }
    if len(plain) == len(bounded):
        columns = EventColumns.of(view)
        by_prefix = window_parts(
            columns.spine_keys(spine, events), events, ends, plain, columns.aliases, _integral(view)
        )
        if by_prefix is not None:
            everyone = np.arange(len(spine))
            return {alias: (everyone, values, nulls) for alias, (values, nulls) in by_prefix.items()}
    return _join(spine, view, events, ends, reach_ms, bounded)


def _join(
    spine: pd.DataFrame,
    view: StreamFeatureViewSpec,
    events: pa.Table,
    ends: np.ndarray,
    bucket_ms: int,
    needs: dict[Need, str],
) -> Parts:
    """Each needed count or sum over a bounded window, as (spine rows with at least one event in
    range, values there, null mask)."""
    first = np.floor_divide(ends - bucket_ms, bucket_ms)
    second = np.floor_divide(ends - 1, bucket_ms)  # first or first + 1
    straddling = np.flatnonzero(second != first)
    take = pa.array(np.concatenate([np.arange(len(spine), dtype=np.int64), straddling]))
    columns = EventColumns.of(view)
    keys = {name: column.take(take) for name, column in columns.spine_keys(spine, events).items()}
    spine_table = pa.table(
        {
            ROW: take,
            **keys,
            "__end": pa.array(ends).take(take),
            "__b": pa.array(np.concatenate([first, second[straddling]])),
        }
    )
    events = events.append_column("__b", pa.array(np.floor_divide(events.column(TS).to_numpy(), bucket_ms)))
    aliases = columns.aliases
    integral = _integral(view)
    selects = []
    for (kind, name, window), alias in needs.items():
        assert window is not None
        condition = f"FILTER (WHERE e.{TS} >= s.__end + {window[0]} AND e.{TS} < s.__end + {window[1]})"
        selects.append(f"{_part_select(kind, f'e.{aliases[name]}', integral[name], condition)} AS {alias}")
    on = " AND ".join([f"e.{k} = s.{k}" for k in columns.keys] + ["e.__b = s.__b"])
    query = (
        f"SELECT s.{ROW}, {', '.join(selects)} FROM spine_table s JOIN events e ON {on} "
        f"AND e.{TS} < s.__end AND e.{TS} >= s.__end - {bucket_ms} GROUP BY s.{ROW}"
    )
    with connect() as con:
        con.register("spine_table", spine_table)
        con.register("events", events)
        return _results(con.sql(query).to_arrow_table(), needs)


def lifetime_parts(
    spine: pd.DataFrame,
    view: StreamFeatureViewSpec,
    events: pa.Table,
    ends: np.ndarray,
    lifetime_start_ms: int,
    needs: dict[Need, str],
) -> Parts:
    """Each needed count or sum over ``[lifetime_start, E)`` for every spine row.

    A join would pair each row with all earlier events of its entity (quadratic for busy ones);
    instead spine rows and events go into one sequence per entity, ordered by time with a row
    before the events at its own E (the window is half-open), and running aggregates over it
    are read off at the rows: one sort, O(n log n).
    """
    take = pa.array(np.arange(len(spine), dtype=np.int64))
    columns = EventColumns.of(view)
    keys = columns.spine_keys(spine, events)
    spine_table = pa.table(
        {
            ROW: take,
            **keys,
            "__t": pa.array(ends, type=pa.int64()),
            "__o": pa.array(np.zeros(len(spine), dtype=np.int8)),
        }
    )
    aliases = columns.aliases
    integral = _integral(view)
    key_columns = columns.keys
    selects = [
        f"{_part_select(kind, aliases[name], integral[name], 'OVER w')} AS {alias}"
        for (kind, name, _), alias in needs.items()
    ]
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in key_columns)
    query = (
        f"WITH u AS (SELECT {', '.join(key_columns)}, {TS} AS __t, CAST(1 AS TINYINT) AS __o, "
        f"{', '.join(columns.values)} FROM events WHERE {TS} >= {lifetime_start_ms} AND {not_null} "
        f"UNION ALL BY NAME SELECT * FROM spine_table) "
        f"SELECT {ROW}, {', '.join(selects)} FROM u "
        f"WINDOW w AS (PARTITION BY {', '.join(key_columns)} ORDER BY __t, __o ROWS UNBOUNDED PRECEDING) "
        f"QUALIFY __o = 0"
    )
    with connect() as con:
        con.register("spine_table", spine_table)
        con.register("events", events)
        return _results(con.sql(query).to_arrow_table(), needs)
