"""The serving plan: what a workspace spec fixes about serving each of its feature services.

Built once per spec object and reused until the registry publishes a new one: the compiled view
of every selection, its store key prefix, which aggregations are served and in which wire form,
the service's join keys and feature metadata, and, for a service with realtime views, the
realtime step complete with the plan of the stream features it fetches. ``ViewAt`` is the
per-request part: what one request time fixes for a view, shared by all rows of the request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from featurebus.schemas.encoding import store_prefix, tile_key
from featurebus.schemas.errors import DefinitionError, NotFoundError
from featurebus.schemas.kinds import AggregationLeadingEdge
from featurebus.schemas.specs import FeatureServiceSpec, LoggingSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.realtime import RealtimeServing
from featurebus.serving.wire import data_type, format_time_ms
from featurebus.streams.aggregations import WindowValue, window_value
from featurebus.streams.realtime import RealtimeServicePlan
from featurebus.streams.tiles import CompiledView, read_range
from featurebus.streams.windows import window_bounds

__all__ = ["VIEW_SERVICE_PREFIX", "ServicePlan", "ViewAt", "ViewPlan", "WorkspacePlan", "plan_service"]

# The name under which a view is served alone: ``platform.training.ranges.view_service``'s.
VIEW_SERVICE_PREFIX = "__view__"


@dataclass(frozen=True)
class ViewPlan:
    compiled: CompiledView
    key_prefix: bytes  # store_key(online view name, tile key) == key_prefix + tile key
    key_names: tuple[str, ...]  # the request's names of the view's join keys (with_join_key_map), in encoding order
    picks: tuple[int, ...]  # index into the view's aggregations of each served feature
    int64: tuple[bool, ...]  # per served feature: encode as a string (as Tecton does)
    int64_elements: tuple[bool, ...]  # per served feature: an array of int64, elements as strings
    any_int64: bool  # any of the two above: the row needs the conversion pass
    is_count: tuple[bool, ...]  # per served feature: 0 means "no data", not a value
    window_values: tuple[WindowValue, ...]  # per served feature: a window's value from its tiles' partials
    empty: tuple[Any, ...]  # per served feature: its value for an entity without tiles
    # Plain time windows ending at the request time: answered by the per-request plan
    # (``ViewAt``); lifetime, offset and series windows and the latest-event-time leading edge
    # go through ``compute_values``.
    plain: bool


@dataclass(frozen=True)
class ServicePlan:
    name: str
    views: tuple[ViewPlan, ...]
    join_keys: tuple[tuple[str, str], ...]  # (name, dtype), in first-use order
    feature_meta: tuple[dict[str, Any], ...]  # {"name", "dataType"} per served feature
    problem: str | None  # why the service cannot be served (reported per request)
    realtime: RealtimeServing | None = None  # request-time views (serving/realtime.py)
    logging: LoggingSpec | None = None  # feature logging of the service (serving/feature_logging.py)

    @cached_property
    def logged_names(self) -> tuple[str, ...]:
        """The served features' names (``view.feature``), as feature logging records them."""
        return tuple(str(m["name"]) for m in self.feature_meta)


class WorkspacePlan:
    def __init__(self, spec: WorkspaceSpec) -> None:
        self.spec = spec
        self.services = {s.name: replace(plan_service(spec, s), logging=s.logging) for s in spec.feature_services}

    def view_service(self, name: str) -> ServicePlan:
        """The plan of a view served alone (every feature of it), built on first use."""
        from featurebus.platform.training.ranges import view_service

        spec, service = view_service(self.spec, name[len(VIEW_SERVICE_PREFIX) :])
        plan = plan_service(spec, spec.service(service))
        self.services[name] = plan
        return plan


def _join_key_dtypes(spec: WorkspaceSpec, view: StreamFeatureViewSpec) -> tuple[str, ...]:
    entities = {e.name: e for e in spec.entities}
    dtypes = {k.name: k.dtype for name in view.entities if name in entities for k in entities[name].join_keys}
    missing = [k for k in view.join_keys if k not in dtypes]
    if missing:
        raise DefinitionError(f"view {view.name!r}: no entity declares join key(s) {missing}")
    return tuple(dtypes[k] for k in view.join_keys)


def _unservable(spec: WorkspaceSpec, service: FeatureServiceSpec, exc: Exception) -> ServicePlan:
    problem = f"feature service {service.name!r} in workspace {spec.name!r} cannot be served: {exc}"
    return ServicePlan(service.name, (), (), (), problem)


def plan_service(spec: WorkspaceSpec, service: FeatureServiceSpec, raw: bool = False) -> ServicePlan:
    """The plan of one service; ``raw`` keeps int64 values as numbers (a realtime step's inputs)."""
    if any(spec.is_realtime(s.view) for s in service.selections):
        return _plan_realtime_service(spec, service)
    views: list[ViewPlan] = []
    join_keys: dict[str, str] = {}
    meta: list[dict[str, Any]] = []
    try:
        for selection in service.selections:
            # A batch view is served from its tiles exactly as a stream view (platform/batch/online.py).
            view = (
                spec.batch_view(selection.view).as_view_spec()
                if spec.is_batch(selection.view)
                else spec.view(selection.view)
            )
            if not view.online:
                raise DefinitionError(
                    f"feature view {view.name!r} is not materialized online; set online=True and re-apply"
                )
            dtypes = _join_key_dtypes(spec, view)
            # with_join_key_map: the request names the view's keys as the reference maps them.
            key_names = selection.mapped_keys(view.join_keys)
            for name, dtype in zip(key_names, dtypes, strict=True):
                if join_keys.setdefault(name, dtype) != dtype:
                    raise DefinitionError(
                        f"join key {name!r} is {join_keys[name]} for one view of the service and {dtype} "
                        f"for {view.name!r}; map one of them to another name with with_join_key_map"
                    )
            index = {a.name: i for i, a in enumerate(view.aggregations)}
            unknown = [f for f in selection.features if f not in index]
            if unknown:
                raise DefinitionError(f"view {view.name!r} has no feature(s) {unknown}")
            picks = tuple(index[f] for f in selection.features)
            aggs = [view.aggregations[i] for i in picks]
            compiled = CompiledView.compile(view, dtypes)
            aggregators = tuple(compiled.aggregators[i] for i in picks)
            views.append(
                ViewPlan(
                    compiled=compiled,
                    key_prefix=store_prefix(online_view_name(spec.name, view.name)),
                    key_names=key_names,
                    picks=picks,
                    int64=tuple(a.output_dtype == "int64" and not raw for a in aggs),
                    int64_elements=tuple(a.output_dtype == "array<int64>" and not raw for a in aggs),
                    any_int64=not raw and any(a.output_dtype in ("int64", "array<int64>") for a in aggs),
                    is_count=tuple(a.function == "count" for a in aggs),
                    window_values=tuple(window_value(a) for a in aggregators),
                    empty=tuple(a.result(a.initialize()) for a in aggregators),
                    plain=(
                        not compiled.has_lifetime
                        and view.aggregation_leading_edge == AggregationLeadingEdge.WALL_CLOCK_TIME
                        and all(a.window_kind == "time" and a.offset_ms == 0 for a in view.aggregations)
                    ),
                )
            )
            meta.extend(
                {"name": f"{selection.namespace}.{a.name}", "dataType": data_type(a.output_dtype)} for a in aggs
            )
    except (DefinitionError, NotFoundError) as exc:
        return _unservable(spec, service, exc)
    return ServicePlan(service.name, tuple(views), tuple(join_keys.items()), tuple(meta), None)


def _plan_realtime_service(spec: WorkspaceSpec, service: FeatureServiceSpec) -> ServicePlan:
    """Fetch the stream features unformatted (served ones and realtime inputs), then compute:
    the realtime step is built with its fetch plan, complete before anything can use it."""
    try:
        realtime_plan = RealtimeServicePlan.build(spec, service)
    except (DefinitionError, NotFoundError) as exc:
        return _unservable(spec, service, exc)
    fetch = plan_service(spec, realtime_plan.fetch, raw=True)
    realtime = RealtimeServing(realtime_plan, fetch)
    meta = tuple(
        {"name": f"{o[3]}.{o[2]}" if o[0] == "realtime" else fetch.feature_meta[o[1]]["name"], "dataType": data_type(d)}
        for o, d in zip(realtime.outputs, realtime.output_dtypes, strict=True)
    )
    return ServicePlan(service.name, fetch.views, fetch.join_keys, meta, fetch.problem, realtime)


class ViewAt:
    """What a request time fixes for one view, shared by every row of the request: the served
    aggregations grouped by window bounds (``window_bounds``, as ``compute_values`` uses them;
    aggregations over the same window share one tile slice), the tile key range covering all of
    them, and the effective time."""

    __slots__ = ("effective_time", "end_suffix", "start_suffix", "windows")

    def __init__(self, view: ViewPlan, t_ms: int, with_times: bool) -> None:
        spec = view.compiled.spec
        interval_ms = spec.aggregation_interval_ms
        if not view.plain:  # answered by the read service's general path, from the request time itself
            self.windows: list[tuple[int, int, tuple[tuple[int, int, WindowValue], ...]]] = []
            self.start_suffix, self.end_suffix, self.effective_time = b"", b"", ""
            return
        # (window start, window end) -> [(index among served features, index in the view, aggregator)]
        grouped: dict[tuple[int, int], list[tuple[int, int, WindowValue]]] = {}
        for index, (pick, value_of) in enumerate(zip(view.picks, view.window_values, strict=True)):
            bounds = window_bounds(t_ms, spec.aggregations[pick].window_ms, interval_ms)
            grouped.setdefault(bounds, []).append((index, pick, value_of))
        self.windows = [(start, end, tuple(members)) for (start, end), members in grouped.items()]
        # Over all of the view's aggregations, as read_range does: the scan is the same either way.
        start_ms, end_ms = read_range(view.compiled, t_ms)
        self.start_suffix = tile_key(b"", start_ms)  # store key = view prefix + entity + this
        self.end_suffix = tile_key(b"", end_ms)
        effective_ms = t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms
        self.effective_time = format_time_ms(effective_ms) if with_times else ""
