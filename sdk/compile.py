"""Compile definition objects into a ``WorkspaceSpec``, validating references across objects."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from featurebus.definitions import (
    Aggregate,
    Entity,
    FeatureService,
    LifetimeWindow,
    PushConfig,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
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
from featurebus.streams.aggregations import aggregator_for, output_dtype
from featurebus.streams.windows import format_duration, series_windows

__all__ = ["compile_workspace", "default_feature_name"]


def default_feature_name(
    column: str,
    function: str,
    window_ms: int,
    interval_ms: int | None,
    *,
    window_kind: str = "time",
    offset_ms: int = 0,
    series_start_ms: int = 0,
    series_end_ms: int = 0,
    series_step_ms: int = 0,
) -> str:
    """Tecton's naming: ``{column}_{function}_{window}_{interval}``, e.g. ``amt_sum_1h_continuous``;
    then ``_offset_{-offset}`` for an offset window, ``lifetime`` as the window of a lifetime one,
    and ``_series_{-start}_{-end}_{step}`` for a series (``amt_sum_1d_continuous_series_7d_0s_1d``)."""
    interval = format_duration(interval_ms) if interval_ms else "continuous"
    window = "lifetime" if window_kind == "lifetime" else format_duration(window_ms)
    name = f"{column}_{function}_{window}_{interval}"
    if window_kind == "series":
        return f"{name}_series_{_tecton_duration(-series_start_ms)}_{_tecton_duration(-series_end_ms)}_{format_duration(series_step_ms)}"
    if offset_ms:
        return f"{name}_offset_{format_duration(-offset_ms)}"
    return name


def _tecton_duration(ms: int) -> str:
    return format_duration(ms) if ms else "0s"  # Tecton writes a zero series end as "0s"


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
    aggregations: list[AggregationSpec] = []
    for agg in view.features:
        window = _compile_window(view, agg, interval_ms)
        dtype = agg.input_column.dtype.name
        try:
            aggregator_for(agg.function, dtype)
        except DefinitionError as exc:
            raise DefinitionError(f"Aggregate in StreamFeatureView '{view.name}' ({agg.site}): {exc}") from None
        name = agg.name or default_feature_name(agg.input_column.name, agg.function, interval_ms=interval_ms, **window)
        out = output_dtype(agg.function, dtype)
        if window["window_kind"] == "series":
            out = f"array<{out}>"
        aggregations.append(AggregationSpec(name, agg.function, agg.input_column.name, dtype, output_dtype=out, **window))
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
        lifetime_start_ms=view.lifetime_start_ms,
        aggregation_leading_edge=view.aggregation_leading_edge.value,
    )


def _compile_window(view: StreamFeatureView, agg: Aggregate, interval_ms: int | None) -> dict[str, Any]:
    """The window fields of an ``AggregationSpec``, validated against the view."""
    window = agg.window
    where = f"feature {agg.label!r} ({agg.site})"

    def fail(problem: str, fix: str) -> DefinitionError:
        return view.error(f"{where}: {problem}", fix)

    def whole_ms(value: Any, what: str, sign: str) -> int:
        if not isinstance(value, timedelta) or value % timedelta(milliseconds=1):
            raise fail(f"{what} must be a datetime.timedelta of whole milliseconds, got {value!r}",
                       f"Pass e.g. {what}={sign}timedelta(hours=1).")
        return value // timedelta(milliseconds=1)

    def aligned(ms: int, what: str) -> None:
        if interval_ms and ms % interval_ms:
            raise fail(f"{what} is not a multiple of aggregation_interval ({format_duration(interval_ms)})",
                       "Make every time_window (window size, offset, series bounds) a multiple of the "
                       "aggregation_interval, or use continuous mode.")

    if isinstance(window, LifetimeWindow):
        start_ms = view.lifetime_start_ms
        if start_ms is None:
            raise fail("uses a LifetimeWindow but the view has no lifetime_start_time",
                       "Pass lifetime_start_time=datetime(...) to @stream_feature_view (Tecton requires it too).")
        aligned(start_ms, f"lifetime_start_time ({view.lifetime_start_time})")
        return {"window_kind": "lifetime", "window_ms": 0}
    if isinstance(window, TimeWindow):
        window_ms = duration_ms(window.window_size, "window_size", "StreamFeatureView", view.name, agg.site)
        offset_ms = whole_ms(window.offset, "offset", "-")
        if offset_ms > 0:
            raise fail(f"TimeWindow offset must be zero or negative, got {window.offset}",
                       f"Write offset=-timedelta(...): offset={_signed(-offset_ms)} ends the window "
                       f"{format_duration(offset_ms)} before the reference point, as in Tecton.")
        aligned(window_ms, f"the window ({format_duration(window_ms)})")
        aligned(offset_ms, f"the offset ({_signed(offset_ms)})")
        return {"window_kind": "time", "window_ms": window_ms, "offset_ms": offset_ms}
    assert isinstance(window, TimeWindowSeries)
    window_ms = duration_ms(window.window_size, "window_size", "StreamFeatureView", view.name, agg.site)
    step_ms = window_ms if window.step_size is None else duration_ms(
        window.step_size, "step_size", "StreamFeatureView", view.name, agg.site)
    start_ms = whole_ms(window.series_start, "series_start", "-")
    end_ms = whole_ms(window.series_end, "series_end", "-")
    if start_ms >= 0 or end_ms > 0:
        raise fail(f"series_start must be negative and series_end zero or negative, got {window.series_start} "
                   f"and {window.series_end}", "Write e.g. series_start=-timedelta(days=7), series_end=timedelta(0).")
    for ms, what in ((window_ms, "window_size"), (step_ms, "step_size"), (start_ms, "series_start"), (end_ms, "series_end")):
        aligned(ms, f"{what} ({_signed(ms)})")
    span = end_ms - start_ms - window_ms
    if span < 0:
        raise fail(f"the window_size ({format_duration(window_ms)}) is longer than the series "
                   f"({_signed(start_ms)} to {_signed(end_ms)})", "Use a smaller window_size or an earlier series_start.")
    if span % step_ms:
        raise fail(f"step_size ({format_duration(step_ms)}) does not divide series_end - series_start - window_size "
                   f"({_signed(span)}), so the last window would not end at series_end",
                   "Choose a step_size that divides it, or move series_start or series_end.")
    if len(series_windows(start_ms, end_ms, step_ms, window_ms)) < 2:
        raise fail("the series has a single window (Tecton requires at least two)",
                   "Use a plain TimeWindow (with offset=series_end), or a smaller step_size.")
    return {"window_kind": "series", "window_ms": window_ms, "series_start_ms": start_ms, "series_end_ms": end_ms,
            "series_step_ms": step_ms}


def _signed(ms: int) -> str:
    return "0s" if ms == 0 else ("-" if ms < 0 else "") + format_duration(abs(ms))


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
