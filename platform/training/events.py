"""Reading a view's events from the offline store for training sets, in the declared column schema.

The offline store (``platform/offline/store.py``) holds each source's records as Parquet part
files named by their Kafka offsets. ``read_events`` scans the part files of a time range in
offset order (so a plain scan is already in arrival order), runs the view's transformation on
~1M-row chunks (the same code the stream worker runs) and returns the rows as ``EventColumns``
describes them (``event_columns.py``), numbered in arrival order. Records the stream engine did
not count (late, or ahead of their record's time: ``streams/arrival.py``) are left out, found by
replaying the engine's rule over each partition's records (``arrival_replay.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.offline.locations import OfflineLocations, require_locations
from featurebus.platform.offline.store import PartFile, list_parts, open_store
from featurebus.platform.training.arrival_replay import ArrivalReplay, later_records, stamp_select
from featurebus.platform.training.batch_rows import history_rows, oldest_store_event_ms
from featurebus.platform.training.event_columns import TS, EventColumns, with_arrival_order
from featurebus.schemas.specs import StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.streams.cutover import history_range, stream_mask
from featurebus.streams.transform import Transformation, view_input_frame

__all__ = ["date_of", "latest_event_edges_ns", "read_events", "view_events"]

_CHUNK_ROWS = 1_000_000
_DAY_MS = 86_400_000
_NS_PER_MS = 1_000_000
_ADDRESS = "_topic, _partition, _offset"


def latest_event_edges_ns(
    source: StreamSourceSpec, locations: tuple[tuple[str, str], ...], root: Path, t_ns: np.ndarray
) -> np.ndarray:
    """``AggregationLeadingEdge.LATEST_EVENT_TIME`` offline: per spine row at T, the time just
    after the newest event of the source before T (``streams.windows.leading_edge_ms``), or T
    itself when there is none, as online before the first event."""
    before_ms = -np.floor_divide(-t_ns, _NS_PER_MS)  # event < T iff event < ceil_ms(T)
    hi_ms = int(before_ms.max())
    files = [
        str(p.path)
        for workspace, name in locations
        for p in list_parts(root, workspace, name)
        if p.date <= date_of(hi_ms - 1)
    ]
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


def view_events(
    spec: WorkspaceSpec,
    view: StreamFeatureViewSpec,
    root: Path,
    lo_ms: int,
    hi_ms: int,
    offline_data: OfflineLocations | None = None,
) -> pd.DataFrame:
    """The view's transformed events with source time in ``[lo_ms, hi_ms)``: its join keys and
    ``__ts`` (``TS``: event time, ms), for callers that need to know when values change."""
    open_store(Path(root), create=False)
    source = spec.source(view.source)
    locations = (
        ((spec.name, source.name),) if offline_data is None else require_locations(offline_data, spec.name, source)
    )
    table = read_events(source, locations, view, Path(root), lo_ms, hi_ms)
    columns = [*view.join_keys, TS]
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == TS else "object") for c in columns})
    frame: pd.DataFrame = table.select([*EventColumns.of(view).keys, TS]).to_pandas()
    frame.columns = pd.Index(columns)
    return frame


def read_events(
    source: StreamSourceSpec,
    locations: tuple[tuple[str, str], ...],
    view: StreamFeatureViewSpec,
    root: Path,
    lo_ms: int,
    hi_ms: int,
) -> pa.Table | None:
    """Transformed events (``EventColumns.of(view)``) with source time in ``[lo_ms, hi_ms)``, deduplicated.

    The time range is applied to the *source* timestamp: a transformation may derive the view's
    timestamp, but must not move events later in time (the stream engine assumes the same).

    A view with batch history (``streams.cutover``) counts the files' events of
    ``[feature_start_time, T_cut)`` and the store's (the topic's) events from ``T_cut`` on, the
    split its backfill jobs and the stream engine make online. Otherwise a source with a
    ``batch_config`` contributes its files only for events older than the oldest event the offline
    store holds for it: the store begins at the topic's earliest retained record, so anything
    older can only come from the files, while the two may overlap from there on.
    """
    columns = EventColumns.of(view)
    pieces: list[pa.Table] = []
    history = history_range(view)
    if history is not None:
        history_lo, history_hi = max(lo_ms, history[0]), min(hi_ms, history[1])
    elif source.batch_config is not None:
        cutoff = oldest_store_event_ms(root, locations, source)
        history_lo, history_hi = lo_ms, hi_ms if cutoff is None else min(hi_ms, cutoff)
    else:
        history_lo = history_hi = lo_ms
    if history_lo < history_hi:
        pieces.extend(
            columns.table(frame, ts_ms) for frame, ts_ms in history_rows(source, view, history_lo, history_hi)
        )
    first_day, last_day = date_of(lo_ms), date_of(hi_ms - 1)
    # In offset order, so that a plain scan reads records in arrival order.
    parts = sorted(
        (
            p
            for workspace, name in locations
            for p in list_parts(root, workspace, name)
            if first_day <= p.date <= last_day
        ),
        key=lambda p: (p.topic, p.partition, p.first_offset),
    )
    if not parts:
        return with_arrival_order(pieces)
    files = [str(p.path) for p in parts]
    ts = source.kafka.timestamp_field
    event_ms = f"epoch_ms({_quote(ts)})"
    # The engine's arrival rule is replayed over the scan (arrival_replay.py): records after the
    # range that arrived earlier can raise a partition's watermark, so they are read too.
    later_parts = [
        p for workspace, name in locations for p in list_parts(root, workspace, name) if p.date >= date_of(hi_ms)
    ]
    replay = ArrivalReplay(source.kafka.watermark_delay_ms, later_records(later_parts, event_ms, hi_ms))

    def query(stamps: bool) -> str:
        select = ", ".join(
            [
                f"epoch_ms({_quote(f.name)}) AS {_quote(f.name)}" if f.dtype == "timestamp" else _quote(f.name)
                for f in source.schema
            ]
            + [_ADDRESS, f"{event_ms} AS __event_ms", f"{stamp_select(stamps)} AS __stamp_ms"]
        )
        file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        where = f"WHERE {event_ms} >= {lo_ms} AND {event_ms} < {hi_ms}"
        if _disjoint(parts):
            # The usual case: the files' offset ranges (from their names) cannot hold a record twice,
            # and each file is in offset order, so an order-preserving scan of the files in offset
            # order is already deduplicated and in arrival order: no sort of every event.
            return f"SELECT {select} FROM read_parquet([{file_list}], union_by_name = true) {where}"
        # Files may overlap after a crash or a manual copy; a record counts once, by its Kafka address.
        return (
            f"SELECT DISTINCT ON (_topic, _partition, _offset) {select} "
            f"FROM read_parquet([{file_list}], union_by_name = true) {where} "
            "ORDER BY _topic, _partition, _offset"
        )

    transformation = Transformation(view.transformation)
    with connect(preserve_insertion_order=True) as con:
        try:
            relation = con.sql(query(True))
        except duckdb.BinderException:  # no file keeps Kafka timestamps yet
            relation = con.sql(query(False))
        for chunk in _chunks(replay.counted_batches(relation.to_arrow_reader(_CHUNK_ROWS)), source):
            frame, ts_ms = view_input_frame(view, transformation.apply(chunk))
            counted = stream_mask(view, ts_ms)  # the stream's share (streams/cutover.py)
            if counted is not None:
                frame, ts_ms = frame.loc[counted].reset_index(drop=True), ts_ms[counted]
            if len(frame):
                pieces.append(columns.table(frame, ts_ms))
    return with_arrival_order(pieces)


def _disjoint(parts: list[PartFile]) -> bool:
    """Whether no two files (sorted by topic, partition, first offset) share an offset."""
    for before, after in itertools.pairwise(parts):
        if (before.topic, before.partition) == (
            after.topic,
            after.partition,
        ) and after.first_offset <= before.last_offset:
            return False
    return True


def _chunks(reader: Iterable[pa.RecordBatch], source: StreamSourceSpec) -> Iterator[pd.DataFrame]:
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


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def date_of(ms: int) -> str:
    return str(np.datetime64(int(ms) // _DAY_MS, "D"))
