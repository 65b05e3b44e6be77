"""Explain a value: for one feature of one entity at a time ``T``, the source records that
produced it (Kafka topic, partition, offset, event time), grouped into the tiles the stream engine
folds them into, and the same value recomputed by the training-set path (the point-in-time join
over the offline store) so the two can be compared with what serving answers.

Read from the offline store (every row there names the Kafka record it came from), so it works
for any ``T`` the store covers; the records are the source's, before the view's transformation
(which may filter or derive columns: the training-set value is the authority for the result).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import duckdb

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.control.spec_cache import SpecCache
from featurebus.platform.offline.store import list_parts, open_store
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import FeatureSelectionSpec, FeatureServiceSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.streams.windows import aggregation_windows, tile_start

__all__ = ["Explainer", "explain_value"]

_MAX_RECORDS = 1000  # shown; the count and the training-set value always cover every record
_EXPLAIN_SERVICE = "__explain"


def _view(spec: WorkspaceSpec, name: str) -> StreamFeatureViewSpec:
    for view in spec.stream_feature_views:
        if view.name == name:
            return view
    raise NotFoundError(
        f"workspace {spec.name!r} has no stream feature view {name!r}; explain covers stream views "
        f"({', '.join(v.name for v in spec.stream_feature_views) or 'none here'})"
    )


def _source_records(
    root: Path, spec: WorkspaceSpec, view: StreamFeatureViewSpec, keys: dict[str, str], lo_ms: int, hi_ms: int
) -> tuple[list[dict[str, Any]], int, str]:
    """Up to ``_MAX_RECORDS`` records of the entity with event time in ``[lo_ms, hi_ms)``, their
    total count, and a note when the source cannot be filtered by the join keys."""
    source = spec.source(view.source)
    columns = {f.name for f in source.schema}
    missing = [k for k in view.join_keys if k not in columns]
    if missing:
        return [], 0, f"the join keys {missing} are derived by the transformation: no raw records to show"
    parts = [str(p.path) for p in list_parts(root, spec.name, source.name)]
    if not parts:
        return [], 0, "the offline store holds no records of this source yet"
    ts = source.kafka.timestamp_field
    value_columns = [
        c for c in dict.fromkeys([*(a.input_column for a in view.aggregations), *view.join_keys]) if c in columns
    ]
    where = " AND ".join([f'"{k}" = ?' for k in view.join_keys] + [f'epoch_ms("{ts}") >= ?', f'epoch_ms("{ts}") < ?'])
    select = ", ".join(f'"{c}"' for c in value_columns)
    query = (
        f'SELECT _topic, _partition, _offset, epoch_ms("{ts}") AS event_ms, {select} '
        f"FROM read_parquet(?, union_by_name = true) WHERE {where} ORDER BY event_ms, _partition, _offset"
    )
    params: list[Any] = [parts, *(keys[k] for k in view.join_keys), lo_ms, hi_ms]
    with duckdb.connect() as connection:
        frame = connection.execute(query, params).fetch_df()
    records: list[dict[str, Any]] = []
    for row in frame.head(_MAX_RECORDS).to_dict("records"):
        record: dict[str, Any] = {
            str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()
        }
        for field in ("_partition", "_offset", "event_ms"):
            record[field] = int(row[field])
        records.append(record)
    return records, len(frame), ""


def _tiles(records: list[dict[str, Any]], interval_ms: int | None, column: str) -> list[dict[str, Any]]:
    """The records grouped as the engine tiles them: by ``aggregation_interval`` in time-interval
    mode; in continuous mode every event time is its own 1 ms tile."""
    width = interval_ms or 1
    tiles: dict[int, dict[str, Any]] = {}
    for record in records:
        start = tile_start(record["event_ms"], width)
        tile = tiles.setdefault(start, {"startMs": start, "endMs": start + width, "records": 0, "sum": 0.0})
        tile["records"] += 1
        value = record.get(column)
        if isinstance(value, int | float) and not isinstance(value, bool):
            tile["sum"] += float(value)
    return list(tiles.values())


def _training_value(
    root: Path, spec: WorkspaceSpec, view: StreamFeatureViewSpec, feature: str, keys: dict[str, str], at_ms: int
) -> Any:
    # Imported here: the training-set path pulls pandas/pyarrow machinery the rest of the control
    # plane never needs.
    import pandas as pd

    from featurebus.platform.training.training_sets import feature_column, get_features_for_events

    probe = dataclasses.replace(
        spec,
        feature_services=(FeatureServiceSpec(_EXPLAIN_SERVICE, (FeatureSelectionSpec(view.name, (feature,)),)),),
    )
    spine = pd.DataFrame({**{k: [keys[k]] for k in view.join_keys}, "ts": [pd.Timestamp(at_ms, unit="ms", tz="UTC")]})
    frame = get_features_for_events(probe, _EXPLAIN_SERVICE, spine, root, timestamp_key="ts")
    value = frame[feature_column(view.name, feature)].iloc[0]
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def explain_value(
    root: Path, spec: WorkspaceSpec, view_name: str, feature: str, keys: dict[str, str], at_ms: int
) -> dict[str, Any]:
    view = _view(spec, view_name)
    aggregation = next((a for a in view.aggregations if a.name == feature), None)
    if aggregation is None:
        raise NotFoundError(
            f"view {view_name!r} has no feature {feature!r}; it has {', '.join(a.name for a in view.aggregations)}"
        )
    missing = [k for k in view.join_keys if not keys.get(k)]
    if missing:
        raise InvalidRequestError(f"give a value for the join keys {missing} of view {view_name!r}")
    open_store(root, create=False)  # NotFoundError naming what to run when there is no store
    windows = aggregation_windows(aggregation, at_ms, view.aggregation_interval_ms, view.lifetime_start_ms)
    lo_ms, hi_ms = min(w[0] for w in windows), max(w[1] for w in windows)
    records, count, note = _source_records(root, spec, view, keys, lo_ms, hi_ms)
    return {
        "workspace": spec.name,
        "view": view.name,
        "feature": feature,
        "servedName": f"{view.name}.{feature}",
        "joinKeys": {k: keys[k] for k in view.join_keys},
        "atMs": at_ms,
        "function": aggregation.function.value if hasattr(aggregation.function, "value") else str(aggregation.function),
        "inputColumn": aggregation.input_column,
        "mode": "continuous" if view.aggregation_interval_ms is None else "time-interval",
        "intervalMs": view.aggregation_interval_ms,
        "windows": [{"startMs": lo, "endMs": hi} for lo, hi in windows],
        "recordCount": count,
        "records": records,
        "recordsTruncated": count > len(records),
        "tiles": _tiles(records, view.aggregation_interval_ms, aggregation.input_column),
        "note": note,
        "trainingSetValue": _training_value(root, spec, view, feature, keys, at_ms),
    }


class Explainer:
    """The guarded entry: feature values are data, so it needs the consumer role (as get-features)."""

    def __init__(self, specs: SpecCache, guard: Guard) -> None:
        self._specs = specs
        self._guard = guard

    def explain(
        self, call: Call, root: Path | None, workspace: str, view: str, feature: str, keys: dict[str, str], at_ms: int
    ) -> dict[str, Any]:
        self._guard.check(call, workspace, Action.READ_ONLINE, "explain")
        if root is None:
            raise NotFoundError("this control plane has no offline store configured (run it from `featurebus up`)")
        spec = self._specs.get(workspace)
        if spec is None:
            raise NotFoundError(f"workspace {workspace!r} does not exist")
        return explain_value(root, spec, view, feature, keys, at_ms)
