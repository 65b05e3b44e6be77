"""Compile definition objects into a ``WorkspaceSpec``, validating references across objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from featurebus.definitions import Entity, FeatureService, PushConfig, StreamFeatureView, StreamSource, duration_ms
from featurebus.exceptions import DefinitionError
from featurebus.platform.topics import push_topic
from featurebus.realtime import RealtimeFeatureView
from featurebus.realtime_compile import compile_realtime_views, view_features
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
from featurebus.streams.aggregations import aggregator_for, output_dtype
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
    realtime: dict[str, RealtimeFeatureView] = {}
    services: dict[str, FeatureService] = {}
    for obj in objects:
        registry: dict[str, Any] | None = (
            entities if isinstance(obj, Entity)
            else sources if isinstance(obj, StreamSource)
            else views if isinstance(obj, StreamFeatureView)
            else realtime if isinstance(obj, RealtimeFeatureView)
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
    for service in services.values():
        for ref in service.features:
            _register_view(realtime if isinstance(ref.view, RealtimeFeatureView) else views, ref.view)
    _collect_realtime_upstreams(realtime, views)
    for view in list(views.values()):
        sources.setdefault(view.source.name, view.source)
        for entity in view.entities:
            entities.setdefault(entity.name, entity)
    clash = sorted(set(views) & set(realtime))
    if clash:
        raise realtime[clash[0]].error(f"a stream feature view is also named {clash[0]!r}", "Rename one of them.")
    view_specs = {n: _compile_view(v) for n, v in sorted(views.items())}
    realtime_specs = compile_realtime_views(realtime, {n: view_features(v) for n, v in view_specs.items()})
    available = {n: [a.name for a in v.aggregations] for n, v in view_specs.items()}
    available.update({n: [f.name for f in v.features] for n, v in realtime_specs.items()})
    return WorkspaceSpec(
        name=name,
        entities=tuple(_compile_entity(e) for _, e in sorted(entities.items())),
        stream_sources=tuple(_compile_source(s, name) for _, s in sorted(sources.items())),
        stream_feature_views=tuple(view_specs.values()),
        feature_services=tuple(_compile_service(s, available) for _, s in sorted(services.items())),
        realtime_feature_views=tuple(realtime_specs[n] for n in sorted(realtime_specs)),
    )


def _register_view(registry: dict[str, Any], view: Any) -> None:
    known = registry.get(view.name)
    if known is not None and known is not view:
        raise view.error("another view with this name is defined elsewhere", "Rename one of them.")
    registry.setdefault(view.name, view)


def _collect_realtime_upstreams(realtime: dict[str, RealtimeFeatureView], views: dict[str, StreamFeatureView]) -> None:
    """Views that realtime views read belong to the workspace too (transitively)."""
    pending = list(realtime.values())
    while pending:
        for source in pending.pop().sources:
            upstream = getattr(source, "view", None)
            if isinstance(upstream, RealtimeFeatureView):
                if upstream.name not in realtime:
                    pending.append(upstream)
                _register_view(realtime, upstream)
            elif isinstance(upstream, StreamFeatureView):
                _register_view(views, upstream)


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
    aggregations: list[AggregationSpec] = []
    for agg in view.features:
        window_ms = agg.window_ms
        if interval_ms and window_ms % interval_ms:
            raise view.error(
                f"the window of {agg.name or agg.input_column.name!r} ({format_duration(window_ms)}) is not a "
                f"multiple of aggregation_interval ({format_duration(interval_ms)})",
                "Make every time_window a multiple of the aggregation_interval.",
            )
        dtype = agg.input_column.dtype.name
        try:
            aggregator_for(agg.function, dtype)
        except DefinitionError as exc:
            raise DefinitionError(f"Aggregate in StreamFeatureView '{view.name}' ({agg.site}): {exc}") from None
        name = agg.name or default_feature_name(agg.input_column.name, agg.function, window_ms, interval_ms)
        aggregations.append(
            AggregationSpec(name, agg.function, agg.input_column.name, dtype, window_ms, output_dtype(agg.function, dtype))
        )
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


def _compile_service(service: FeatureService, features: dict[str, list[str]]) -> FeatureServiceSpec:
    selections = []
    for ref in service.features:
        available = features[ref.view.name]
        unknown = [f for f in ref.features if f not in available]
        if unknown:
            raise DefinitionError(
                f"FeatureService '{service.name}' ({service.site}): view '{ref.view.name}' has no feature "
                f"{unknown[0]!r}. Choose from: {', '.join(available)}."
            )
        selections.append(FeatureSelectionSpec(ref.view.name, tuple(ref.features) or tuple(available)))
    return FeatureServiceSpec(service.name, tuple(selections), service.description)
