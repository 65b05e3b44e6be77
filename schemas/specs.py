"""Plain, versioned, JSON-serialisable specs: what definitions compile to.

Engines, stores and services read these, never user objects (no pickles in the registry).
Every spec is a frozen dataclass; ``to_json``/``from_json`` round-trip a whole workspace, and the
document carries ``SPEC_FORMAT_VERSION`` so a reader can refuse what it does not understand.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson

from featurebus.schemas.errors import DefinitionError, NotFoundError, StoreFormatError
from featurebus.schemas.kinds import (
    AggregationFunction,
    AggregationLeadingEdge,
    BatchConfigKind,
    BatchTriggerType,
    FileFormat,
    RealtimeInputKind,
    RealtimeMode,
    TransformationMode,
    ValueFormat,
    WindowKind,
)
from featurebus.schemas.time_range import SourceRangeSpec

__all__ = [
    "SPEC_FORMAT_VERSION",
    "ExpectationSpec",
    "LoggingSpec",
    "LOCATION_FIELD",
    "METADATA_FIELDS",
    "AlertRuleSpec",
    "DefinitionLocationSpec",
    "DescribedSpec",
    "ViewMonitoringSpec",
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
# (The closed sets became enums and the metadata fields one base class without a new version:
# the JSON is the same bytes, tests/unit/test_spec_contract.py checks it against older documents.)
# 5: batch views' time-bounded sources (``select_range``: ``source_ranges``, schemas/time_range.py).
# 6: key remapping (``with_name`` / ``with_join_key_map``: ``FeatureSelectionSpec.name`` and
# ``join_key_map``, the same on ``RealtimeInputSpec``) and secondary-key aggregations
# (``AggregationSpec.secondary_key``).
# 6 also: stream views' batch history (feature_start_ms, backfill_from_batch, stream_cutover_ms and how
# backfills are cut: streams/cutover.py); a reader ignoring the cut-over would count events twice.
# 6 also: a stream view's ``source_range`` (``select_range`` bounding its batch history's reads).
# 7: alerting (views' ``monitoring``: Tecton's monitor_freshness, expected_feature_freshness,
#    alert_email; the workspace's ``alert_rules``).
SPEC_FORMAT_VERSION = 7
_READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5, 6, 7})

# The descriptive fields every named object carries: changing them changes no feature value.
METADATA_FIELDS = ("description", "owner", "tags", "prevent_destroy")
# Where the object was written. Kept apart from METADATA_FIELDS (what users set) because the SDK
# records it: the plan treats a change of it as harmless metadata (a moved definition is an
# update that recomputes nothing) so the registry and the UI always show the current file:line.
LOCATION_FIELD = "defined_at"


def _metadata_after(anchor: str, *, description_after: str | None = None) -> dict[str, str]:
    """Where the metadata fields sit in a spec's JSON: each maps to the field it follows."""
    return {
        "description": description_after or anchor,
        "owner": anchor if description_after else "description",
        "tags": "owner",
        "prevent_destroy": "tags",
        LOCATION_FIELD: "prevent_destroy",
    }


@dataclass(frozen=True)
class DefinitionLocationSpec:
    """Where a definition was written: its file relative to the repository root (or as Python
    named it, for a file outside the repository) and the line of the call that defined it."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, kw_only=True)
class DescribedSpec:
    """The descriptive metadata of a named object (entity, source, view, service, table).

    Declared once here; the fields stay flat on each spec (``view.owner``), keyword-only. In the
    JSON each spec keeps them where they were when every spec declared its own copy
    (``_METADATA_AFTER``), so documents are the same bytes as before this base existed.
    """

    _METADATA_AFTER: ClassVar[dict[str, str]]

    description: str = ""
    owner: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs sorted by key: specs stay hashable
    prevent_destroy: bool = False
    defined_at: DefinitionLocationSpec | None = None  # None: compiled before locations were recorded


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: (
        str  # a featurebus.schemas.types encoding: "int64", "array<float64>", "map<string,int64>", "struct<a:string>"
    )


@dataclass(frozen=True)
class EntitySpec(DescribedSpec):
    _METADATA_AFTER = _metadata_after("join_keys")

    name: str
    join_keys: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class KafkaConfigSpec:
    topics: tuple[str, ...]
    timestamp_field: str
    value_format: ValueFormat = ValueFormat.JSON
    watermark_delay_ms: int = 24 * 3600 * 1000
    bootstrap_servers: str | None = None  # None: the platform's own cluster
    # The writer's Avro record schema (JSON text) for value_format "avro" and "confluent_avro".
    avro_schema: str | None = None


@dataclass(frozen=True)
class FileConfigSpec:
    """Files holding a source's history. Compiled and kept; not read by featurebus yet."""

    uri: str
    file_format: FileFormat = FileFormat.PARQUET
    timestamp_field: str | None = None


@dataclass(frozen=True)
class StreamSourceSpec(DescribedSpec):
    _METADATA_AFTER = _metadata_after("batch_config", description_after="kafka")

    name: str
    schema: tuple[FieldSpec, ...]
    kafka: KafkaConfigSpec
    # A push source is written through the ingestion API onto ``kafka.topics`` (its push topic);
    # ``log_offline`` says whether the offline store keeps its records (Kafka sources: always).
    push: bool = False
    log_offline: bool = True
    batch_config: FileConfigSpec | None = None
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

    kind: BatchConfigKind
    function_name: str
    code: str
    filter_parameter: str | None = None
    supports_time_filtering: bool = False
    data_delay_ms: int = 0


@dataclass(frozen=True)
class BatchSourceSpec(DescribedSpec):
    _METADATA_AFTER = _metadata_after("batch_config")

    name: str
    # None only for a source written in Python (``custom_config``); exactly one of them is set.
    batch_config: FileConfigSpec | None
    custom_config: CustomBatchConfigSpec | None = None


@dataclass(frozen=True)
class TransformationSpec:
    """A row transformation shipped as source code, not as a pickle.

    ``code`` is the function's source without decorators; it runs in a namespace that provides
    ``pd``, ``np``, ``datetime``, ``timedelta`` and ``math``; other imports go inside the body
    (as Tecton requires for the same reason).
    """

    mode: TransformationMode
    function_name: str
    code: str


@dataclass(frozen=True)
class AggregationSpec:
    name: str  # output feature name, e.g. "amount_sum_1h_continuous"
    function: AggregationFunction
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
    window_kind: WindowKind = WindowKind.TIME
    offset_ms: int = 0
    series_start_ms: int = 0
    series_end_ms: int = 0
    series_step_ms: int = 0
    # ``aggregation_secondary_key``: the value is computed per secondary key value (``secondary_key``,
    # of ``secondary_key_dtype``) and served as an array ordered by those values; ``keys_feature``
    # marks Tecton's ``<secondary_key>_keys_<window>`` feature, the array of the keys themselves
    # (streams/secondary_keys.py).
    secondary_key: str | None = None
    secondary_key_dtype: str = ""
    keys_feature: bool = False

    @property
    def reach_ms(self) -> int | None:
        """How far before the window end ``E`` this aggregation's earliest window starts; None for
        a lifetime window (unbounded). Decides state retention and the offline read range."""
        if self.window_kind == WindowKind.LIFETIME:
            return None
        if self.window_kind == WindowKind.SERIES:
            return -self.series_start_ms
        return self.window_ms - self.offset_ms


@dataclass(frozen=True)
class ViewMonitoringSpec:
    """Tecton's monitoring parameters of a feature view. ``expected_freshness_ms`` None: the
    default derived from the view (``featurebus.platform.monitoring.workspace_rules``)."""

    monitor_freshness: bool = False
    expected_freshness_ms: int | None = None
    alert_emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertRuleSpec:
    """A user-declared alert rule (``featurebus.AlertRule``), as the evaluator reads it; its
    fields mirror ``featurebus.platform.monitoring.rules.AlertRule`` (``kind`` is a RuleKind value)."""

    name: str
    kind: str
    target: str
    threshold: float | None = None
    for_s: float = 0.0
    repeat_interval_s: float = 3600.0
    alert_emails: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExpectationSpec:
    """A user-declared data-quality bound: ``statistic`` of ``feature`` per bucket within
    ``[min_value, max_value]`` (either may be None). ``statistic`` is a
    ``featurebus.platform.monitoring.expectations.Statistic`` value, checked at plan time."""

    feature: str
    statistic: str
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class LoggingSpec:
    """Feature logging of a service (Tecton's ``LoggingConfig``): the share of requests logged."""

    sample_rate: float = 1.0
    log_effective_times: bool = False


@dataclass(frozen=True)
class StreamFeatureViewSpec(DescribedSpec):
    _METADATA_AFTER = _metadata_after("offline")

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
    lifetime_start_ms: int | None = None  # required by (and only used by) lifetime windows
    # Where windows end (streams.windows.leading_edge_ms)
    aggregation_leading_edge: AggregationLeadingEdge = AggregationLeadingEdge.WALL_CLOCK_TIME
    # Batch history (Tecton's backfill from the source's batch_config; streams/cutover.py):
    # events before feature_start_ms count nowhere; with ``backfill_from_batch`` the events before
    # ``stream_cutover_ms`` (fixed once, at the apply that first gives the view its history, and
    # kept by every later apply) come from the batch_config files and the stream counts the rest.
    feature_start_ms: int | None = None
    backfill_from_batch: bool = False
    stream_cutover_ms: int | None = None
    # How backfill jobs are cut (platform/jobs/schedule.py); they change no feature value.
    batch_schedule_ms: int | None = None
    batch_trigger: BatchTriggerType = BatchTriggerType.SCHEDULED
    manual_trigger_backfill_end_ms: int | None = None
    max_backfill_interval_ms: int | None = None
    incremental_backfills: bool = False
    # ``source=stream_source.select_range(...)``: bounds the batch_config rows each backfill
    # window reads (streams/cutover.py ``history_read_range``); the stream itself is never filtered.
    source_range: SourceRangeSpec | None = None
    # The view of the FeatureTable of the same name (derived from its FeatureTableSpec by
    # featurebus.feature_table; plan and describe show the table instead).
    feature_table: bool = False
    # Data quality (platform/monitoring/quality_store.py): statistics per feature and hour as the
    # offline materializer writes the view's events; older specs read as Tecton's default (on).
    data_quality_enabled: bool = True
    skip_default_expectations: bool = False
    data_quality_expectations: tuple[ExpectationSpec, ...] = ()
    monitoring: ViewMonitoringSpec | None = None  # None: no alerting parameters given

    @property
    def max_reach_ms(self) -> int:
        """How far before the window end ``E`` the earliest bounded window starts (0 if none)."""
        reaches = [a.reach_ms for a in self.aggregations]
        return max((r for r in reaches if r is not None), default=0)

    @property
    def has_lifetime(self) -> bool:
        return any(a.window_kind == WindowKind.LIFETIME for a in self.aggregations)

    @property
    def tile_ms(self) -> int:
        """Width of one state tile: the interval, or 1 ms (event resolution) in continuous mode."""
        return self.aggregation_interval_ms or 1


@dataclass(frozen=True)
class BatchFeatureViewSpec(DescribedSpec):
    """A batch feature view: a transformation over batch sources (or stream sources' history
    files), materialized for time ranges by ``featurebus.platform.batch.materialize``.

    ``sources`` are the names of the sources the transformation takes, in its argument order
    (batch sources first looked up, then stream sources); ``unfiltered_sources`` those passed as
    ``source.unfiltered()``. ``context_parameter`` is the transformation's
    ``materialization_context()`` argument, if it takes one. Aggregations and attributes are
    ``AggregationSpec`` exactly as for stream views, so tiles and serving are shared.
    """

    _METADATA_AFTER = _metadata_after("offline")

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
    unfiltered_sources: tuple[str, ...] = ()
    context_parameter: str | None = None
    batch_schedule_ms: int = 86_400_000
    feature_start_ms: int | None = None
    incremental_backfills: bool = False
    ttl_ms: int | None = None
    lifetime_start_ms: int | None = None
    batch_trigger: BatchTriggerType = BatchTriggerType.SCHEDULED  # the jobs scheduler reads it
    # Sources passed as ``source.select_range(start, end)``: each read over its own range.
    source_ranges: tuple[SourceRangeSpec, ...] = ()
    monitoring: ViewMonitoringSpec | None = None  # None: no monitoring parameters given

    def as_view_spec(self) -> StreamFeatureViewSpec:
        """The same features as the view shape tiles, serving and training sets compute over.

        ``source`` names the batch view itself (there is no stream source): readers of a batch
        view get their rows from ``featurebus.platform.batch``, never from a topic."""
        return StreamFeatureViewSpec(
            name=self.name,
            source=self.name,
            entities=self.entities,
            join_keys=self.join_keys,
            timestamp_field=self.timestamp_field,
            transformation=self.transformation,
            aggregations=self.aggregations,
            aggregation_interval_ms=self.aggregation_interval_ms,
            online=self.online,
            offline=self.offline,
            description=self.description,
            owner=self.owner,
            tags=self.tags,
            prevent_destroy=self.prevent_destroy,
            defined_at=self.defined_at,
            lifetime_start_ms=self.lifetime_start_ms,
        )


@dataclass(frozen=True)
class RealtimeInputSpec:
    """One source of a realtime feature view, in the order the view lists its sources.

    ``kind`` "request": a ``RequestSource`` named ``name`` whose fields are ``fields``;
    ``kind`` "feature_view": the features ``fields`` (names and dtypes) of the view ``name``.
    ``parameter`` is the transformation's argument that receives it (empty for Calculations).
    ``namespace`` and ``join_key_map`` are the reference's ``with_name`` / ``with_join_key_map``
    (see ``FeatureSelectionSpec``): the same view may be a source twice under two namespaces.
    """

    kind: RealtimeInputKind
    name: str
    fields: tuple[FieldSpec, ...]
    parameter: str = ""
    namespace: str = ""
    join_key_map: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """What this source is called among the view's inputs (and in Calculations)."""
        return self.namespace or self.name

    def as_selection(self) -> FeatureSelectionSpec:
        """The features this source fetches, as a feature service selection."""
        return FeatureSelectionSpec(self.name, tuple(f.name for f in self.fields), self.namespace, self.join_key_map)


@dataclass(frozen=True)
class CalculationSpec:
    name: str
    expr: str
    dtype: str  # inferred from the expression at compile time


@dataclass(frozen=True)
class RealtimeFeatureViewSpec(DescribedSpec):
    """A feature view computed at request time from request data and other views' features.

    Either ``transformation`` (mode "python" or "pandas", producing ``features``) or
    ``calculations`` (mode "no_transformation"; ``features`` lists their names and dtypes).
    """

    _METADATA_AFTER = _metadata_after("context_parameter")

    name: str
    inputs: tuple[RealtimeInputSpec, ...]
    features: tuple[FieldSpec, ...]
    mode: RealtimeMode
    transformation: TransformationSpec | None = None
    calculations: tuple[CalculationSpec, ...] = ()
    context_parameter: str | None = None  # the transformation's RealtimeContext argument, if it takes one


@dataclass(frozen=True)
class FeatureSelectionSpec:
    """A feature service's use of one view (Tecton's ``FeatureReference``).

    ``name`` is the ``with_name`` namespace (empty: the view's name), which prefixes the served
    names (``<namespace>.<feature>``) and training-set columns (``<namespace>__<feature>``).
    ``join_key_map`` holds ``with_join_key_map``'s (view join key, request/spine key) pairs, sorted:
    the view's entity is looked up under the mapped names, so one view can be joined twice.
    """

    view: str
    features: tuple[str, ...]  # the selected feature names, in served order
    name: str = ""
    join_key_map: tuple[tuple[str, str], ...] = ()

    @property
    def namespace(self) -> str:
        return self.name or self.view

    def mapped_keys(self, view_keys: tuple[str, ...]) -> tuple[str, ...]:
        """The request (or spine) names of ``view_keys``, in their order."""
        mapping = dict(self.join_key_map)
        return tuple(mapping.get(k, k) for k in view_keys)


@dataclass(frozen=True)
class FeatureServiceSpec(DescribedSpec):
    _METADATA_AFTER = _metadata_after("selections")

    name: str
    selections: tuple[FeatureSelectionSpec, ...]
    logging: LoggingSpec | None = None  # None: requests are not logged


@dataclass(frozen=True)
class FeatureTableSpec(DescribedSpec):
    """Precomputed features written through the ingestion API (Tecton's ``FeatureTable``).

    The stream worker, stores and serving never read this: it is what ``plan`` diffs and
    ``describe`` shows. It compiles onto what they do read, derived from it by
    ``featurebus.feature_table.table_objects``: a push source named after the table (records are
    ingested under the table's name) and a view of one ``Attribute`` per feature with the
    table's ttl, both marked ``feature_table=True``.
    """

    _METADATA_AFTER = _metadata_after("offline")

    name: str
    entities: tuple[str, ...]
    join_keys: tuple[FieldSpec, ...]
    features: tuple[FieldSpec, ...]
    timestamp_field: str
    ttl_ms: int
    online: bool = False
    offline: bool = False


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
    alert_rules: tuple[AlertRuleSpec, ...] = ()  # user-declared rules (featurebus.AlertRule)
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

    def tiled_view(self, name: str) -> StreamFeatureViewSpec:
        """The stream or batch view ``name`` in the shape tiles, serving and training sets compute
        over (a batch view through ``BatchFeatureViewSpec.as_view_spec``)."""
        return self.batch_view(name).as_view_spec() if self.is_batch(name) else self.view(name)

    def join_key_dtypes(self, view: StreamFeatureViewSpec | BatchFeatureViewSpec) -> tuple[str, ...]:
        """The dtypes of ``view``'s join keys, in its join key order, from its entities."""
        entities = {e.name: e for e in self.entities}
        dtypes = {k.name: k.dtype for name in view.entities if name in entities for k in entities[name].join_keys}
        missing = [k for k in view.join_keys if k not in dtypes]
        if missing:
            raise DefinitionError(
                f"feature view {view.name!r} in workspace {self.name!r}: no entity of the view "
                f"declares join key(s) {missing}; re-apply the repository"
            )
        return tuple(dtypes[k] for k in view.join_keys)

    def to_json(self) -> bytes:
        return orjson.dumps(_to_wire(self))

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
        spec: WorkspaceSpec = _build(cls, raw, f"workspace {raw.get('name')!r}")
        return spec


_Named = TypeVar(
    "_Named",
    StreamSourceSpec,
    StreamFeatureViewSpec,
    RealtimeFeatureViewSpec,
    FeatureServiceSpec,
    BatchFeatureViewSpec,
    BatchSourceSpec,
    FeatureTableSpec,
)


def _by_name(items: tuple[_Named, ...], name: str, kind: str, workspace: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(sorted(i.name for i in items)) or "none"
    raise NotFoundError(f"no {kind} named {name!r} in workspace {workspace!r} (known: {known})")


# -- the JSON codec ------------------------------------------------------------------------------
# Writing: the dataclass tree as JSON objects, fields in wire order, tuples as arrays, enum
# members as their values. Reading: each field decoded by its declared type (nested specs,
# tuples, optional values, enums), so a new spec class or field needs no registration here.


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _to_wire(getattr(value, name)) for name in _wire_order(type(value))}
    if isinstance(value, tuple | list):
        return [_to_wire(v) for v in value]
    return value  # orjson writes a StrEnum member as its value


@functools.cache
def _wire_order(cls: type) -> tuple[str, ...]:
    """The dataclass fields in JSON order: declaration order, except that the metadata of a
    ``DescribedSpec`` sits where the spec's ``_METADATA_AFTER`` says (see ``DescribedSpec``)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not issubclass(cls, DescribedSpec):
        return tuple(names)
    placed = (*METADATA_FIELDS, LOCATION_FIELD)
    order = [n for n in names if n not in placed]
    for name in placed:  # in this order, so each one's anchor is already placed
        order.insert(order.index(cls._METADATA_AFTER[name]) + 1, name)
    return tuple(order)


_Decoder = Callable[[Any, str], Any]  # (JSON value, where it is for error messages) -> field value


def _build(cls: type, raw: Any, where: str) -> Any:
    """Rebuild the frozen dataclass ``cls`` from its JSON object (a field missing from an older
    document takes its default, which means what the older version meant)."""
    if not isinstance(raw, dict):
        raise StoreFormatError(
            f"{where}: expected a JSON object for {cls.__name__}, got {raw!r}; re-apply the repository"
        )
    decoders = _decoders(cls)
    kwargs = {name: decode(raw[name], f"{where}.{name}") for name, decode in decoders.items() if name in raw}
    return cls(**kwargs)


@functools.cache
def _decoders(cls: type) -> dict[str, _Decoder]:
    hints = typing.get_type_hints(cls)
    return {f.name: _decoder(hints[f.name]) for f in dataclasses.fields(cls)}


def _decoder(hint: Any) -> _Decoder:
    """How to read a JSON value into a field declared as ``hint``."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in args if a is not type(None)]  # specs only use ``X | None``
        decode_inner = _decoder(inner)
        return lambda value, where: None if value is None else decode_inner(value, where)
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            element = _decoder(args[0])
            return lambda value, where: tuple(element(v, f"{where}[{i}]") for i, v in enumerate(_array(value, where)))
        items = [_decoder(a) for a in args]
        return lambda value, where: tuple(
            d(v, f"{where}[{i}]") for i, (d, v) in enumerate(zip(items, _array(value, where, len(items)), strict=True))
        )
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return functools.partial(_build, hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return functools.partial(_member, hint)
    return lambda value, where: value  # str, int, float, bool: JSON already has the type


def _array(value: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        expected = "a JSON array" if length is None else f"a JSON array of {length}"
        raise StoreFormatError(f"{where}: expected {expected}, got {value!r}; re-apply the repository")
    return value


def _member(kind: type[enum.Enum], value: Any, where: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise StoreFormatError(
            f"{where} is {value!r}, not one of the {kind.__name__} values {allowed}; "
            "upgrade featurebus or re-apply the repository"
        ) from None
