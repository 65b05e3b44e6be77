"""Plain, versioned, JSON-serialisable specs: what definitions compile to.

Engines, stores and services read these, never user objects (no pickles in the registry).
Every spec is a frozen dataclass; ``to_json``/``from_json`` round-trip a whole workspace, and the
document carries ``SPEC_FORMAT_VERSION`` so a reader can refuse what it does not understand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from featurebus.exceptions import NotFoundError, StoreFormatError

__all__ = [
    "SPEC_FORMAT_VERSION",
    "FieldSpec",
    "EntitySpec",
    "KafkaConfigSpec",
    "StreamSourceSpec",
    "TransformationSpec",
    "AggregationSpec",
    "StreamFeatureViewSpec",
    "FeatureSelectionSpec",
    "FeatureServiceSpec",
    "WorkspaceSpec",
]

SPEC_FORMAT_VERSION = 2
# Version 1 documents are version 2 documents without window kinds (every window a plain
# ``TimeWindow``): the defaults of the new fields read them unchanged.
_READABLE_FORMAT_VERSIONS = (1, 2)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: str  # "string" | "int64" | "float64" | "bool" | "timestamp" | "array<...>"


@dataclass(frozen=True)
class EntitySpec:
    name: str
    join_keys: tuple[FieldSpec, ...]
    description: str = ""


@dataclass(frozen=True)
class KafkaConfigSpec:
    topics: tuple[str, ...]
    timestamp_field: str
    value_format: str = "json"
    watermark_delay_ms: int = 24 * 3600 * 1000
    bootstrap_servers: str | None = None  # None: the platform's own cluster


@dataclass(frozen=True)
class StreamSourceSpec:
    name: str
    schema: tuple[FieldSpec, ...]
    kafka: KafkaConfigSpec
    description: str = ""
    # A push source is written through the ingestion API onto ``kafka.topics`` (its push topic);
    # ``log_offline`` says whether the offline store keeps its records (Kafka sources: always).
    push: bool = False
    log_offline: bool = True


@dataclass(frozen=True)
class TransformationSpec:
    """A row transformation shipped as source code, not as a pickle.

    ``code`` is the function's source without decorators; it runs in a namespace that provides
    ``pd``, ``np``, ``datetime``, ``timedelta`` and ``math``; other imports go inside the body
    (as Tecton requires for the same reason).
    """

    mode: str  # "pandas" | "python"
    function_name: str
    code: str


@dataclass(frozen=True)
class AggregationSpec:
    name: str  # output feature name, e.g. "amount_sum_1h_continuous"
    function: str  # an AggregationFunction value
    input_column: str
    input_dtype: str
    window_ms: int  # window size; 0 for a lifetime window
    output_dtype: str  # "array<...>" for a window series
    # Which events a value at T covers: see ``featurebus.streams.windows.aggregation_windows``.
    # "time": [end + offset_ms - window_ms, end + offset_ms), offset_ms <= 0 (Tecton's sign);
    # "lifetime": [the view's lifetime_start_ms, end); "series": one window of window_ms per
    # step_ms from end + series_start_ms up to end + series_end_ms, one array element each.
    window_kind: str = "time"
    offset_ms: int = 0
    series_start_ms: int = 0
    series_end_ms: int = 0
    series_step_ms: int = 0

    @property
    def reach_ms(self) -> int | None:
        """How far before the window end ``E`` this aggregation's earliest window starts; None for
        a lifetime window (unbounded). Decides state retention and the offline read range."""
        if self.window_kind == "lifetime":
            return None
        if self.window_kind == "series":
            return -self.series_start_ms
        return self.window_ms - self.offset_ms


@dataclass(frozen=True)
class StreamFeatureViewSpec:
    name: str
    source: str
    entities: tuple[str, ...]
    join_keys: tuple[str, ...]
    timestamp_field: str
    transformation: TransformationSpec
    aggregations: tuple[AggregationSpec, ...]
    aggregation_interval_ms: int | None = None  # None: continuous mode
    online: bool = True
    offline: bool = True
    description: str = ""
    lifetime_start_ms: int | None = None  # required by (and only used by) lifetime windows
    # "wall_clock_time" or "latest_event_time": where windows end (streams.windows.leading_edge_ms)
    aggregation_leading_edge: str = "wall_clock_time"

    @property
    def max_reach_ms(self) -> int:
        """How far before the window end ``E`` the earliest bounded window starts (0 if none)."""
        reaches = [a.reach_ms for a in self.aggregations]
        return max((r for r in reaches if r is not None), default=0)

    @property
    def has_lifetime(self) -> bool:
        return any(a.window_kind == "lifetime" for a in self.aggregations)

    @property
    def tile_ms(self) -> int:
        """Width of one state tile: the interval, or 1 ms (event resolution) in continuous mode."""
        return self.aggregation_interval_ms or 1


@dataclass(frozen=True)
class FeatureSelectionSpec:
    view: str
    features: tuple[str, ...]  # the selected feature names, in served order


@dataclass(frozen=True)
class FeatureServiceSpec:
    name: str
    selections: tuple[FeatureSelectionSpec, ...]
    description: str = ""


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    entities: tuple[EntitySpec, ...] = ()
    stream_sources: tuple[StreamSourceSpec, ...] = ()
    stream_feature_views: tuple[StreamFeatureViewSpec, ...] = ()
    feature_services: tuple[FeatureServiceSpec, ...] = ()
    version: int = 0  # assigned by the registry on apply
    applied_at_ms: int = 0  # assigned by the registry on apply
    format_version: int = field(default=SPEC_FORMAT_VERSION)

    def source(self, name: str) -> StreamSourceSpec:
        return _by_name(self.stream_sources, name, "stream source", self.name)

    def view(self, name: str) -> StreamFeatureViewSpec:
        return _by_name(self.stream_feature_views, name, "feature view", self.name)

    def service(self, name: str) -> FeatureServiceSpec:
        return _by_name(self.feature_services, name, "feature service", self.name)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> WorkspaceSpec:
        raw = orjson.loads(data)
        version = raw.get("format_version")
        if version not in _READABLE_FORMAT_VERSIONS:
            raise StoreFormatError(
                f"workspace spec has format version {version!r}, this featurebus reads "
                f"{SPEC_FORMAT_VERSION}; upgrade featurebus or re-apply the repository"
            )
        spec: WorkspaceSpec = _build(cls, {**raw, "format_version": SPEC_FORMAT_VERSION})
        return spec


_Named = TypeVar("_Named", StreamSourceSpec, StreamFeatureViewSpec, FeatureServiceSpec)


def _by_name(items: tuple[_Named, ...], name: str, kind: str, workspace: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(sorted(i.name for i in items)) or "none"
    raise NotFoundError(f"no {kind} named {name!r} in workspace {workspace!r} (known: {known})")


_NESTED: dict[tuple[type, str], type] = {}


def _build(cls: type, raw: dict[str, Any]) -> Any:
    """Rebuild a frozen dataclass tree from ``dataclasses.asdict`` output (lists -> tuples)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        nested = _NESTED.get((cls, f.name))
        if nested is not None and value is not None:
            value = tuple(_build(nested, v) for v in value) if isinstance(value, list) else _build(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


_NESTED.update(
    {
        (EntitySpec, "join_keys"): FieldSpec,
        (StreamSourceSpec, "schema"): FieldSpec,
        (StreamSourceSpec, "kafka"): KafkaConfigSpec,
        (StreamFeatureViewSpec, "transformation"): TransformationSpec,
        (StreamFeatureViewSpec, "aggregations"): AggregationSpec,
        (FeatureServiceSpec, "selections"): FeatureSelectionSpec,
        (WorkspaceSpec, "entities"): EntitySpec,
        (WorkspaceSpec, "stream_sources"): StreamSourceSpec,
        (WorkspaceSpec, "stream_feature_views"): StreamFeatureViewSpec,
        (WorkspaceSpec, "feature_services"): FeatureServiceSpec,
    }
)
