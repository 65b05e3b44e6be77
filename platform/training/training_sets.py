"""Point-in-time correct training sets: every spine row gets the feature values as of its time.

For each feature view of the service: read the source's Parquet files in the time range the spine
can see, run the view's transformation (the same code the stream worker runs, in ~1M-row chunks),
then compute every aggregation for every spine row in one DuckDB join of spine rows with events on
the join keys and ``event_ts in [end - reach, end)``, each aggregation restricted to its own
window with ``FILTER`` — the windows of ``streams.windows.aggregation_windows`` (docs/design.md §4):
offsets, and one window per element of a series, are just other bounds relative to the end.

A plain equi-join on the entity key would pair each spine row with *all* of its entity's events
before the time condition filters them, which is quadratic for busy entities. So both sides also
carry a time bucket of width ``reach`` (the longest window plus offset): an event can only be in
a row's range if it lies in one of the (at most two) buckets that range overlaps, so the join
pairs each row only with events near its time. Lifetime windows are running aggregates instead
(``window_sql.lifetime_parts``), and ``AggregationLeadingEdge.LATEST_EVENT_TIME`` moves each row's reference time
first (``events.latest_event_edges_ns``).

Count, sum and mean are normally computed without that join, by prefix sums over the events
sorted by (entity, time) (``prefix.window_parts``: cost independent of how busy an entity is);
the bucketed SQL join remains for what that path declines (non-finite inputs). Stores larger
than memory are processed in time slices of the spine (``_time_groups``). That SQL
(``window_sql.py``) computes count, sum and mean; events are read by ``events.py`` into the
column schema of ``event_columns.py``. Every other function (min, max, last, first/last(n),
distinct, variance family, sketches) and ``Attribute`` features go through ``event_pairs``, which
feeds the same joined events to the stream engine's own aggregators, one (start, end) per row and
window (offsets, series elements and lifetime windows alike).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurebus.platform.offline.locations import OfflineLocations, offline_locations, require_locations
from featurebus.platform.offline.store import list_parts, open_store
from featurebus.platform.training.batch_rows import batch_view_rows
from featurebus.platform.training.event_columns import EventColumns, with_arrival_order
from featurebus.platform.training.event_pairs import aggregate_pairs, feature_array
from featurebus.platform.training.events import latest_event_edges_ns, read_events, view_events
from featurebus.platform.training.realtime import realtime_training_columns
from featurebus.platform.training.spine import spine_times_ns, timestamp_column, window_ends_ms
from featurebus.platform.training.window_sql import Need, Parts, Window, bounded_parts, lifetime_parts
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.kinds import AggregationFunction, AggregationLeadingEdge, WindowKind
from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.aggregations import output_dtype
from featurebus.streams.realtime import RealtimeServicePlan
from featurebus.streams.windows import series_windows

__all__ = ["get_features_for_events", "write_training_set", "training_set_from_files", "feature_column", "view_events"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")
_READ_ATTEMPTS = 3  # a read over part files, re-run after a compaction removed one it had listed
# (view, lo_ms, hi_ms) -> the view's events with a time in [lo_ms, hi_ms), as ``read_events`` gives them.
EventLoader = Callable[[StreamFeatureViewSpec, int, int], "pa.Table | None"]
# Events held in memory at once per view (about 200 bytes each with their transformation's
# intermediate frames): larger stores are processed in time slices of the spine.
_GROUP_EVENTS = 8_000_000
_DAY_MS = 86_400_000
# The partial sums each function needs (a mean is sum / count, as online). These three have a
# fast path in SQL; every other function goes through ``event_pairs`` and the engine's aggregators.
_PARTS = {
    AggregationFunction.COUNT: ("count",),
    AggregationFunction.SUM: ("sum",),
    AggregationFunction.MEAN: ("count", "sum"),
}


def _in_sql(a: AggregationSpec) -> bool:
    # Secondary-key aggregations go through event_pairs: the SQL paths have no per-key arrays.
    return a.function in _PARTS and not a.attribute and not a.secondary_key


def feature_column(view: str, feature: str) -> str:
    """Training-set column of a feature, as Tecton names it: ``<view>__<feature>``."""
    return f"{view}__{feature}"


def get_features_for_events(
    spec: WorkspaceSpec,
    service: str,
    spine: pd.DataFrame,
    root: Path,
    timestamp_key: str | None = None,
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
        spine_keys = selection.mapped_keys(view.join_keys)  # with_join_key_map: the spine's names
        missing = [k for k in spine_keys if k not in spine.columns]
        if missing:
            raise InvalidRequestError(
                f"the spine lacks join key columns {missing} of feature view {view.name!r}"
                f"{'' if spine_keys == view.join_keys else ' (as mapped by with_join_key_map)'}; "
                f"it has {list(spine.columns)}"
            )
        view_spine = _keyed_spine(spine, view.join_keys, spine_keys)
        aggregations = [by_name[f] for f in selection.features]
        namespace = selection.namespace
        if batch is not None:
            # A batch view's rows: materialized offline, else computed from its sources (platform/training/batch_rows.py).
            loader = _batch_loader(batch_view_rows(spec, batch, Path(root), offline_data))
            values = _rereading_after_compaction(
                _view_features, None, (), view, aggregations, view_spine, t_ns, Path(root), loader
            )
            fetched.update({(namespace, a.name): column for a, column in zip(aggregations, values, strict=True)})
            continue
        source = spec.source(view.source)
        locations = (
            ((spec.name, source.name),) if offline_data is None else require_locations(offline_data, spec.name, source)
        )
        values = _rereading_after_compaction(
            _view_features, source, locations, view, aggregations, view_spine, t_ns, Path(root)
        )
        fetched.update({(namespace, a.name): column for a, column in zip(aggregations, values, strict=True)})
    if realtime is not None:
        served = realtime_training_columns(realtime, spine, t_ns, fetched)
    else:
        served = [(s.namespace, f, fetched[(s.namespace, f)]) for s in service_spec.selections for f in s.features]
    taken = [feature_column(v, f) for v, f, _ in served if feature_column(v, f) in spine.columns]
    if taken:
        raise InvalidRequestError(f"the spine already has columns {taken}; rename them")
    for view_name, feature, column in served:
        result[feature_column(view_name, feature)] = column
    return result


def _keyed_spine(spine: pd.DataFrame, view_keys: tuple[str, ...], spine_keys: tuple[str, ...]) -> pd.DataFrame:
    """The spine's key columns under the view's own join key names (``with_join_key_map``: the
    spine's ``sender_id`` read as the view's ``user_id``), same rows and order."""
    if view_keys == spine_keys:
        return spine
    return pd.DataFrame({v: spine[s].to_numpy() for v, s in zip(view_keys, spine_keys, strict=True)})


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
        return with_arrival_order([EventColumns.of(view).table(frame, ts_ms)] if len(frame) else [])

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
    specs: Mapping[str, WorkspaceSpec],
    root: Path | str,
    workspace: str,
    service: str,
    spine_path: Path | str,
    output_path: Path | str,
    timestamp_key: str | None = None,
) -> pd.DataFrame:
    """The CLI's ``training-set``: spine from Parquet (or CSV with ``timestamp_key``) to Parquet;
    ``specs``: every applied workspace (a development one reads the live ones' data)."""
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


def _relative_windows(aggregation: AggregationSpec) -> list[Window]:
    """The windows of ``streams.windows.aggregation_windows`` relative to E (None: lifetime)."""
    if aggregation.window_kind == WindowKind.LIFETIME:
        return [None]
    if aggregation.window_kind == WindowKind.SERIES:
        return list(
            series_windows(
                aggregation.series_start_ms,
                aggregation.series_end_ms,
                aggregation.series_step_ms,
                aggregation.window_ms,
            )
        )
    return [(aggregation.offset_ms - aggregation.window_ms, aggregation.offset_ms)]


def _absolute_windows(
    a: AggregationSpec, view: StreamFeatureViewSpec, t_ns: np.ndarray, ends: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[start, end)`` per spine row of each window of ``a`` (``_relative_windows`` made absolute).
    An Attribute ends at T whatever the view's interval (docs/design.md §4)."""
    if a.attribute:
        ends = window_ends_ms(t_ns, None)
    result = []
    for window in _relative_windows(a):
        if window is None:
            assert view.lifetime_start_ms is not None  # compile requires it with a LifetimeWindow
            # streams.windows.lifetime_bounds: empty while E is not after the start.
            result.append(
                (np.full(len(ends), view.lifetime_start_ms, dtype=np.int64), np.maximum(ends, view.lifetime_start_ms))
            )
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
    groups = (
        [np.arange(len(t_ns))]
        if view.has_lifetime
        else _time_groups(root, locations, t_ns, view.max_reach_ms + (view.aggregation_interval_ms or 0))
    )
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


def _time_groups(
    root: Path, locations: tuple[tuple[str, str], ...], t_ns: np.ndarray, window_ms: int
) -> list[np.ndarray]:
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
    if view.aggregation_leading_edge == AggregationLeadingEdge.LATEST_EVENT_TIME and rows:
        assert source is not None  # batch views have no leading-edge option
        t_ns = latest_event_edges_ns(source, locations, root, t_ns)
    ends = window_ends_ms(t_ns, view.aggregation_interval_ms)
    # One count and/or sum per (input, window), shared by the aggregations that need it.
    needs: dict[Need, str] = {}
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
    found: Parts = {}
    if not rows:
        events = None
    elif loader is not None:
        events = loader(view, lo_ms, hi_ms)
    else:
        assert source is not None
        events = read_events(source, locations, view, root, lo_ms, hi_ms)
    if events is not None and bounded:
        found.update(bounded_parts(spine, view, events, ends, reach_ms, bounded))
    if events is not None and lifetime:
        assert view.lifetime_start_ms is not None
        found.update(lifetime_parts(spine, view, events, ends, view.lifetime_start_ms, lifetime))
    flat = [(a, window) for a, windows in zip(others, other_windows, strict=True) for window in windows]
    schema = EventColumns.of(view)
    flat_values = iter(
        aggregate_pairs(
            view, [a for a, _ in flat], schema.spine_keys(spine, events), [w for _, w in flat], events, schema.aliases
        )
        if flat
        else []
    )

    def scatter(kind: str, a: AggregationSpec, window: Window) -> tuple[np.ndarray, np.ndarray]:
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

    def finish(a: AggregationSpec, window: Window) -> np.ndarray | pd.api.extensions.ExtensionArray:
        if a.function == AggregationFunction.COUNT:
            return scatter("count", a, window)[0]
        total, no_total = scatter("sum", a, window)
        if a.function == AggregationFunction.SUM and output_dtype(a.function, a.input_dtype) == "int64":
            return pd.arrays.IntegerArray(total, no_total)
        if a.function == AggregationFunction.SUM:
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
            if a.window_kind == WindowKind.SERIES:
                columns.append(feature_array([list(v) for v in zip(*per_window_values, strict=True)], a.output_dtype))
            else:
                columns.append(feature_array(per_window_values[0], a.output_dtype))
            continue
        per_window = [finish(a, window) for window in _relative_windows(a)]
        columns.append(_as_lists(per_window, rows) if a.window_kind == WindowKind.SERIES else per_window[0])
    return columns


def _as_lists(per_window: list[np.ndarray | pd.api.extensions.ExtensionArray], rows: int) -> np.ndarray:
    """One list per row (earliest window first, nulls as None), as serving returns a series."""
    plain = [pd.Series(column, dtype=object).where(pd.notna(column), None).tolist() for column in per_window]
    lists = np.empty(rows, dtype=object)
    for row in range(rows):
        lists[row] = [column[row] for column in plain]
    return lists
