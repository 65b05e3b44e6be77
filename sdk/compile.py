"""Compile definition objects into a ``WorkspaceSpec``, validating references across objects."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pandas as pd

from featurebus.alerting import AlertRule
from featurebus.data_sources import RangedSource, plain_source
from featurebus.definitions import (
    Aggregate,
    Attribute,
    BatchFeatureView,
    BatchSource,
    DataSource,
    Entity,
    FeatureService,
    FileConfig,
    LifetimeWindow,
    PushConfig,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
    UnfilteredSource,
    duration_ms,
)
from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.feature_table import FeatureTable, compile_feature_table, table_objects, with_table_objects
from featurebus.locations import location_of
from featurebus.platform.kafka.topics import push_topic
from featurebus.realtime import RealtimeFeatureView
from featurebus.realtime_compile import compile_realtime_views, view_features
from featurebus.references import compile_reference, describe_reference
from featurebus.schemas.kinds import AggregationFunction, FileFormat, TransformationMode, ValueFormat, WindowKind
from featurebus.schemas.specs import (
    AggregationSpec,
    AlertRuleSpec,
    BatchFeatureViewSpec,
    BatchSourceSpec,
    CustomBatchConfigSpec,
    EntitySpec,
    FeatureServiceSpec,
    FieldSpec,
    FileConfigSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.streams.aggregations import aggregator_for, aggregator_of, output_dtype
from featurebus.streams.realtime import RealtimeServicePlan
from featurebus.streams.records import decode_json_records
from featurebus.streams.transform import Transformation
from featurebus.streams.windows import format_duration, series_windows

__all__ = ["compile_workspace", "default_feature_name"]


def default_feature_name(
    column: str,
    function: str,
    window_ms: int,
    interval_ms: int | None,
    *,
    window_kind: WindowKind = WindowKind.TIME,
    offset_ms: int = 0,
    series_start_ms: int = 0,
    series_end_ms: int = 0,
    series_step_ms: int = 0,
) -> str:
    """Tecton's naming: ``{column}_{function}_{window}_{interval}``, e.g. ``amt_sum_1h_continuous``;
    then ``_offset_{-offset}`` for an offset window, ``lifetime`` as the window of a lifetime one,
    and ``_series_{-start}_{-end}_{step}`` for a series (``amt_sum_1d_continuous_series_7d_0s_1d``)."""
    interval = format_duration(interval_ms) if interval_ms else "continuous"
    window = "lifetime" if window_kind == WindowKind.LIFETIME else format_duration(window_ms)
    name = f"{column}_{function}_{window}_{interval}"
    if window_kind == WindowKind.SERIES:
        return f"{name}_series_{_tecton_duration(-series_start_ms)}_{_tecton_duration(-series_end_ms)}_{format_duration(series_step_ms)}"
    if offset_ms:
        return f"{name}_offset_{format_duration(-offset_ms)}"
    return name


def _tecton_duration(ms: int) -> str:
    return format_duration(ms) if ms else "0s"  # Tecton writes a zero series end as "0s"


def _metadata(obj: Any) -> dict[str, Any]:
    return {
        "description": obj.description,
        "owner": obj.owner,
        "tags": tuple(sorted(obj.tags.items())),
        "prevent_destroy": obj.prevent_destroy,
        "defined_at": location_of(obj.site),
    }


def compile_workspace(name: str, objects: Iterable[Any]) -> WorkspaceSpec:
    entities: dict[str, Entity] = {}
    sources: dict[str, StreamSource] = {}
    batch_sources: dict[str, BatchSource] = {}
    views: dict[str, StreamFeatureView] = {}
    realtime: dict[str, RealtimeFeatureView] = {}
    services: dict[str, FeatureService] = {}
    batch_views: dict[str, BatchFeatureView] = {}
    tables: dict[str, FeatureTable] = {}
    alert_rules: dict[str, AlertRule] = {}
    # One namespace per kind of object, as in Tecton: an entity and a view may share a name.
    by_kind: tuple[tuple[type, dict[str, Any]], ...] = (
        (Entity, entities),
        (StreamSource, sources),
        (BatchSource, batch_sources),
        (StreamFeatureView, views),
        (RealtimeFeatureView, realtime),
        (BatchFeatureView, batch_views),
        (FeatureService, services),
        (FeatureTable, tables),
        (AlertRule, alert_rules),
    )
    for obj in objects:
        registry = next((found for kind, found in by_kind if isinstance(obj, kind)), None)
        if registry is None:
            continue
        _register(registry, obj)
    # Objects referenced by views and services belong to the repo even if no module exports them.
    for service in services.values():
        for ref in service.features:
            _register(
                realtime
                if isinstance(ref.view, RealtimeFeatureView)
                else batch_views
                if isinstance(ref.view, BatchFeatureView)
                else tables
                if isinstance(ref.view, FeatureTable)
                else views,
                ref.view,
            )
    _collect_realtime_upstreams(realtime, views)
    for upstream in (getattr(s, "view", None) for r in list(realtime.values()) for s in r.sources):
        if isinstance(upstream, FeatureTable):  # a realtime view may read a table's features too
            _register(tables, upstream)
    for view in list(views.values()):
        _register(sources, view.source)
        for entity in view.entities:
            _register(entities, entity)
    for upstream in (getattr(s, "view", None) for r in realtime.values() for s in r.sources):
        if isinstance(upstream, BatchFeatureView):  # a realtime view may read a batch view's features
            _register(batch_views, upstream)
    for batch_view in batch_views.values():
        for entity in batch_view.entities:
            _register(entities, entity)
        for data_source in batch_view.sources:
            plain = _plain_source(data_source)
            _register(batch_sources if isinstance(plain, BatchSource) else sources, plain)
    for table in tables.values():
        for entity in table.entities:
            _register(entities, entity)
        # A table is served and ingested as a view and a push source of its name.
        for kind, others in (
            ("StreamSource", sources),
            ("StreamFeatureView", views),
            ("RealtimeFeatureView", realtime),
        ):
            if table.name in others:
                raise table.error(
                    f"a {kind} is also named {table.name!r} ({others[table.name].site})",
                    "Rename one of them: a feature table's records are ingested under its name.",
                )
    for source in sources:
        if source in batch_sources:
            raise _duplicate(batch_sources[source], sources[source])
    clash = sorted(set(views) & set(realtime))
    if clash:
        raise realtime[clash[0]].error(f"a stream feature view is also named {clash[0]!r}", "Rename one of them.")
    clash = sorted((set(views) | set(realtime)) & set(batch_views))
    if clash:
        raise batch_views[clash[0]].error(f"another feature view is also named {clash[0]!r}", "Rename one of them.")
    view_specs = {n: _compile_view(v) for n, v in sorted(views.items())}
    batch_specs = {n: _compile_batch_view(v) for n, v in sorted(batch_views.items())}
    table_specs = [compile_feature_table(t) for _, t in sorted(tables.items())]
    upstream_features = {n: view_features(v) for n, v in view_specs.items()}
    upstream_features.update({n: view_features(v.as_view_spec()) for n, v in batch_specs.items()})
    upstream_features.update({t.name: view_features(table_objects(name, t)[1]) for t in table_specs})
    realtime_specs = {
        n: dataclasses.replace(v, **_metadata(realtime[n]))
        for n, v in compile_realtime_views(realtime, upstream_features).items()
    }
    available = {n: [a.name for a in v.aggregations] for n, v in view_specs.items()}
    available.update({n: [a.name for a in v.aggregations] for n, v in batch_specs.items()})
    available.update({t.name: [f.name for f in t.features] for t in table_specs})
    available.update({n: [f.name for f in v.features] for n, v in realtime_specs.items()})
    spec = with_table_objects(
        WorkspaceSpec(
            name=name,
            entities=tuple(_compile_entity(e) for _, e in sorted(entities.items())),
            stream_sources=tuple(_compile_source(s, name) for _, s in sorted(sources.items())),
            stream_feature_views=tuple(view_specs.values()),
            feature_services=tuple(_compile_service(s, available) for _, s in sorted(services.items())),
            realtime_feature_views=tuple(realtime_specs[n] for n in sorted(realtime_specs)),
            batch_sources=tuple(_compile_batch_source(b) for _, b in sorted(batch_sources.items())),
            batch_feature_views=tuple(batch_specs.values()),
            feature_tables=tuple(table_specs),
            alert_rules=tuple(
                _compile_alert_rule(r, available, {s.name for s in services.values()})
                for _, r in sorted(alert_rules.items())
            ),
        )
    )
    _check_realtime_fetches(spec, services)
    return spec


def _check_realtime_fetches(spec: WorkspaceSpec, services: dict[str, FeatureService]) -> None:
    """A service's realtime views and its own selections fetch views by namespace: two different
    references under one name (say a service's ``sender`` and a realtime source's ``sender``
    mapping another key) fail here rather than on the first request."""
    for service_spec in spec.feature_services:
        if not any(spec.is_realtime(s.view) for s in service_spec.selections):
            continue
        try:
            RealtimeServicePlan.build(spec, service_spec)
        except DefinitionError as exc:
            service = services[service_spec.name]
            raise DefinitionError(f"FeatureService '{service.name}' ({service.site}): {exc}.") from None


_SERVICE_KINDS = ("serving_error_rate", "serving_p99")


def _compile_alert_rule(rule: AlertRule, views: dict[str, list[str]], services: set[str]) -> AlertRuleSpec:
    """The rule's target must exist: a feature service for the serving kinds, else a feature view."""
    spec = rule.spec
    if spec.kind in _SERVICE_KINDS:
        if spec.target not in services:
            raise rule.error(
                f"target {spec.target!r} is no feature service of this repository (known: {sorted(services)})",
                "Name a FeatureService defined in the repository.",
            )
    elif spec.target not in views:
        raise rule.error(
            f"target {spec.target!r} is no feature view of this repository (known: {sorted(views)})",
            "Name a feature view defined in the repository.",
        )
    return spec


def _register(registry: dict[str, Any], obj: Any) -> None:
    previous = registry.get(obj.name)
    if previous is not None and previous is not obj:
        raise _duplicate(obj, previous)
    registry[obj.name] = obj


def _duplicate(obj: Any, previous: Any) -> DefinitionError:
    return DefinitionError(
        f"{type(obj).__name__} '{obj.name}' ({obj.site}): the name is already used by the definition at "
        f"{previous.site} (kind: {type(previous).__name__}). Rename one of them."
    )


def _file_config(config: FileConfig) -> FileConfigSpec:
    return FileConfigSpec(config.uri, FileFormat(config.file_format), config.timestamp_field)


def _collect_realtime_upstreams(realtime: dict[str, RealtimeFeatureView], views: dict[str, StreamFeatureView]) -> None:
    """Views that realtime views read belong to the workspace too (transitively)."""
    pending = list(realtime.values())
    while pending:
        for source in pending.pop().sources:
            upstream = getattr(source, "view", None)
            if isinstance(upstream, RealtimeFeatureView):
                if upstream.name not in realtime:
                    pending.append(upstream)
                _register(realtime, upstream)
            elif isinstance(upstream, StreamFeatureView):
                _register(views, upstream)


def _field(f: Any) -> FieldSpec:
    return FieldSpec(f.name, f.dtype.name)


def _compile_entity(entity: Entity) -> EntitySpec:
    return EntitySpec(entity.name, tuple(_field(k) for k in entity.join_keys), **_metadata(entity))


def _compile_source(source: StreamSource, workspace: str) -> StreamSourceSpec:
    cfg = source.stream_config
    schema = tuple(_field(f) for f in source.schema)
    batch = _file_config(source.batch_config) if source.batch_config is not None else None
    if isinstance(cfg, PushConfig):
        # Pushed records travel on the bus like any other source: one JSON push topic per source.
        kafka = KafkaConfigSpec(topics=(push_topic(workspace, source.name),), timestamp_field=source.timestamp_field)
        return StreamSourceSpec(
            source.name, schema, kafka, push=True, log_offline=cfg.log_offline, batch_config=batch, **_metadata(source)
        )
    kafka = KafkaConfigSpec(
        topics=cfg.topics,
        timestamp_field=source.timestamp_field,
        value_format=ValueFormat(cfg.value_format),
        watermark_delay_ms=cfg.watermark_delay_ms,
        bootstrap_servers=cfg.kafka_bootstrap_servers,
        avro_schema=cfg.avro_schema,
    )
    return StreamSourceSpec(source.name, schema, kafka, batch_config=batch, **_metadata(source))


def _compile_view(view: StreamFeatureView) -> StreamFeatureViewSpec:
    interval_ms = None
    if view.aggregation_interval is not None:
        interval_ms = duration_ms(
            view.aggregation_interval, "aggregation_interval", "StreamFeatureView", view.name, view.site
        )
    join_keys: list[str] = []
    for entity in view.entities:
        join_keys.extend(k.name for k in entity.join_keys)
    if len(set(join_keys)) != len(join_keys):
        raise view.error(f"its entities repeat a join key ({join_keys})", "Use entities with distinct join keys.")
    aggregations = [
        _compile_attribute(view, f) if isinstance(f, Attribute) else _compile_aggregate(view, f, interval_ms)
        for f in view.features
    ]
    names = [a.name for a in aggregations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise view.error(f"two features are both named {duplicates}", "Give one of them an explicit name=.")
    spec = StreamFeatureViewSpec(
        name=view.name,
        source=view.source.name,
        entities=tuple(e.name for e in view.entities),
        join_keys=tuple(join_keys),
        timestamp_field=view.timestamp_field,
        transformation=TransformationSpec(
            TransformationMode(view.mode), view.function.__name__, view.transformation_code
        ),
        aggregations=tuple(aggregations),
        aggregation_interval_ms=interval_ms,
        online=view.online,
        offline=view.offline,
        **_metadata(view),
        lifetime_start_ms=view.lifetime_start_ms,
        aggregation_leading_edge=view.aggregation_leading_edge,
        feature_start_ms=view.backfill.feature_start_ms,
        backfill_from_batch=view.backfill.from_batch,
        batch_schedule_ms=view.backfill.batch_schedule_ms,
        batch_trigger=view.backfill.batch_trigger,
        manual_trigger_backfill_end_ms=view.backfill.manual_trigger_backfill_end_ms,
        max_backfill_interval_ms=view.backfill.max_backfill_interval_ms,
        incremental_backfills=view.backfill.incremental_backfills,
        monitoring=view.monitoring,
        source_range=view.source_range,
    )
    if view.aggregation_secondary_key is not None:
        declared = {f.name: f.dtype.name for f in view.source.schema}
        declared.update(_derived_dtypes(spec, view.source, declared))
        keyed = _with_secondary_key(view, aggregations, declared, join_keys)
        names = [a.name for a in keyed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise view.error(f"two features are both named {duplicates}", "Give one of them an explicit name=.")
        spec = dataclasses.replace(spec, aggregations=tuple(keyed))
    enabled, skip_defaults, expectations = view.data_quality.specs(
        view.offline, [a.name for a in spec.aggregations], view.error
    )
    spec = dataclasses.replace(
        spec,
        data_quality_enabled=enabled,
        skip_default_expectations=skip_defaults,
        data_quality_expectations=expectations,
    )
    _check_columns(view, spec)
    return spec


def _derived_dtypes(spec: StreamFeatureViewSpec, source: StreamSource, declared: dict[str, str]) -> dict[str, str]:
    """Key-typed columns a pandas transformation adds to its source's (a category derived from an
    item, say), typed from a run on an empty frame: object/string columns as string, integer ones
    as int64. Empty when the transformation cannot run on no rows."""
    if spec.transformation.mode != TransformationMode.PANDAS:
        return {}
    empty = decode_json_records([], [_field(f) for f in source.schema], source.timestamp_field).frame
    try:
        result = Transformation(spec.transformation).apply(empty)
    except FeaturebusError:
        return {}
    derived = {}
    for name, dtype in result.dtypes.items():
        if str(name) in declared:
            continue
        if dtype.kind == "O" or pd.api.types.is_string_dtype(dtype):
            derived[str(name)] = "string"
        elif pd.api.types.is_integer_dtype(dtype):
            derived[str(name)] = "int64"
        else:
            derived[str(name)] = str(dtype)  # refused by _with_secondary_key, naming the type
    return derived


def _compile_aggregate(
    view: StreamFeatureView | BatchFeatureView, agg: Aggregate, interval_ms: int | None
) -> AggregationSpec:
    window = _compile_window(view, agg, interval_ms)
    dtype = agg.input_column.dtype.name
    params = agg.params
    unknown = sorted(set(params) - {"n", "percentile", "precision"})
    if unknown:
        raise DefinitionError(
            f"Aggregate in {type(view).__name__} '{view.name}' ({agg.site}): unknown function "
            f"parameters {unknown}. Use the functions of featurebus.aggregation_functions."
        )
    name = agg.name or default_feature_name(agg.input_column.name, agg.resolved_name, interval_ms=interval_ms, **window)
    try:
        # Building the aggregator validates the function, its parameters and the input type.
        function = aggregator_for(
            agg.function_name,
            dtype,
            n=params.get("n"),
            percentile=params.get("percentile"),
            precision=params.get("precision"),
        ).function  # aliases ("stddev") resolved
        out = output_dtype(function, dtype)
        if window["window_kind"] == WindowKind.SERIES:
            out = f"array<{out}>"  # one value per window of the series
        return AggregationSpec(
            name,
            function,
            agg.input_column.name,
            dtype,
            output_dtype=out,
            n=params.get("n"),
            percentile=params.get("percentile"),
            precision=params.get("precision"),
            **window,
        )
    except DefinitionError as exc:
        raise DefinitionError(
            f"Aggregate {name!r} in {type(view).__name__} '{view.name}' ({agg.site}): {exc}"
        ) from None


_SECONDARY_KEY_DTYPES = ("string", "int64", "int32")
_SCALAR_KEY_OUTPUT = {"int32": "int64"}  # keys served as input_column normalises them


def _with_secondary_key(
    view: StreamFeatureView | BatchFeatureView,
    aggregations: list[AggregationSpec],
    declared: dict[str, str],
    join_keys: list[str],
) -> list[AggregationSpec]:
    """With ``aggregation_secondary_key``: every aggregation computed per key value (its type an
    array, one element per key), preceded by Tecton's ``<key>_keys_<window>`` feature for each
    distinct window (streams/secondary_keys.py). Unchanged without one."""
    key = view.aggregation_secondary_key
    if key is None:
        return aggregations
    if key in join_keys:
        raise view.error(
            f"aggregation_secondary_key {key!r} is one of the view's join keys",
            "Use another column: the view is already aggregated per join key.",
        )
    dtype = declared.get(key)
    if dtype is None:
        known = ", ".join(sorted(declared)) or "none known at plan time"
        raise view.error(
            f"aggregation_secondary_key {key!r} is not a column of the source's schema ({known})",
            "Name a column of the source's schema (featurebus types the secondary key from it), "
            "add the column to the schema, or (stream views, mode='pandas') return it from the transformation.",
        )
    if dtype not in _SECONDARY_KEY_DTYPES:
        raise view.error(f"aggregation_secondary_key {key!r} has type {dtype}", "Use a String, Int64 or Int32 column.")
    keyed: list[AggregationSpec] = []
    keys_features: dict[str, AggregationSpec] = {}
    for a in aggregations:
        if a.window_kind != WindowKind.TIME:
            raise view.error(
                f"feature {a.name!r}: aggregation_secondary_key supports TimeWindow aggregations only",
                "Use time_window=timedelta(...) or TimeWindow(...) for the aggregations of this view.",
            )
        keyed.append(
            dataclasses.replace(
                a, output_dtype=f"array<{a.output_dtype}>", secondary_key=key, secondary_key_dtype=dtype
            )
        )
        window = format_duration(a.window_ms) + (f"_offset_{format_duration(-a.offset_ms)}" if a.offset_ms else "")
        name = f"{key}_keys_{window}"
        keys_features.setdefault(
            name,
            AggregationSpec(
                name,
                AggregationFunction.COUNT,
                key,
                dtype,
                a.window_ms,
                f"array<{_SCALAR_KEY_OUTPUT.get(dtype, dtype)}>",
                offset_ms=a.offset_ms,
                secondary_key=key,
                secondary_key_dtype=dtype,
                keys_feature=True,
            ),
        )
    return [*keys_features.values(), *keyed]


def _batch_declared_fields(view: BatchFeatureView) -> dict[str, str]:
    """The column types of a batch view's sources, where plan knows them (stream sources'
    schemas, Parquet files that exist)."""
    from featurebus.platform.batch.sources import declared_fields

    declared: dict[str, str] = {}
    for data_source in view.sources:
        source = _plain_source(data_source)
        if isinstance(source, StreamSource):
            declared.update({f.name: f.dtype.name for f in source.schema})
        elif isinstance(source, BatchSource) and isinstance(source.batch_config, FileConfig):
            declared.update({f.name: f.dtype for f in declared_fields(_file_config(source.batch_config)) or ()})
    return declared


def _compile_attribute(view: StreamFeatureView | BatchFeatureView, attribute: Attribute) -> AggregationSpec:
    """An Attribute is ``last`` over ``[T - ttl, T)`` (continuous, keeping nulls): the latest value
    before T, missing once older than the ttl (docs/design.md §4). Named after its column, as Tecton."""
    assert view.ttl is not None  # checked by StreamFeatureView and BatchFeatureView
    ttl_ms = duration_ms(view.ttl, "ttl", type(view).__name__, view.name, view.site)
    dtype = attribute.dtype.name
    spec = AggregationSpec(attribute.name, AggregationFunction.LAST, attribute.name, dtype, ttl_ms, "", attribute=True)
    try:
        aggregator_of(spec)
    except DefinitionError as exc:
        raise DefinitionError(
            f"Attribute {attribute.name!r} in {type(view).__name__} '{view.name}' ({attribute.site}): {exc}"
        ) from None
    return dataclasses.replace(spec, output_dtype=output_dtype(AggregationFunction.LAST, dtype))


def _check_columns(view: StreamFeatureView, spec: StreamFeatureViewSpec) -> None:
    """Join keys, the timestamp and every aggregated column must exist where the view reads them.

    The columns a view aggregates are the transformation's output, so (as Tecton does) the
    transformation is run once on an empty, typed frame of the source's schema to learn them.
    Python-mode views and transformations that cannot run on no rows are checked against the
    source's schema only where a column cannot have been produced by the transformation.
    """
    source = view.source
    declared = {f.name: f.dtype.name for f in source.schema}
    for entity in view.entities:
        for key in entity.join_keys:
            if key.name in declared and declared[key.name] != key.dtype.name:
                raise view.error(
                    f"entity '{entity.name}' ({entity.site}) has join key {key.name!r} of type {key.dtype.name} "
                    f"but source '{source.name}' declares it as {declared[key.name]}",
                    "Give the join key the same type in the Entity and in the source's schema.",
                )
    output = _output_columns(spec, [_field(f) for f in source.schema], source.timestamp_field)
    if output is not None:
        _require_output_columns(view, spec, output)


def _require_output_columns(
    view: StreamFeatureView | BatchFeatureView, spec: StreamFeatureViewSpec | BatchFeatureViewSpec, output: set[str]
) -> None:
    """Join keys, the timestamp and every feature's input must be columns of the transformation's output."""
    for column, role, fix in (
        *(
            (k, f"the join key {k!r}", "Keep the entity's join key columns in the transformation's output.")
            for k in spec.join_keys
        ),
        (
            spec.timestamp_field,
            f"the timestamp field {spec.timestamp_field!r}",
            "Keep the timestamp column, or pass timestamp_field=.",
        ),
        *(
            (
                a.input_column,
                f"feature {a.name!r} reads {a.input_column!r}, which",
                f"Use a column the transformation returns ({', '.join(sorted(output))}).",
            )
            for a in spec.aggregations
        ),
    ):
        if column not in output:
            raise view.error(f"{role} is not a column of the transformation's output", fix)


def _output_columns(spec: StreamFeatureViewSpec, schema: list[FieldSpec], timestamp_field: str) -> set[str] | None:
    if spec.transformation.mode != TransformationMode.PANDAS:
        return None  # a row function run on no rows says nothing about its columns
    empty = decode_json_records([], schema, timestamp_field).frame
    try:
        result = Transformation(spec.transformation).apply(empty)
    except FeaturebusError:
        return None  # it needs rows to run; the worker reports its errors on real data
    return {str(c) for c in result.columns}


def _compile_window(
    view: StreamFeatureView | BatchFeatureView, agg: Aggregate, interval_ms: int | None
) -> dict[str, Any]:
    """The window fields of an ``AggregationSpec``, validated against the view."""
    window = agg.window
    where = f"feature {agg.label!r} ({agg.site})"

    def fail(problem: str, fix: str) -> DefinitionError:
        return view.error(f"{where}: {problem}", fix)

    def whole_ms(value: Any, what: str, sign: str) -> int:
        if not isinstance(value, timedelta) or value % timedelta(milliseconds=1):
            raise fail(
                f"{what} must be a datetime.timedelta of whole milliseconds, got {value!r}",
                f"Pass e.g. {what}={sign}timedelta(hours=1).",
            )
        return value // timedelta(milliseconds=1)

    def aligned(ms: int, what: str) -> None:
        if interval_ms and ms % interval_ms:
            raise fail(
                f"{what} is not a multiple of aggregation_interval ({format_duration(interval_ms)})",
                "Make every time_window (window size, offset, series bounds) a multiple of the "
                "aggregation_interval, or use continuous mode.",
            )

    if isinstance(window, LifetimeWindow):
        if isinstance(view, BatchFeatureView):
            raise fail(
                "lifetime windows are not supported for batch feature views yet",
                "Use a TimeWindow (time_window=timedelta(...)), or a stream feature view.",
            )
        start_ms = view.lifetime_start_ms
        if start_ms is None:
            raise fail(
                "uses a LifetimeWindow but the view has no lifetime_start_time",
                "Pass lifetime_start_time=datetime(...) to @stream_feature_view (Tecton requires it too).",
            )
        aligned(start_ms, f"lifetime_start_time ({view.lifetime_start_time})")
        return {"window_kind": WindowKind.LIFETIME, "window_ms": 0}
    if isinstance(window, TimeWindow):
        window_ms = duration_ms(window.window_size, "window_size", type(view).__name__, view.name, agg.site)
        offset_ms = whole_ms(window.offset, "offset", "-")
        if offset_ms > 0:
            raise fail(
                f"TimeWindow offset must be zero or negative, got {window.offset}",
                f"Write offset=-timedelta(...): offset={_signed(-offset_ms)} ends the window "
                f"{format_duration(offset_ms)} before the reference point, as in Tecton.",
            )
        aligned(window_ms, f"the window ({format_duration(window_ms)})")
        aligned(offset_ms, f"the offset ({_signed(offset_ms)})")
        return {"window_kind": WindowKind.TIME, "window_ms": window_ms, "offset_ms": offset_ms}
    assert isinstance(window, TimeWindowSeries)
    window_ms = duration_ms(window.window_size, "window_size", "StreamFeatureView", view.name, agg.site)
    step_ms = (
        window_ms
        if window.step_size is None
        else duration_ms(window.step_size, "step_size", "StreamFeatureView", view.name, agg.site)
    )
    start_ms = whole_ms(window.series_start, "series_start", "-")
    end_ms = whole_ms(window.series_end, "series_end", "-")
    if start_ms >= 0 or end_ms > 0:
        raise fail(
            f"series_start must be negative and series_end zero or negative, got {window.series_start} "
            f"and {window.series_end}",
            "Write e.g. series_start=-timedelta(days=7), series_end=timedelta(0).",
        )
    for ms, what in (
        (window_ms, "window_size"),
        (step_ms, "step_size"),
        (start_ms, "series_start"),
        (end_ms, "series_end"),
    ):
        aligned(ms, f"{what} ({_signed(ms)})")
    span = end_ms - start_ms - window_ms
    if span < 0:
        raise fail(
            f"the window_size ({format_duration(window_ms)}) is longer than the series "
            f"({_signed(start_ms)} to {_signed(end_ms)})",
            "Use a smaller window_size or an earlier series_start.",
        )
    if span % step_ms:
        raise fail(
            f"step_size ({format_duration(step_ms)}) does not divide series_end - series_start - window_size "
            f"({_signed(span)}), so the last window would not end at series_end",
            "Choose a step_size that divides it, or move series_start or series_end.",
        )
    if len(series_windows(start_ms, end_ms, step_ms, window_ms)) < 2:
        raise fail(
            "the series has a single window (Tecton requires at least two)",
            "Use a plain TimeWindow (with offset=series_end), or a smaller step_size.",
        )
    return {
        "window_kind": WindowKind.SERIES,
        "window_ms": window_ms,
        "series_start_ms": start_ms,
        "series_end_ms": end_ms,
        "series_step_ms": step_ms,
    }


def _signed(ms: int) -> str:
    return "0s" if ms == 0 else ("-" if ms < 0 else "") + format_duration(abs(ms))


def _compile_service(service: FeatureService, features: dict[str, list[str]]) -> FeatureServiceSpec:
    selections = []
    columns: dict[str, str] = {}  # training-set column -> the reference that produces it
    for ref in service.features:
        available = features[ref.view.name]
        unknown = [f for f in ref.features if f not in available]
        if unknown:
            raise DefinitionError(
                f"FeatureService '{service.name}' ({service.site}): view '{ref.view.name}' has no feature "
                f"{unknown[0]!r}. Choose from: {', '.join(available)}."
            )
        selection = compile_reference(ref, f"FeatureService '{service.name}' ({service.site})")
        selection = dataclasses.replace(selection, features=tuple(ref.features) or tuple(available))
        described = describe_reference(ref)
        for feature in selection.features:
            column = f"{selection.namespace}__{feature}"
            if column in columns:
                raise DefinitionError(
                    f"FeatureService '{service.name}' ({service.site}): {described} and {columns[column]} both "
                    f"produce the feature '{selection.namespace}.{feature}' (training column {column!r}). "
                    f"Give one of them another name with .with_name('...'), e.g. "
                    f"{ref.view.name}.with_name('{ref.view.name}_2')."
                )
            columns[column] = described
        selections.append(selection)
    logging = None if service.logging is None else service.logging.spec
    return FeatureServiceSpec(service.name, tuple(selections), logging, **_metadata(service))


# -- batch feature views and batch sources ---------------------------------------------------------


def _plain_source(source: DataSource) -> DataSource:
    return plain_source(source)


def _function_code(function: Any, fail: Any) -> str:
    """A function's source from its ``def`` line (decorators stripped), dedented, as shipped in specs."""
    try:
        lines, _ = inspect.getsourcelines(function)
    except (OSError, TypeError):
        raise fail(
            "the function's source code cannot be read", "Define the function in a .py file of the feature repository."
        ) from None
    source = textwrap.dedent("".join(lines))
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise fail("the batch config must be a plain function", "Decorate a `def` function.")
    return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"


def _compile_batch_source(source: BatchSource) -> BatchSourceSpec:
    config = source.batch_config
    if isinstance(config, FileConfig):
        return BatchSourceSpec(source.name, _file_config(config), **_metadata(source))

    def fail(problem: str, fix: str) -> DefinitionError:
        return DefinitionError(
            f"BatchSource '{source.name}' ({source.site}): batch_config {config.name!r} "
            f"({config.site}): {problem}. {fix}"
        )

    custom = CustomBatchConfigSpec(
        config.kind,
        config.name,
        _function_code(config.function, fail),
        config.filter_parameter,
        config.supports_time_filtering,
        config.data_delay_ms,
    )
    return BatchSourceSpec(source.name, None, **_metadata(source), custom_config=custom)


def _batch_timestamp_field(view: BatchFeatureView) -> str:
    """The view's ``timestamp_field``, else its only source's (Tecton infers it the same way)."""
    if view.timestamp_field is not None:
        return view.timestamp_field
    stamps: set[str | None] = set()
    for data_source in view.sources:
        source = _plain_source(data_source)
        if isinstance(source, StreamSource):
            stamps.add(source.timestamp_field)
        elif isinstance(source, BatchSource) and isinstance(source.batch_config, FileConfig):
            stamps.add(source.batch_config.timestamp_field)
        else:
            stamps.add(None)
    if len(stamps) != 1 or None in stamps:
        raise view.error(
            "timestamp_field is missing and cannot be inferred from its sources",
            "Pass timestamp_field='<the event time column of the transformation's output>'.",
        )
    found = stamps.pop()
    assert found is not None
    return found


def _compile_batch_view(view: BatchFeatureView) -> BatchFeatureViewSpec:
    join_keys = [k.name for entity in view.entities for k in entity.join_keys]
    if len(set(join_keys)) != len(join_keys):
        raise view.error(f"its entities repeat a join key ({join_keys})", "Use entities with distinct join keys.")
    attributes = isinstance(view.features[0], Attribute)
    interval_ms = None
    if not attributes:
        # Tecton's default: tiles as wide as the schedule, so each run completes its own tiles.
        interval_ms = (
            view.batch_schedule_ms
            if view.aggregation_interval is None
            else duration_ms(
                view.aggregation_interval, "aggregation_interval", "BatchFeatureView", view.name, view.site
            )
        )
    aggregations = [
        _compile_attribute(view, f) if isinstance(f, Attribute) else _compile_aggregate(view, f, interval_ms)
        for f in view.features
    ]
    aggregations = _with_secondary_key(view, aggregations, _batch_declared_fields(view), join_keys)
    names = [a.name for a in aggregations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise view.error(f"two features are both named {duplicates}", "Give one of them an explicit name=.")
    ttl_ms = None if view.ttl is None else duration_ms(view.ttl, "ttl", "BatchFeatureView", view.name, view.site)
    spec = BatchFeatureViewSpec(
        name=view.name,
        sources=tuple(s.name for s in view.sources),
        entities=tuple(e.name for e in view.entities),
        join_keys=tuple(join_keys),
        timestamp_field=_batch_timestamp_field(view),
        transformation=TransformationSpec(
            TransformationMode(view.mode), view.function.__name__, view.transformation_code
        ),
        aggregations=tuple(aggregations),
        aggregation_interval_ms=interval_ms,
        online=view.online,
        offline=view.offline,
        **_metadata(view),
        unfiltered_sources=tuple(s.name for s in view.sources if isinstance(s, UnfilteredSource)),
        source_ranges=tuple(s.range for s in view.sources if isinstance(s, RangedSource)),
        context_parameter=view.context_parameter,
        batch_schedule_ms=view.batch_schedule_ms,
        feature_start_ms=view.feature_start_ms,
        incremental_backfills=view.incremental_backfills,
        ttl_ms=ttl_ms,
        batch_trigger=view.batch_trigger,
        monitoring=view.monitoring,
    )
    _check_batch_columns(view, spec)
    return spec


def _check_batch_columns(view: BatchFeatureView, spec: BatchFeatureViewSpec) -> None:
    """Join keys, the timestamp and every feature's column must be in the transformation's output.

    As for stream views, the transformation runs once on empty frames of its sources' columns —
    when every source's columns are known at plan time (a stream source's schema, or a Parquet
    FileConfig whose files exist); otherwise materialization reports a missing column."""
    from featurebus.platform.batch.compute import output_columns
    from featurebus.platform.batch.sources import declared_fields

    inputs = []
    for data_source in view.sources:
        source = _plain_source(data_source)
        if isinstance(source, StreamSource):
            inputs.append([_field(f) for f in source.schema])
            continue
        assert isinstance(source, BatchSource)
        fields = (
            declared_fields(_file_config(source.batch_config)) if isinstance(source.batch_config, FileConfig) else None
        )
        if fields is None:
            return
        inputs.append(fields)
    output = output_columns(spec, inputs)
    if output is not None:
        _require_output_columns(view, spec, output)
