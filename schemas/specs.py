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

from featurebus.schemas.errors import NotFoundError, StoreFormatError

__all__ = [
    "SPEC_FORMAT_VERSION",
    "FieldSpec",
    "EntitySpec",
    "KafkaConfigSpec",
    "FileConfigSpec",
    "BatchSourceSpec",
    "CustomBatchConfigSpec",
    "BatchFeatureViewSpec",
    "StreamSourceSpec",
    "TransformationSpec",
    "AggregationSpec",
    "StreamFeatureViewSpec",
    "RealtimeInputSpec",
    "CalculationSpec",
    "RealtimeFeatureViewSpec",
    "FeatureSelectionSpec",
    "FeatureServiceSpec",
    "FeatureTableSpec",
    "WorkspaceSpec",
]

# 2: descriptive metadata (owner, tags, prevent_destroy), Avro sources, file configs, batch
# sources, map/struct types; AggregationSpec's function parameters and ``attribute``.
# 3: realtime feature views and request sources. 4: window kinds (TimeWindow offset,
# LifetimeWindow, TimeWindowSeries) and the aggregation leading edge. Older documents are still
# read: every field a version added has a default that means what the older version meant.
SPEC_FORMAT_VERSION = 4
_READABLE_VERSIONS = frozenset({1, 2, 3, 4})


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: str  # a featurebus.schemas.types encoding: "int64", "array<float64>", "map<string,int64>", "struct<a:string>"


@dataclass(frozen=True)
class EntitySpec:
    name: str
    join_keys: tuple[FieldSpec, ...]
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False


@dataclass(frozen=True)
class KafkaConfigSpec:
    topics: tuple[str, ...]
    timestamp_field: str
    value_format: str = "json"
    watermark_delay_ms: int = 24 * 3600 * 1000
    bootstrap_servers: str | None = None  # None: the platform's own cluster
    # The writer's Avro record schema (JSON text) for value_format "avro" and "confluent_avro".
    avro_schema: str | None = None


@dataclass(frozen=True)
class FileConfigSpec:
    """Files holding a source's history. Compiled and kept; not read by featurebus yet."""

    uri: str
    file_format: str = "parquet"  # "parquet" | "csv" | "json"
    timestamp_field: str | None = None


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
    batch_config: FileConfigSpec | None = None
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False
    # The implicit push source of the FeatureTable of the same name (derived from its
    # FeatureTableSpec by featurebus.feature_table; plan and describe show the table instead).
    feature_table: bool = False


@dataclass(frozen=True)
class CustomBatchConfigSpec:
    """A batch source written in Python (``@pandas_batch_config`` / ``@pyarrow_batch_config``),
    shipped as source code like transformations (never a pickle).

    ``kind`` "pandas" returns a DataFrame, "pyarrow" an Arrow table; ``filter_parameter`` names the
    function's ``FilterContext`` argument, if it takes one. ``supports_time_filtering`` says the
    function itself restricts its rows to the context's range (featurebus filters again anyway).
    """

    kind: str  # "pandas" | "pyarrow"
    function_name: str
    code: str
    filter_parameter: str | None = None
    supports_time_filtering: bool = False
    data_delay_ms: int = 0


@dataclass(frozen=True)
class BatchSourceSpec:
    name: str
    # None only for a source written in Python (``custom_config``); exactly one of them is set.
    batch_config: FileConfigSpec | None
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False
    custom_config: CustomBatchConfigSpec | None = None


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
    # Parameters of the functions that take them (featurebus.aggregation_functions); None otherwise.
    n: int | None = None  # first/last(n), first/last_distinct(n)
    percentile: float | None = None  # approx_percentile
    precision: int | None = None  # approx_count_distinct, approx_percentile (None: the default)
    # An ``Attribute`` feature: ``last`` over ``[T - ttl, T)`` (window_ms = the view's ttl) that
    # keeps nulls, in continuous mode whatever the view's aggregation_interval.
    attribute: bool = False
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
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False
    lifetime_start_ms: int | None = None  # required by (and only used by) lifetime windows
    # "wall_clock_time" or "latest_event_time": where windows end (streams.windows.leading_edge_ms)
    aggregation_leading_edge: str = "wall_clock_time"
    # The view of the FeatureTable of the same name (derived from its FeatureTableSpec by
    # featurebus.feature_table; plan and describe show the table instead).
    feature_table: bool = False

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
class BatchFeatureViewSpec:
    """A batch feature view: a transformation over batch sources (or stream sources' history
    files), materialized for time ranges by ``featurebus.platform.batch.materialize``.

    ``sources`` are the names of the sources the transformation takes, in its argument order
    (batch sources first looked up, then stream sources); ``unfiltered_sources`` those passed as
    ``source.unfiltered()``. ``context_parameter`` is the transformation's
    ``materialization_context()`` argument, if it takes one. Aggregations and attributes are
    ``AggregationSpec`` exactly as for stream views, so tiles and serving are shared.
    """

    name: str
    sources: tuple[str, ...]
    entities: tuple[str, ...]
    join_keys: tuple[str, ...]
    timestamp_field: str
    transformation: TransformationSpec
    aggregations: tuple[AggregationSpec, ...]
    aggregation_interval_ms: int | None = None  # aggregate views: the tile width (default batch_schedule)
    online: bool = False
    offline: bool = False
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False
    unfiltered_sources: tuple[str, ...] = ()
    context_parameter: str | None = None
    batch_schedule_ms: int = 86_400_000
    feature_start_ms: int | None = None
    incremental_backfills: bool = False
    ttl_ms: int | None = None
    lifetime_start_ms: int | None = None
    batch_trigger: str = "scheduled"  # a BatchTriggerType value; the jobs scheduler reads it

    def as_view_spec(self) -> StreamFeatureViewSpec:
        """The same features as the view shape tiles, serving and training sets compute over.

        ``source`` names the batch view itself (there is no stream source): readers of a batch
        view get their rows from ``featurebus.platform.batch``, never from a topic."""
        return StreamFeatureViewSpec(
            name=self.name, source=self.name, entities=self.entities, join_keys=self.join_keys,
            timestamp_field=self.timestamp_field, transformation=self.transformation,
            aggregations=self.aggregations, aggregation_interval_ms=self.aggregation_interval_ms,
            online=self.online, offline=self.offline, description=self.description, owner=self.owner,
            tags=self.tags, prevent_destroy=self.prevent_destroy, lifetime_start_ms=self.lifetime_start_ms,
        )


@dataclass(frozen=True)
class RealtimeInputSpec:
    """One source of a realtime feature view, in the order the view lists its sources.

    ``kind`` "request": a ``RequestSource`` named ``name`` whose fields are ``fields``;
    ``kind`` "feature_view": the features ``fields`` (names and dtypes) of the view ``name``.
    ``parameter`` is the transformation's argument that receives it (empty for Calculations).
    """

    kind: str  # "request" | "feature_view"
    name: str
    fields: tuple[FieldSpec, ...]
    parameter: str = ""


@dataclass(frozen=True)
class CalculationSpec:
    name: str
    expr: str
    dtype: str  # inferred from the expression at compile time


@dataclass(frozen=True)
class RealtimeFeatureViewSpec:
    """A feature view computed at request time from request data and other views' features.

    Either ``transformation`` (mode "python" or "pandas", producing ``features``) or
    ``calculations`` (mode "no_transformation"; ``features`` lists their names and dtypes).
    """

    name: str
    inputs: tuple[RealtimeInputSpec, ...]
    features: tuple[FieldSpec, ...]
    mode: str  # "python" | "pandas" | "no_transformation"
    transformation: TransformationSpec | None = None
    calculations: tuple[CalculationSpec, ...] = ()
    context_parameter: str | None = None  # the transformation's RealtimeContext argument, if it takes one
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False


@dataclass(frozen=True)
class FeatureSelectionSpec:
    view: str
    features: tuple[str, ...]  # the selected feature names, in served order


@dataclass(frozen=True)
class FeatureServiceSpec:
    name: str
    selections: tuple[FeatureSelectionSpec, ...]
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False


@dataclass(frozen=True)
class FeatureTableSpec:
    """Precomputed features written through the ingestion API (Tecton's ``FeatureTable``).

    The stream worker, stores and serving never read this: it is what ``plan`` diffs and
    ``describe`` shows. It compiles onto what they do read, derived from it by
    ``featurebus.feature_table.table_objects``: a push source named after the table (records are
    ingested under the table's name) and a view of one ``Attribute`` per feature with the
    table's ttl, both marked ``feature_table=True``.
    """

    name: str
    entities: tuple[str, ...]
    join_keys: tuple[FieldSpec, ...]
    features: tuple[FieldSpec, ...]
    timestamp_field: str
    ttl_ms: int
    online: bool = False
    offline: bool = False
    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    entities: tuple[EntitySpec, ...] = ()
    stream_sources: tuple[StreamSourceSpec, ...] = ()
    stream_feature_views: tuple[StreamFeatureViewSpec, ...] = ()
    feature_services: tuple[FeatureServiceSpec, ...] = ()
    batch_sources: tuple[BatchSourceSpec, ...] = ()
    realtime_feature_views: tuple[RealtimeFeatureViewSpec, ...] = ()
    batch_feature_views: tuple[BatchFeatureViewSpec, ...] = ()
    version: int = 0  # assigned by the registry on apply
    applied_at_ms: int = 0  # assigned by the registry on apply
    # Set by `featurebus workspace create [--live]` and kept by every apply: development workspaces
    # (False) hold definitions only and are never materialized. Records written before
    # workspaces existed lack the field and read as live, as everything was then materialized.
    live: bool = True
    # Feature tables; their derived push sources and views are in stream_sources and
    # stream_feature_views (after the others), marked feature_table=True.
    feature_tables: tuple[FeatureTableSpec, ...] = ()
    format_version: int = field(default=SPEC_FORMAT_VERSION)

    def source(self, name: str) -> StreamSourceSpec:
        return _by_name(self.stream_sources, name, "stream source", self.name)

    def view(self, name: str) -> StreamFeatureViewSpec:
        return _by_name(self.stream_feature_views, name, "feature view", self.name)

    def realtime_view(self, name: str) -> RealtimeFeatureViewSpec:
        return _by_name(self.realtime_feature_views, name, "realtime feature view", self.name)

    def batch_view(self, name: str) -> BatchFeatureViewSpec:
        return _by_name(self.batch_feature_views, name, "batch feature view", self.name)

    def is_batch(self, view: str) -> bool:
        return any(v.name == view for v in self.batch_feature_views)

    def batch_source(self, name: str) -> BatchSourceSpec:
        return _by_name(self.batch_sources, name, "batch source", self.name)

    def is_realtime(self, view: str) -> bool:
        return any(v.name == view for v in self.realtime_feature_views)

    def service(self, name: str) -> FeatureServiceSpec:
        return _by_name(self.feature_services, name, "feature service", self.name)

    def feature_table(self, name: str) -> FeatureTableSpec:
        return _by_name(self.feature_tables, name, "feature table", self.name)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> WorkspaceSpec:
        raw = orjson.loads(data)
        version = raw.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise StoreFormatError(
                f"workspace spec has format version {version!r}, this featurebus reads "
                f"{SPEC_FORMAT_VERSION}; upgrade featurebus or re-apply the repository"
            )
        raw["format_version"] = SPEC_FORMAT_VERSION  # read as the current version from here on
        spec: WorkspaceSpec = _build(cls, raw)
        return spec


_Named = TypeVar("_Named", StreamSourceSpec, StreamFeatureViewSpec, RealtimeFeatureViewSpec, FeatureServiceSpec,
                 BatchFeatureViewSpec, BatchSourceSpec, FeatureTableSpec)


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
            value = _frozen(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


_NESTED.update(
    {
        (EntitySpec, "join_keys"): FieldSpec,
        (StreamSourceSpec, "schema"): FieldSpec,
        (StreamSourceSpec, "kafka"): KafkaConfigSpec,
        (StreamSourceSpec, "batch_config"): FileConfigSpec,
        (BatchSourceSpec, "batch_config"): FileConfigSpec,
        (WorkspaceSpec, "batch_sources"): BatchSourceSpec,
        (BatchSourceSpec, "custom_config"): CustomBatchConfigSpec,
        (BatchFeatureViewSpec, "transformation"): TransformationSpec,
        (BatchFeatureViewSpec, "aggregations"): AggregationSpec,
        (WorkspaceSpec, "batch_feature_views"): BatchFeatureViewSpec,
        (StreamFeatureViewSpec, "transformation"): TransformationSpec,
        (StreamFeatureViewSpec, "aggregations"): AggregationSpec,
        (FeatureServiceSpec, "selections"): FeatureSelectionSpec,
        (RealtimeInputSpec, "fields"): FieldSpec,
        (RealtimeFeatureViewSpec, "inputs"): RealtimeInputSpec,
        (RealtimeFeatureViewSpec, "features"): FieldSpec,
        (RealtimeFeatureViewSpec, "transformation"): TransformationSpec,
        (RealtimeFeatureViewSpec, "calculations"): CalculationSpec,
        (WorkspaceSpec, "realtime_feature_views"): RealtimeFeatureViewSpec,
        (WorkspaceSpec, "entities"): EntitySpec,
        (WorkspaceSpec, "stream_sources"): StreamSourceSpec,
        (WorkspaceSpec, "stream_feature_views"): StreamFeatureViewSpec,
        (WorkspaceSpec, "feature_services"): FeatureServiceSpec,
        (FeatureTableSpec, "join_keys"): FieldSpec,
        (FeatureTableSpec, "features"): FieldSpec,
        (WorkspaceSpec, "feature_tables"): FeatureTableSpec,
    }
)
