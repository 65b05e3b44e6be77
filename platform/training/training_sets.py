"""Point-in-time correct training sets: every spine row gets the feature values as of its time.

For each feature view of the service: read the source's Parquet files in the time range the spine
can see, run the view's transformation (the same code the stream worker runs, in ~1M-row chunks),
then compute every aggregation for every spine row in one DuckDB join of spine rows with events on
the join keys and ``event_ts in [end - reach, end)``, each aggregation restricted to its own
window with ``FILTER`` — the windows of ``streams.windows.aggregation_windows`` (DESIGN.md §4):
offsets, and one window per element of a series, are just other bounds relative to the end.

A plain equi-join on the entity key would pair each spine row with *all* of its entity's events
before the time condition filters them, which is quadratic for busy entities. So both sides also
carry a time bucket of width ``reach`` (the longest window plus offset): an event can only be in
a row's range if it lies in one of the (at most two) buckets that range overlaps, so the join
pairs each row only with events near its time. Lifetime windows are running aggregates instead
(``_lifetime``), and ``AggregationLeadingEdge.LATEST_EVENT_TIME`` moves each row's reference time
first (``_latest_event_edges_ns``).

Count, sum and mean are normally computed without that join, by prefix sums over the events
sorted by (entity, time) (``prefix.window_parts``: cost independent of how busy an entity is);
the bucketed SQL join remains for what that path declines (non-finite inputs). Stores larger
than memory are processed in time slices of the spine (``_time_groups``). That SQL computes
count, sum and mean. Every other function (min, max, last, first/last(n),
distinct, variance family, sketches) and ``Attribute`` features go through ``event_pairs``, which
feeds the same joined events to the stream engine's own aggregators, one (start, end) per row and
window (offsets, series elements and lifetime windows alike).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.offline.locations import OfflineLocations, offline_locations, require_locations
from featurebus.platform.offline.store import PartFile, list_parts, open_store
from featurebus.platform.registry import Registry
from featurebus.platform.training.batch_rows import batch_view_rows, history_rows, oldest_store_event_ms
from featurebus.platform.training.event_pairs import aggregate_pairs, feature_array
from featurebus.platform.training.prefix import window_parts
from featurebus.platform.training.realtime import realtime_training_columns
from featurebus.platform.training.spine import check_join_key_types, spine_times_ns, timestamp_column, window_ends_ms
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.aggregations import output_dtype
from featurebus.streams.realtime import RealtimeServicePlan
from featurebus.streams.transform import Transformation, view_input_frame
from featurebus.streams.windows import LATEST_EVENT_TIME, series_windows

__all__ = ["get_features_for_events", "write_training_set", "training_set_from_files", "feature_column"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")
_CHUNK_ROWS = 1_000_000
_READ_ATTEMPTS = 3  # a read over part files, re-run after a compaction removed one it had listed
# (view, lo_ms, hi_ms) -> the view's events with a time in [lo_ms, hi_ms), as ``_events`` gives them.
EventLoader = Callable[[StreamFeatureViewSpec, int, int], "pa.Table | None"]
# Events held in memory at once per view (about 200 bytes each with their transformation's
# intermediate frames): larger stores are processed in time slices of the spine.
_GROUP_EVENTS = 8_000_000
_DAY_MS = 86_400_000
_NS_PER_MS = 1_000_000
# The partial sums each function needs (a mean is sum / count, as online). These three have a
# fast path in SQL; every other function goes through ``event_pairs`` and the engine's aggregators.
_PARTS = {"count": ("count",), "sum": ("sum",), "mean": ("count", "sum")}


def _in_sql(a: AggregationSpec) -> bool:
    return a.function in _PARTS and not a.attribute


def feature_column(view: str, feature: str) -> str:
    """Training-set column of a feature, as Tecton names it: ``<view>__<feature>``."""
    return f"{view}__{feature}"


def get_features_for_events(
    spec: WorkspaceSpec, service: str, spine: pd.DataFrame, root: Path, timestamp_key: str | None = None,
    offline_data: OfflineLocations | None = None,
) -> pd.DataFrame:
    """The spine (same columns, rows and order) plus one column per feature of ``service``.

    The spine needs the service's join keys and one timestamp column (naive times are UTC). Counts
    are 0 and other aggregations null (NaN, or ``<NA>`` for integer sums) where no event counts.
    ``offline_data`` says where each source's records are (``offline/locations.py``; default:
    the workspace's own, as for a live workspace).
    """
    open_store(Path(root), create=False)
    service_spec = spec.service(service)
    t_ns = spine_times_ns(spine, timestamp_column(spine, timestamp_key))
    result = spine.copy(deep=False)
    # With realtime views, fetch what they read too, then run them on the spine (offline/realtime.py).
    realtime = None
    if any(spec.is_realtime(s.view) for s in service_spec.selections):
        realtime = RealtimeServicePlan.build(spec, service_spec)
    fetched: dict[tuple[str, str], np.ndarray | pd.api.extensions.ExtensionArray] = {}
    for selection in realtime.fetch.selections if realtime else service_spec.selections:
        batch = spec.batch_view(selection.view) if spec.is_batch(selection.view) else None
        view = batch.as_view_spec() if batch is not None else spec.view(selection.view)
        by_name = {a.name: a for a in view.aggregations}
        unknown = [f for f in selection.features if f not in by_name]
        if unknown:
            raise InvalidRequestError(
                f"feature service {service!r} selects {unknown} from view {view.name!r}, which has "
                f"{sorted(by_name)}; re-apply the repository"
            )
        missing = [k for k in view.join_keys if k not in spine.columns]
        if missing:
            raise InvalidRequestError(
                f"the spine lacks join key columns {missing} of feature view {view.name!r}; "
                f"it has {list(spine.columns)}"
            )
        aggregations = [by_name[f] for f in selection.features]
        if batch is not None:
            # A batch view's rows: materialized offline, else computed from its sources (platform/training/batch_rows.py).
            loader = _batch_loader(batch_view_rows(spec, batch, Path(root), offline_data))
            values = _rereading_after_compaction(_view_features, None, (), view, aggregations, spine, t_ns, Path(root), loader)
            fetched.update({(view.name, a.name): column for a, column in zip(aggregations, values, strict=True)})
            continue
        source = spec.source(view.source)
        locations = ((spec.name, source.name),) if offline_data is None else require_locations(offline_data, spec.name, source)
        values = _rereading_after_compaction(_view_features, source, locations, view, aggregations, spine, t_ns, Path(root))
        fetched.update({(view.name, a.name): column for a, column in zip(aggregations, values, strict=True)})
    if realtime is not None:
        served = realtime_training_columns(realtime, spine, t_ns, fetched)
    else:
        served = [(s.view, f, fetched[(s.view, f)]) for s in service_spec.selections for f in s.features]
    taken = [feature_column(v, f) for v, f, _ in served if feature_column(v, f) in spine.columns]
    if taken:
        raise InvalidRequestError(f"the spine already has columns {taken}; rename them")
    for view_name, feature, column in served:
        result[feature_column(view_name, feature)] = column
    return result


def _rereading_after_compaction(read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``read(*args, **kwargs)``, run again if a part file it listed was gone when it opened it.

    A compaction (``offline/compaction.py``) may merge files between a read's listing and its
    opening them; with its default grace of 0 the inputs are deleted at once. The merged file
    covers them, so a new listing reads the same records: run the read again, a few times at most
    (each compaction needs new small files, so repeated races are rare)."""
    for attempt in range(1, _READ_ATTEMPTS + 1):
        try:
            return read(*args, **kwargs)
        except (FileNotFoundError, duckdb.IOException) as exc:
            vanished = isinstance(exc, FileNotFoundError) or "No files found" in str(exc) or "No such file" in str(exc)
            if not vanished or attempt == _READ_ATTEMPTS:
                raise
            log.info("a part file vanished during a training-set read (compaction); reading again: %s", exc)
    raise AssertionError("unreachable")  # the loop returns or raises


def _batch_loader(rows_of: Callable[[int, int], tuple[pd.DataFrame, np.ndarray]]) -> EventLoader:
    def loader(view: StreamFeatureViewSpec, lo_ms: int, hi_ms: int) -> pa.Table | None:
        frame, ts_ms = rows_of(lo_ms, hi_ms)
        return with_arrival_order([events_columns(view, frame, ts_ms)] if len(frame) else [])

    return loader


def write_training_set(df: pd.DataFrame, path: Path | str) -> Path:
    """Write ``df`` as Parquet, atomically (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def training_set_from_files(
    registry: Registry,
    root: Path | str,
    workspace: str,
    service: str,
    spine_path: Path | str,
    output_path: Path | str,
    timestamp_key: str | None = None,
) -> pd.DataFrame:
    """The CLI's ``training-set``: spine from Parquet (or CSV with ``timestamp_key``) to Parquet."""
    specs = registry.list()
    if workspace not in specs:
        raise NotFoundError(f"workspace {workspace!r} has not been applied; known: {sorted(specs) or 'none'}")
    spine_path = Path(spine_path)
    if spine_path.suffix.lower() == ".csv":
        if timestamp_key is None:
            raise InvalidRequestError("a CSV spine needs --timestamp-key: CSV has no timestamp type to detect")
        spine = pd.read_csv(spine_path)
        spine[timestamp_key] = pd.to_datetime(spine[timestamp_key], utc=True)
    else:
        spine = pd.read_parquet(spine_path)
    spec = specs[workspace]
    # A development workspace reads what live workspaces materialized (offline/locations.py).
    offline_data = None if spec.live else offline_locations(spec, specs)
    df = get_features_for_events(spec, service, spine, Path(root), timestamp_key, offline_data)
    write_training_set(df, output_path)
    return df


# Where a needed count or sum is taken: a window relative to the row's end E, or the lifetime.
_Window = tuple[int, int] | None
_Need = tuple[str, str, _Window]  # (count | sum, input column, window)


def _relative_windows(aggregation: AggregationSpec) -> list[_Window]:
    """The windows of ``streams.windows.aggregation_windows`` relative to E (None: lifetime)."""
    if aggregation.window_kind == "lifetime":
        return [None]
    if aggregation.window_kind == "series":
        return list(series_windows(aggregation.series_start_ms, aggregation.series_end_ms,
                                   aggregation.series_step_ms, aggregation.window_ms))
    return [(aggregation.offset_ms - aggregation.window_ms, aggregation.offset_ms)]


def _absolute_windows(a: AggregationSpec, view: StreamFeatureViewSpec, t_ns: np.ndarray,
                      ends: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[start, end)`` per spine row of each window of ``a`` (``_relative_windows`` made absolute).
    An Attribute ends at T whatever the view's interval (DESIGN.md §4)."""
    if a.attribute:
        ends = window_ends_ms(t_ns, None)
    result = []
    for window in _relative_windows(a):
        if window is None:
            assert view.lifetime_start_ms is not None  # compile requires it with a LifetimeWindow
            # streams.windows.lifetime_bounds: empty while E is not after the start.
            result.append((np.full(len(ends), view.lifetime_start_ms, dtype=np.int64),
                           np.maximum(ends, view.lifetime_start_ms)))
        else:
            result.append((ends + window[0], ends + window[1]))
    return result


def _view_features(
    source: StreamSourceSpec | None,
    locations: tuple[tuple[str, str], ...],
    view: StreamFeatureViewSpec,
    aggregations: list[AggregationSpec],
    spine: pd.DataFrame,
    t_ns: np.ndarray,
    root: Path,
    loader: EventLoader | None = None,
) -> list[np.ndarray | pd.api.extensions.ExtensionArray]:
    """The view's features for every spine row, a time slice of the spine at a time.

    Rows are computed in groups of consecutive spine dates whose events (read back to the longest
    window before the group's first date) stay under ``_GROUP_EVENTS``, so memory is bounded by
    the group, not by the store: a store larger than memory streams through slice by slice.
    """
    # A lifetime window reads every event before its row: it cannot be sliced by time.
    groups = ([np.arange(len(t_ns))] if view.has_lifetime else
              _time_groups(root, locations, t_ns, view.max_reach_ms + (view.aggregation_interval_ms or 0)))
    if len(groups) == 1:
        return _view_features_in(source, locations, view, aggregations, spine, t_ns, root, loader)
    pieces = [
        _view_features_in(source, locations, view, aggregations, spine.iloc[rows], t_ns[rows], root, loader)
        for rows in groups
    ]
    order = np.argsort(np.concatenate(groups), kind="stable")  # back to spine order
    columns: list[np.ndarray | pd.api.extensions.ExtensionArray] = []
    for j in range(len(aggregations)):
        parts = [piece[j] for piece in pieces]
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        if len(arrays) == len(parts):
            columns.append(np.concatenate(arrays)[order])
        else:
            joined = pd.concat([pd.Series(p) for p in parts], ignore_index=True)
            columns.append(joined.array.take(order))
    return columns


def _time_groups(root: Path, locations: tuple[tuple[str, str], ...], t_ns: np.ndarray, window_ms: int) -> list[np.ndarray]:
    """Spine row positions, grouped by consecutive UTC dates of their times (one group if small)."""
    days = np.floor_divide(np.floor_divide(t_ns, 1_000_000), _DAY_MS)
    per_date: dict[int, int] = {}
    for part in (p for workspace, name in locations for p in list_parts(root, workspace, name)):
        day = int(np.datetime64(part.date, "D").astype(np.int64))
        per_date[day] = per_date.get(day, 0) + pq.ParquetFile(part.path).metadata.num_rows
    if not len(days) or sum(per_date.values()) <= _GROUP_EVENTS:
        return [np.arange(len(t_ns))]
    reach = -(-window_ms // _DAY_MS)  # days of events before a row's date that its windows see
    order = np.argsort(days, kind="stable")
    unique_days, starts = np.unique(days[order], return_index=True)
    groups: list[np.ndarray] = []
    first = 0
    for i in range(1, len(unique_days) + 1):
        if i < len(unique_days):
            span = range(int(unique_days[first]) - reach, int(unique_days[i]) + 1)
            if sum(per_date.get(d, 0) for d in span) <= _GROUP_EVENTS:
                continue
        stop = starts[i] if i < len(unique_days) else len(order)
        groups.append(order[starts[first] : stop])
        first = i
    return groups


def _view_features_in(
    source: StreamSourceSpec | None,
    locations: tuple[tuple[str, str], ...],
    view: StreamFeatureViewSpec,
    aggregations: list[AggregationSpec],
    spine: pd.DataFrame,
    t_ns: np.ndarray,
    root: Path,
    loader: EventLoader | None = None,
) -> list[np.ndarray | pd.api.extensions.ExtensionArray]:
    """``loader`` (batch views) gives the events of a time range instead of ``source``'s records."""
    rows = len(spine)
    if view.aggregation_leading_edge == LATEST_EVENT_TIME and rows:
        assert source is not None  # batch views have no leading-edge option
        t_ns = _latest_event_edges_ns(source, locations, root, t_ns)
    ends = window_ends_ms(t_ns, view.aggregation_interval_ms)
    # One count and/or sum per (input, window), shared by the aggregations that need it.
    needs: dict[_Need, str] = {}
    for a in aggregations:
        if _in_sql(a):
            for window in _relative_windows(a):
                for kind in _PARTS[a.function]:
                    needs.setdefault((kind, a.input_column, window), f"a{len(needs)}")
    bounded = {need: alias for need, alias in needs.items() if need[2] is not None}
    lifetime = {need: alias for need, alias in needs.items() if need[2] is None}
    # Also the width of every row's [end - reach, end), which holds all of its bounded windows.
    reach_ms = max((-need[2][0] for need in bounded if need[2] is not None), default=1)
    others = [a for a in aggregations if not _in_sql(a)]
    # Every window of every other aggregation as absolute [start, end) per spine row.
    other_windows = [_absolute_windows(a, view, t_ns, ends) for a in others]
    lo_ms = int(ends.min()) - reach_ms if rows else 0
    hi_ms = int(ends.max()) if rows else 0
    for start, end in (w for windows in other_windows for w in windows):
        if rows:
            lo_ms, hi_ms = min(lo_ms, int(start.min())), max(hi_ms, int(end.max()))
    if lifetime:
        assert view.lifetime_start_ms is not None  # compile requires it with a LifetimeWindow
        lo_ms = min(lo_ms, view.lifetime_start_ms)
    found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if not rows:
        events = None
    elif loader is not None:
        events = loader(view, lo_ms, hi_ms)
    else:
        assert source is not None
        events = _events(source, locations, view, root, lo_ms, hi_ms)
    if events is not None and bounded:
        found.update(_bounded_parts(spine, view, events, ends, reach_ms, bounded))
    if events is not None and lifetime:
        assert view.lifetime_start_ms is not None
        found.update(_lifetime(spine, view, events, ends, view.lifetime_start_ms, lifetime))
    flat = [(a, window) for a, windows in zip(others, other_windows, strict=True) for window in windows]
    flat_values = iter(
        aggregate_pairs(view, [a for a, _ in flat], _spine_keys(spine, view, events), [w for _, w in flat],
                        events, _input_aliases(view))
        if flat else []
    )

    def scatter(kind: str, a: AggregationSpec, window: _Window) -> tuple[np.ndarray, np.ndarray]:
        """Values for every spine row (0 where no event matched) and their null mask."""
        # Counts and integer sums stay int64: exact, as the online aggregators keep them.
        exact = kind == "count" or a.input_dtype.startswith("int")
        values = np.zeros(rows, dtype=np.int64 if exact else np.float64)
        nulls = np.ones(rows, dtype=bool)
        alias = needs[(kind, a.input_column, window)]
        if alias in found:
            matched, column, column_nulls = found[alias]
            values[matched], nulls[matched] = column, column_nulls
        return values, nulls

    def finish(a: AggregationSpec, window: _Window) -> np.ndarray | pd.api.extensions.ExtensionArray:
        if a.function == "count":
            return scatter("count", a, window)[0]
        total, no_total = scatter("sum", a, window)
        if a.function == "sum" and output_dtype(a.function, a.input_dtype) == "int64":
            return pd.arrays.IntegerArray(total, no_total)
        if a.function == "sum":
            return np.where(no_total, np.nan, total)
        # mean, as the online aggregator computes it: sum / count, null unless finite
        count = scatter("count", a, window)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total.astype(np.float64) / count
        return np.where(~no_total & (count > 0) & np.isfinite(mean), mean, np.nan)

    columns: list[np.ndarray | pd.api.extensions.ExtensionArray] = []
    for a in aggregations:
        if not _in_sql(a):
            per_window_values = [next(flat_values) for _ in _relative_windows(a)]
            if a.window_kind == "series":
                columns.append(feature_array([list(v) for v in zip(*per_window_values, strict=True)], a.output_dtype))
            else:
                columns.append(feature_array(per_window_values[0], a.output_dtype))
            continue
        per_window = [finish(a, window) for window in _relative_windows(a)]
        columns.append(_as_lists(per_window, rows) if a.window_kind == "series" else per_window[0])
    return columns


def _as_lists(per_window: list[np.ndarray | pd.api.extensions.ExtensionArray], rows: int) -> np.ndarray:
    """One list per row (earliest window first, nulls as None), as serving returns a series."""
    plain = [pd.Series(column, dtype=object).where(pd.notna(column), None).tolist() for column in per_window]
    lists = np.empty(rows, dtype=object)
    for row in range(rows):
        lists[row] = [column[row] for column in plain]
    return lists


def _latest_event_edges_ns(source: StreamSourceSpec, locations: tuple[tuple[str, str], ...], root: Path,
                           t_ns: np.ndarray) -> np.ndarray:
    """``AggregationLeadingEdge.LATEST_EVENT_TIME`` offline: per spine row at T, the time just
    after the newest event of the source before T (``streams.windows.leading_edge_ms``), or T
    itself when there is none, as online before the first event."""
    before_ms = -np.floor_divide(-t_ns, _NS_PER_MS)  # event < T iff event < ceil_ms(T)
    hi_ms = int(before_ms.max())
    files = [str(p.path) for workspace, name in locations for p in list_parts(root, workspace, name)
             if p.date <= _date(hi_ms - 1)]
    if not files:
        return t_ns
    ts = _quote(source.kafka.timestamp_field)
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    query = (
        f"SELECT DISTINCT epoch_ms({ts}) AS t FROM read_parquet([{file_list}], union_by_name = true) "
        f"WHERE epoch_ms({ts}) < {hi_ms} ORDER BY t"
    )
    with connect() as con:
        times = con.sql(query).to_arrow_table().column("t").to_numpy()
    if not len(times):
        return t_ns
    newest = np.searchsorted(times, before_ms, side="left") - 1
    has = newest >= 0
    edges_ms = np.where(has, times[np.maximum(newest, 0)] + 1, 0)
    result: np.ndarray = np.where(has, edges_ms * _NS_PER_MS, t_ns)
    return result


def _input_aliases(view: StreamFeatureViewSpec) -> dict[str, str]:
    """SQL-safe column names for the view's input columns (user names may need quoting)."""
    return {name: f"v{j}" for j, name in enumerate(dict.fromkeys(a.input_column for a in view.aggregations))}


def view_events(
    spec: WorkspaceSpec, view: StreamFeatureViewSpec, root: Path, lo_ms: int, hi_ms: int,
    offline_data: OfflineLocations | None = None,
) -> pd.DataFrame:
    """The view's transformed events with source time in ``[lo_ms, hi_ms)``: its join keys and
    ``__ts`` (event time, ms), for callers that need to know when values change."""
    open_store(Path(root), create=False)
    source = spec.source(view.source)
    locations = ((spec.name, source.name),) if offline_data is None else require_locations(offline_data, spec.name, source)
    table = _events(source, locations, view, Path(root), lo_ms, hi_ms)
    columns = [*view.join_keys, "__ts"]
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "__ts" else "object") for c in columns})
    frame: pd.DataFrame = table.select([*(f"k{i}" for i in range(len(view.join_keys))), "__ts"]).to_pandas()
    frame.columns = pd.Index(columns)
    return frame


def _events(
    source: StreamSourceSpec, locations: tuple[tuple[str, str], ...], view: StreamFeatureViewSpec, root: Path,
    lo_ms: int, hi_ms: int,
) -> pa.Table | None:
    """Transformed events ``k<i>, __ts, v<j>`` with source time in ``[lo_ms, hi_ms)``, deduplicated.

    The time range is applied to the *source* timestamp: a transformation may derive the view's
    timestamp, but must not move events later in time (the stream engine assumes the same).

    A source with a ``batch_config`` also contributes its history files, but only for events
    older than the oldest event the offline store holds for it: the store begins at the topic's
    earliest retained record, so anything older can only come from the files, while the files
    and the topic may overlap from there on, and reading both would count those events twice.
    """
    pieces: list[pa.Table] = []
    if source.batch_config is not None:
        cutoff = oldest_store_event_ms(root, locations, source)
        history_hi = hi_ms if cutoff is None else min(hi_ms, cutoff)
        if lo_ms < history_hi:
            pieces.extend(events_columns(view, frame, ts_ms) for frame, ts_ms in history_rows(source, view, lo_ms, history_hi))
    first_day, last_day = _date(lo_ms), _date(hi_ms - 1)
    # In offset order, so that a plain scan reads records in arrival order.
    parts = sorted(
        (p for workspace, name in locations for p in list_parts(root, workspace, name) if first_day <= p.date <= last_day),
        key=lambda p: (p.topic, p.partition, p.first_offset),
    )
    if not parts:
        return with_arrival_order(pieces)
    files = [str(p.path) for p in parts]
    ts = source.kafka.timestamp_field
    select = ", ".join(
        f"epoch_ms({_quote(f.name)}) AS {_quote(f.name)}" if f.dtype == "timestamp" else _quote(f.name)
        for f in source.schema
    )
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    where = f"WHERE epoch_ms({_quote(ts)}) >= {lo_ms} AND epoch_ms({_quote(ts)}) < {hi_ms}"
    if _disjoint(parts):
        # The usual case: the files' offset ranges (from their names) cannot hold a record twice,
        # and each file is in offset order, so an order-preserving scan of the files in offset
        # order is already deduplicated and in arrival order: no sort of every event.
        query = f"SELECT {select} FROM read_parquet([{file_list}], union_by_name = true) {where}"
    else:
        # Files may overlap after a crash or a manual copy; a record counts once, by its Kafka address.
        query = (
            f"SELECT DISTINCT ON (_topic, _partition, _offset) {select} "
            f"FROM read_parquet([{file_list}], union_by_name = true) {where} "
            "ORDER BY _topic, _partition, _offset"
        )
    transformation = Transformation(view.transformation)
    with connect(preserve_insertion_order=True) as con:
        for chunk in _chunks(con.sql(query).to_arrow_reader(_CHUNK_ROWS), source):
            frame, ts_ms = view_input_frame(view, transformation.apply(chunk))
            if len(frame):
                pieces.append(events_columns(view, frame, ts_ms))
    return with_arrival_order(pieces)


def events_columns(view: StreamFeatureViewSpec, frame: pd.DataFrame, ts_ms: np.ndarray) -> pa.Table:
    """A view's input rows (``view_input_frame``) as the join reads them: ``k<i>, __ts, v<j>``."""
    columns = {f"k{i}": pa.array(frame[k], from_pandas=True) for i, k in enumerate(view.join_keys)}
    columns["__ts"] = pa.array(ts_ms, type=pa.int64())
    for name, alias in _input_aliases(view).items():
        columns[alias] = pa.array(frame[name], from_pandas=True)  # NaN -> null, as online
    return pa.table(columns)


def with_arrival_order(pieces: list[pa.Table]) -> pa.Table | None:
    """The pieces concatenated in order, numbered by ``__seq``: ties in event time are broken by
    it (the store is read in topic, partition, offset order), as the stream engine breaks them
    by the order records reach it."""
    if not pieces:
        return None
    table = pa.concat_tables(pieces, promote_options="permissive")
    return table.append_column("__seq", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _disjoint(parts: list[PartFile]) -> bool:
    """Whether no two files (sorted by topic, partition, first offset) share an offset."""
    for before, after in itertools.pairwise(parts):
        if (before.topic, before.partition) == (after.topic, after.partition) and after.first_offset <= before.last_offset:
            return False
    return True


def _chunks(reader: pa.RecordBatchReader, source: StreamSourceSpec) -> Iterator[pd.DataFrame]:
    """Record batches as the frames ``decode_json_records`` builds, so transformations see one type."""
    for batch in reader:
        frame = batch.to_pandas()
        for f in source.schema:
            if f.dtype == "timestamp":
                frame[f.name] = pd.to_datetime(frame[f.name].astype("Int64"), unit="ms", utc=True)
            elif f.dtype.startswith(("array<", "struct<")):
                frame[f.name] = batch.column(f.name).to_pylist()
            elif f.dtype.startswith("map<"):  # Arrow maps read back as (key, value) pairs; online they are dicts
                frame[f.name] = [None if v is None else dict(v) for v in batch.column(f.name).to_pylist()]
        yield frame


def _part_select(kind: str, value: str, integral: bool, condition: str) -> str:
    """SQL for one count or sum (``condition`` is a FILTER or an OVER clause)."""
    if kind == "count":
        return f"count({value}) {condition}"
    if integral:
        return f"CAST(sum({value}) {condition} AS BIGINT)"
    return f"fsum(CAST({value} AS DOUBLE)) {condition}"  # compensated: nearer the exact sum


def _results(result: pa.Table, needs: dict[_Need, str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rows = result.column("__row").to_numpy()
    values = {}
    for alias in needs.values():
        column = result.column(alias)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        values[alias] = (rows, column.fill_null(0).to_numpy(zero_copy_only=False), nulls)
    return values


def _bounded_parts(spine: pd.DataFrame, view: StreamFeatureViewSpec, events: pa.Table, ends: np.ndarray,
                   reach_ms: int, bounded: dict[_Need, str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Counts and sums over bounded windows: by prefix sums (``prefix.window_parts``) when every
    window ends at the row's end, else (offsets, series) by the bucketed SQL join."""
    plain = {(kind, name, -window[0]): alias for (kind, name, window), alias in bounded.items()
             if window is not None and window[1] == 0}
    if len(plain) == len(bounded):
        integral = {a.input_column: a.input_dtype.startswith("int") for a in view.aggregations}
        by_prefix = window_parts(_spine_keys(spine, view, events), events, ends, plain, _input_aliases(view), integral)
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
    needs: dict[_Need, str],
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each needed count or sum over a bounded window, as (spine rows with at least one event in
    range, values there, null mask)."""
    first = np.floor_divide(ends - bucket_ms, bucket_ms)
    second = np.floor_divide(ends - 1, bucket_ms)  # first or first + 1
    straddling = np.flatnonzero(second != first)
    take = pa.array(np.concatenate([np.arange(len(spine), dtype=np.int64), straddling]))
    keys = {name: column.take(take) for name, column in _spine_keys(spine, view, events).items()}
    spine_table = pa.table(
        {
            "__row": take,
            **keys,
            "__end": pa.array(ends).take(take),
            "__b": pa.array(np.concatenate([first, second[straddling]])),
        }
    )
    events = events.append_column("__b", pa.array(np.floor_divide(events.column("__ts").to_numpy(), bucket_ms)))
    aliases = _input_aliases(view)
    integral = {a.input_column: a.input_dtype.startswith("int") for a in view.aggregations}
    selects = []
    for (kind, name, window), alias in needs.items():
        assert window is not None
        condition = f"FILTER (WHERE e.__ts >= s.__end + {window[0]} AND e.__ts < s.__end + {window[1]})"
        selects.append(f"{_part_select(kind, f'e.{aliases[name]}', integral[name], condition)} AS {alias}")
    on = " AND ".join([f"e.k{i} = s.k{i}" for i in range(len(view.join_keys))] + ["e.__b = s.__b"])
    query = (
        f"SELECT s.__row, {', '.join(selects)} FROM spine_table s JOIN events e ON {on} "
        f"AND e.__ts < s.__end AND e.__ts >= s.__end - {bucket_ms} GROUP BY s.__row"
    )
    with connect() as con:
        con.register("spine_table", spine_table)
        con.register("events", events)
        return _results(con.sql(query).to_arrow_table(), needs)


def _lifetime(
    spine: pd.DataFrame,
    view: StreamFeatureViewSpec,
    events: pa.Table,
    ends: np.ndarray,
    lifetime_start_ms: int,
    needs: dict[_Need, str],
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each needed count or sum over ``[lifetime_start, E)`` for every spine row.

    A join would pair each row with all earlier events of its entity (quadratic for busy ones);
    instead spine rows and events go into one sequence per entity, ordered by time with a row
    before the events at its own E (the window is half-open), and running aggregates over it
    are read off at the rows: one sort, O(n log n).
    """
    take = pa.array(np.arange(len(spine), dtype=np.int64))
    keys = _spine_keys(spine, view, events)
    spine_table = pa.table({"__row": take, **keys, "__t": pa.array(ends, type=pa.int64()),
                            "__o": pa.array(np.zeros(len(spine), dtype=np.int8))})
    aliases = _input_aliases(view)
    integral = {a.input_column: a.input_dtype.startswith("int") for a in view.aggregations}
    key_columns = [f"k{i}" for i in range(len(view.join_keys))]
    selects = [
        f"{_part_select(kind, aliases[name], integral[name], 'OVER w')} AS {alias}" for (kind, name, _), alias in needs.items()
    ]
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in key_columns)
    query = (
        f"WITH u AS (SELECT {', '.join(key_columns)}, __ts AS __t, CAST(1 AS TINYINT) AS __o, "
        f"{', '.join(sorted(set(aliases.values())))} FROM events WHERE __ts >= {lifetime_start_ms} AND {not_null} "
        f"UNION ALL BY NAME SELECT * FROM spine_table) "
        f"SELECT __row, {', '.join(selects)} FROM u "
        f"WINDOW w AS (PARTITION BY {', '.join(key_columns)} ORDER BY __t, __o ROWS UNBOUNDED PRECEDING) "
        f"QUALIFY __o = 0"
    )
    with connect() as con:
        con.register("spine_table", spine_table)
        con.register("events", events)
        return _results(con.sql(query).to_arrow_table(), needs)


def _spine_keys(spine: pd.DataFrame, view: StreamFeatureViewSpec, events: pa.Table | None) -> dict[str, pa.Array]:
    """The spine's join keys as Arrow columns ``k<i>``, checked against the events' key types."""
    keys = {}
    for i, key in enumerate(view.join_keys):
        try:
            keys[f"k{i}"] = pa.array(spine[key], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidRequestError(f"spine column {key!r} cannot be a join key: {exc}") from exc
        if events is not None:
            check_join_key_types(key, keys[f"k{i}"].type, events.column(f"k{i}").type)
    return keys


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _date(ms: int) -> str:
    return str(np.datetime64(int(ms) // _DAY_MS, "D"))
