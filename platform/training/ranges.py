"""``fv.get_features_in_range(start, end)``: a view's feature values over a time range, as rows
valid from ``_valid_from`` (inclusive) to ``_valid_to`` (exclusive), as Tecton returns them.

Tecton answers from materialized feature rows. featurebus computes the values from the offline
store's events with the training-set code (so they equal what ``get_features_for_events`` and
serving return at any time in a row's range), at every time a value can change:

- continuous windows: just after each event (``t + 1 ms``, it enters ``[T - W, T)``) and when it
  leaves (``t + W + 1 ms``); ``Attribute`` features the same with ``W`` = the ttl;
- time-interval views: every interval boundary ``E`` (values hold on ``[E, E + I)``);
- ``start`` itself.

Consecutive rows of an entity with equal values are merged, so each row is a maximal period of
constant values, and an entity's rows never overlap. Entities are those with an event in
``[start - longest window, end)``: the others have only empty windows (count 0, nulls).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from featurebus.platform.offline.locations import OfflineLocations
from featurebus.platform.training.batch_rows import batch_view_rows
from featurebus.platform.training.training_sets import feature_column, get_features_for_events, view_events
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.kinds import WindowKind
from featurebus.schemas.specs import (
    AggregationSpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    StreamFeatureViewSpec,
    WorkspaceSpec,
)
from featurebus.schemas.time import to_epoch_ms
from featurebus.streams.windows import series_windows

__all__ = ["change_points", "get_features_in_range", "view_service"]

VALID_FROM, VALID_TO = "_valid_from", "_valid_to"
_TS = "__ts"


def view_service(spec: WorkspaceSpec, view: str) -> tuple[WorkspaceSpec, str]:
    """The workspace plus a service serving every feature of ``view`` (what a view answers alone)."""
    name = f"__view__{view}"
    if spec.is_realtime(view):
        features = tuple(f.name for f in spec.realtime_view(view).features)
    elif spec.is_batch(view):
        features = tuple(a.name for a in spec.batch_view(view).aggregations)
    else:
        features = tuple(a.name for a in spec.view(view).aggregations)
    service = FeatureServiceSpec(name=name, selections=(FeatureSelectionSpec(view=view, features=features),))
    return dataclasses.replace(spec, feature_services=(*spec.feature_services, service)), name


def change_points(view: StreamFeatureViewSpec, events_ms: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
    """Sorted distinct times in ``[start_ms, end_ms)`` at which one entity's values may change,
    given its event times; ``start_ms`` always included. Pure.

    An event at ``e`` is inside a window ``[T + lo, T + hi)`` exactly for ``e - hi < T <= e - lo``:
    it enters at ``e - hi + 1`` and leaves at ``e - lo + 1`` (a lifetime window never leaves)."""
    points = [np.array([start_ms], dtype=np.int64)]
    interval = view.aggregation_interval_ms
    continuous = [a for a in view.aggregations if interval is None or a.attribute]
    if interval is not None and len(continuous) < len(view.aggregations):
        first = start_ms - start_ms % interval + interval
        points.append(np.arange(first, end_ms, interval, dtype=np.int64))
    events = events_ms.astype(np.int64)
    for lo, hi in {w for a in continuous for w in _relative_windows(a)}:
        points.append(events - hi + 1)
        if lo is not None:
            # e - lo + 1 is when the event leaves; e - lo too, for a ttl read as "older than".
            points.extend([events - lo, events - lo + 1])
    candidates = np.unique(np.concatenate(points))
    return candidates[(candidates >= start_ms) & (candidates < end_ms)]


def _relative_windows(a: AggregationSpec) -> list[tuple[int | None, int]]:
    """``(lo, hi)`` of each window relative to the value's time T (lo None: since the lifetime start)."""
    if a.window_kind == WindowKind.LIFETIME:
        return [(None, 0)]
    if a.window_kind == WindowKind.SERIES:
        return list(series_windows(a.series_start_ms, a.series_end_ms, a.series_step_ms, a.window_ms))
    return [(a.offset_ms - a.window_ms, a.offset_ms)]


def get_features_in_range(
    spec: WorkspaceSpec,
    view_name: str,
    start: datetime,
    end: datetime,
    root: Path,
    entities: pd.DataFrame | None = None,
    offline_data: OfflineLocations | None = None,
) -> pd.DataFrame:
    """Join keys, one column per feature (named as the feature), ``_valid_from`` and ``_valid_to``."""
    if spec.is_realtime(view_name):
        raise InvalidRequestError(
            f"{view_name!r} is a realtime feature view: its values exist per request only; use "
            "get_features_for_events with a spine holding the request columns"
        )
    batch = spec.batch_view(view_name) if spec.is_batch(view_name) else None
    view = spec.tiled_view(view_name)
    start_ms, end_ms = _ms(start, "start"), _ms(end, "end")
    if end_ms <= start_ms:
        raise InvalidRequestError(f"end ({end}) must be after start ({start})")
    keys = list(view.join_keys)
    # Events that any window at a time in [start, end) can still cover (all, for a lifetime window).
    read_from = (
        view.lifetime_start_ms
        if view.has_lifetime and view.lifetime_start_ms is not None
        else start_ms - view.max_reach_ms - (view.aggregation_interval_ms or 0)
    )
    if batch is not None:  # its rows: materialized, else computed from its sources
        frame, ts_ms = batch_view_rows(spec, batch, root, offline_data)(max(0, read_from), end_ms)
        events = frame[keys].assign(**{_TS: ts_ms})
    else:
        events = view_events(spec, view, root, max(0, read_from), end_ms, offline_data)
    if entities is not None:
        missing = [k for k in keys if k not in entities.columns]
        if missing:
            raise InvalidRequestError(f"entities lacks join key columns {missing} of feature view {view_name!r}")
        events = events.merge(entities[keys].drop_duplicates(), on=keys, how="inner")
    features = [a.name for a in view.aggregations]
    columns = [*keys, *features, VALID_FROM, VALID_TO]
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    spine_parts = []
    for key, group in events.groupby(keys, sort=True, dropna=False):
        times = change_points(view, group[_TS].to_numpy(), start_ms, end_ms)
        part = pd.DataFrame(
            {k: [v] * len(times) for k, v in zip(keys, key if isinstance(key, tuple) else (key,), strict=True)}
        )
        part["__t"] = times
        spine_parts.append(part)
    spine = pd.concat(spine_parts, ignore_index=True)
    spine["__timestamp"] = pd.to_datetime(spine["__t"], unit="ms", utc=True)
    with_view, service = view_service(spec, view_name)
    frame = get_features_for_events(with_view, service, spine, root, "__timestamp", offline_data)
    frame = frame.rename(columns={feature_column(view_name, f): f for f in features})
    return _merge_unchanged(frame, keys, features, end_ms)[columns]


def _merge_unchanged(frame: pd.DataFrame, keys: list[str], features: list[str], end_ms: int) -> pd.DataFrame:
    """Keep each entity's rows where a value changed; each row is valid until the next one."""
    # A comparable rendering of every value (lists, NaN and <NA> included): equal text, equal value.
    rendered = frame[features].astype(str).agg("\x1f".join, axis=1)
    entity = frame[keys].astype(str).agg("\x1f".join, axis=1)
    changed = (rendered != rendered.shift()) | (entity != entity.shift())
    kept = frame[changed.to_numpy()].copy()
    kept_entity = entity[changed.to_numpy()]
    next_t = kept["__t"].shift(-1)
    last = kept_entity != kept_entity.shift(-1)
    kept[VALID_FROM] = pd.to_datetime(kept["__t"], unit="ms", utc=True)
    kept[VALID_TO] = pd.to_datetime(np.where(last, end_ms, next_t.fillna(end_ms)).astype(np.int64), unit="ms", utc=True)
    return kept.reset_index(drop=True)


def _ms(value: datetime, name: str) -> int:
    if not isinstance(value, datetime):
        raise InvalidRequestError(f"{name} must be a datetime, got {type(value).__name__}")
    return to_epoch_ms(value)
