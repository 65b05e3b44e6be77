"""Compile definition objects into a ``WorkspaceSpec``, validating references across objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from featurebus.definitions import (
    Aggregate,
    Attribute,
    Entity,
    FeatureService,
    PushConfig,
    StreamFeatureView,
    StreamSource,
    duration_ms,
)
from featurebus.exceptions import DefinitionError
from featurebus.platform.topics import push_topic
from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.streams.aggregations import aggregator_of, output_dtype
from featurebus.streams.windows import format_duration

__all__ = ["compile_workspace", "default_feature_name"]


def default_feature_name(column: str, function: str, window_ms: int, interval_ms: int | None) -> str:
    """Tecton's naming: ``{column}_{function}_{window}_{interval}``, e.g. ``amt_sum_1h_continuous``."""
    interval = format_duration(interval_ms) if interval_ms else "continuous"
    return f"{column}_{function}_{format_duration(window_ms)}_{interval}"


def compile_workspace(name: str, objects: Iterable[Any]) -> WorkspaceSpec:
    entities: dict[str, Entity] = {}
    sources: dict[str, StreamSource] = {}
    views: dict[str, StreamFeatureView] = {}
    services: dict[str, FeatureService] = {}
    for obj in objects:
        registry: dict[str, Any] | None = (
            entities if isinstance(obj, Entity)
            else sources if isinstance(obj, StreamSource)
            else views if isinstance(obj, StreamFeatureView)
            else services if isinstance(obj, FeatureService)
            else None
        )
        if registry is None:
            continue
        previous = registry.get(obj.name)
        if previous is not None and previous is not obj:
            raise DefinitionError(
                f"{type(obj).__name__} '{obj.name}' ({obj.site}): the name is already used by the "
                f"definition at {previous.site}. Rename one of them."
            )
        registry[obj.name] = obj
    # Objects referenced by views and services belong to the repo even if no module exports them.
    for view in list(views.values()):
        sources.setdefault(view.source.name, view.source)
        for entity in view.entities:
            entities.setdefault(entity.name, entity)
    for service in services.values():
        for ref in service.features:
            known = views.get(ref.view.name)
            if known is not None and known is not ref.view:
                raise ref.view.error("another view with this name is defined elsewhere", "Rename one of them.")
            views.setdefault(ref.view.name, ref.view)
    view_specs = {n: _compile_view(v) for n, v in sorted(views.items())}
    return WorkspaceSpec(
        name=name,
        entities=tuple(_compile_entity(e) for _, e in sorted(entities.items())),
        stream_sources=tuple(_compile_source(s, name) for _, s in sorted(sources.items())),
        stream_feature_views=tuple(view_specs.values()),
        feature_services=tuple(_compile_service(s, view_specs) for _, s in sorted(services.items())),
    )


def _field(f: Any) -> FieldSpec:
    return FieldSpec(f.name, f.dtype.name)


def _compile_entity(entity: Entity) -> EntitySpec:
    return EntitySpec(entity.name, tuple(_field(k) for k in entity.join_keys), entity.description)


def _compile_source(source: StreamSource, workspace: str) -> StreamSourceSpec:
    cfg = source.stream_config
    schema = tuple(_field(f) for f in source.schema)
    if isinstance(cfg, PushConfig):
        # Pushed records travel on the bus like any other source: one JSON push topic per source.
        kafka = KafkaConfigSpec(topics=(push_topic(workspace, source.name),), timestamp_field=source.timestamp_field)
        return StreamSourceSpec(source.name, schema, kafka, source.description, push=True, log_offline=cfg.log_offline)
    kafka = KafkaConfigSpec(
        topics=cfg.topics,
        timestamp_field=source.timestamp_field,
        value_format=cfg.value_format,
        watermark_delay_ms=cfg.watermark_delay_ms,
        bootstrap_servers=cfg.kafka_bootstrap_servers,
    )
    return StreamSourceSpec(source.name, schema, kafka, source.description)


def _compile_view(view: StreamFeatureView) -> StreamFeatureViewSpec:
    interval_ms = None
    if view.aggregation_interval is not None:
        interval_ms = duration_ms(view.aggregation_interval, "aggregation_interval", "StreamFeatureView", view.name, view.site)
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
    return StreamFeatureViewSpec(
        name=view.name,
        source=view.source.name,
        entities=tuple(e.name for e in view.entities),
        join_keys=tuple(join_keys),
        timestamp_field=view.timestamp_field,
        transformation=TransformationSpec(view.mode, view.function.__name__, view.transformation_code),
        aggregations=tuple(aggregations),
        aggregation_interval_ms=interval_ms,
        online=view.online,
        offline=view.offline,
        description=view.description,
    )


def _compile_aggregate(view: StreamFeatureView, agg: Aggregate, interval_ms: int | None) -> AggregationSpec:
    window_ms = agg.window_ms
    if interval_ms and window_ms % interval_ms:
        raise view.error(
            f"the window of {agg.name or agg.input_column.name!r} ({format_duration(window_ms)}) is not a "
            f"multiple of aggregation_interval ({format_duration(interval_ms)})",
            "Make every time_window a multiple of the aggregation_interval.",
        )
    dtype = agg.input_column.dtype.name
    params = agg.params
    unknown = sorted(set(params) - {"n", "percentile", "precision"})
    if unknown:
        raise DefinitionError(f"Aggregate in StreamFeatureView '{view.name}' ({agg.site}): unknown function "
                              f"parameters {unknown}. Use the functions of featurebus.aggregation_functions.")
    name = agg.name or default_feature_name(agg.input_column.name, agg.resolved_name, window_ms, interval_ms)
    try:
        # Building the aggregator validates the function, its parameters and the input type.
        spec = AggregationSpec(name, agg.function_name, agg.input_column.name, dtype, window_ms, "",
                               n=params.get("n"), percentile=params.get("percentile"),
                               precision=params.get("precision"))
        function = aggregator_of(spec).function.value  # aliases ("stddev") stored by their own name
        return dataclasses.replace(spec, function=function, output_dtype=output_dtype(function, dtype))
    except DefinitionError as exc:
        raise DefinitionError(f"Aggregate {name!r} in StreamFeatureView '{view.name}' ({agg.site}): {exc}") from None


def _compile_attribute(view: StreamFeatureView, attribute: Attribute) -> AggregationSpec:
    """An Attribute is ``last`` over ``[T - ttl, T)`` (continuous, keeping nulls): the latest value
    before T, missing once older than the ttl (DESIGN.md §4). Named after its column, as Tecton."""
    assert view.ttl is not None  # checked by StreamFeatureView
    ttl_ms = duration_ms(view.ttl, "ttl", "StreamFeatureView", view.name, view.site)
    dtype = attribute.dtype.name
    spec = AggregationSpec(attribute.name, "last", attribute.name, dtype, ttl_ms, "", attribute=True)
    try:
        aggregator_of(spec)
    except DefinitionError as exc:
        raise DefinitionError(f"Attribute {attribute.name!r} in StreamFeatureView '{view.name}' "
                              f"({attribute.site}): {exc}") from None
    return dataclasses.replace(spec, output_dtype=output_dtype("last", dtype))


def _compile_service(service: FeatureService, views: dict[str, StreamFeatureViewSpec]) -> FeatureServiceSpec:
    selections = []
    for ref in service.features:
        view = views[ref.view.name]
        available = [a.name for a in view.aggregations]
        unknown = [f for f in ref.features if f not in available]
        if unknown:
            raise DefinitionError(
                f"FeatureService '{service.name}' ({service.site}): view '{view.name}' has no feature "
                f"{unknown[0]!r}. Choose from: {', '.join(available)}."
            )
        selections.append(FeatureSelectionSpec(view.name, tuple(ref.features) or tuple(available)))
    return FeatureServiceSpec(service.name, tuple(selections), service.description)
