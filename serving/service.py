"""Feature serving without a web framework: specs + online store + clock -> Tecton-shaped answers.

Everything that depends only on a workspace's spec (compiled views, each service's feature plan,
its metadata) is built once per spec object and reused until the registry publishes a new one;
what depends on the request time (window bounds, the scanned key range) once per request, for
all its rows; a row does only the key encoding, one store scan per view, and the window merge
of the served features.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import decode_tiles, store_prefix, tile_key
from featurebus.schemas.errors import DefinitionError, InvalidRequestError, NotFoundError
from featurebus.schemas.specs import FeatureServiceSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.realtime import RealtimeServing
from featurebus.serving.request_surface import FeatureDoc, feature_docs
from featurebus.serving.tile_cache import TileCache
from featurebus.streams.aggregations import Aggregator
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX, latest_event_time
from featurebus.streams.tiles import CompiledView, Tile, compute_values, prefix_range, read_range
from featurebus.streams.windows import WALL_CLOCK_TIME, leading_edge_ms, window_bounds

__all__ = ["FeatureServer", "MetadataOptions", "VIEW_SERVICE_PREFIX", "data_type", "format_time_ms"]

# The name under which a view is served alone: ``platform.training.ranges.view_service``'s.
VIEW_SERVICE_PREFIX = "__view__"

# Past every store key of an entity (its prefix + an 8-byte tile start).
_ENTITY_END = b"\xff" * 16  # past every tile key suffix (start + shard)
PRESENT = "PRESENT"
MISSING_DATA = "MISSING_DATA"


@dataclass(frozen=True)
class MetadataOptions:
    include_names: bool = True  # names are always sent; kept for Tecton request compatibility
    include_data_types: bool = False
    include_effective_times: bool = False
    include_serving_status: bool = False

    @classmethod
    def parse(cls, raw: MetadataOptions | Mapping[str, Any] | None) -> MetadataOptions:
        """From Tecton's camelCase ``metadataOptions`` (snake_case accepted too)."""
        if raw is None or isinstance(raw, MetadataOptions):
            return raw or _NO_OPTIONS
        if not isinstance(raw, Mapping):
            raise InvalidRequestError("metadataOptions must be an object of booleans")

        def flag(camel: str, snake: str) -> bool:
            return bool(raw.get(camel, raw.get(snake, False)))

        return cls(
            include_names=True,
            include_data_types=flag("includeDataTypes", "include_data_types"),
            include_effective_times=flag("includeEffectiveTimes", "include_effective_times"),
            include_serving_status=flag("includeServingStatus", "include_serving_status"),
        )


_NO_OPTIONS = MetadataOptions()


def data_type(dtype: str) -> dict[str, Any]:
    """Tecton's ``dataType`` object for a spec dtype (``array<T>`` nests an ``elementType``)."""
    if dtype.startswith("array<") and dtype.endswith(">"):
        return {"type": "array", "elementType": data_type(dtype[6:-1])}
    return {"type": dtype}


def format_time_ms(t_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.250Z``."""
    seconds, millis = divmod(t_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


@dataclass(frozen=True)
class _ViewPlan:
    compiled: CompiledView
    key_prefix: bytes  # store_key(online view name, tile key) == key_prefix + tile key
    key_names: tuple[str, ...]  # the view's join keys, in encoding order
    picks: tuple[int, ...]  # index into the view's aggregations of each served feature
    int64: tuple[bool, ...]  # per served feature: encode as a string (as Tecton does)
    int64_elements: tuple[bool, ...]  # per served feature: an array of int64, elements as strings
    any_int64: bool  # any of the two above: the row needs the conversion pass
    is_count: tuple[bool, ...]  # per served feature: 0 means "no data", not a value
    aggregators: tuple[Aggregator, ...]  # per served feature
    empty: tuple[Any, ...]  # per served feature: its value for an entity without tiles
    # Plain time windows ending at the request time: answered by the per-request plan
    # (``_ViewAt``); lifetime, offset and series windows and the latest-event-time leading edge
    # go through ``compute_values``.
    plain: bool


@dataclass(frozen=True)
class _ServicePlan:
    name: str
    views: tuple[_ViewPlan, ...]
    join_keys: tuple[tuple[str, str], ...]  # (name, dtype), in first-use order
    feature_meta: tuple[dict[str, Any], ...]  # {"name", "dataType"} per served feature
    problem: str | None  # why the service cannot be served (reported per request)
    realtime: RealtimeServing | None = None  # request-time views (serving/realtime.py)


class _WorkspacePlan:
    def __init__(self, spec: WorkspaceSpec) -> None:
        self.spec = spec
        self.services = {s.name: _plan_service(spec, s) for s in spec.feature_services}

    def view_service(self, name: str) -> _ServicePlan:
        """The plan of a view served alone (every feature of it), built on first use."""
        from featurebus.platform.training.ranges import view_service

        spec, service = view_service(self.spec, name[len(VIEW_SERVICE_PREFIX):])
        plan = _plan_service(spec, spec.service(service))
        self.services[name] = plan
        return plan


def _join_key_dtypes(spec: WorkspaceSpec, view: StreamFeatureViewSpec) -> tuple[str, ...]:
    entities = {e.name: e for e in spec.entities}
    dtypes = {k.name: k.dtype for name in view.entities if name in entities for k in entities[name].join_keys}
    missing = [k for k in view.join_keys if k not in dtypes]
    if missing:
        raise DefinitionError(f"view {view.name!r}: no entity declares join key(s) {missing}")
    return tuple(dtypes[k] for k in view.join_keys)


def _plan_service(spec: WorkspaceSpec, service: FeatureServiceSpec, raw: bool = False) -> _ServicePlan:
    if any(spec.is_realtime(s.view) for s in service.selections):
        return _plan_realtime_service(spec, service)
    views: list[_ViewPlan] = []
    join_keys: dict[str, str] = {}
    meta: list[dict[str, Any]] = []
    try:
        for selection in service.selections:
            # A batch view is served from its tiles exactly as a stream view (platform/batch/online.py).
            view = (spec.batch_view(selection.view).as_view_spec() if spec.is_batch(selection.view)
                    else spec.view(selection.view))
            if not view.online:
                raise DefinitionError(
                    f"feature view {view.name!r} is not materialized online; set online=True and re-apply"
                )
            dtypes = _join_key_dtypes(spec, view)
            for name, dtype in zip(view.join_keys, dtypes, strict=True):
                join_keys.setdefault(name, dtype)
            index = {a.name: i for i, a in enumerate(view.aggregations)}
            unknown = [f for f in selection.features if f not in index]
            if unknown:
                raise DefinitionError(f"view {view.name!r} has no feature(s) {unknown}")
            picks = tuple(index[f] for f in selection.features)
            aggs = [view.aggregations[i] for i in picks]
            compiled = CompiledView.compile(view, dtypes)
            aggregators = tuple(compiled.aggregators[i] for i in picks)
            views.append(
                _ViewPlan(
                    compiled=compiled,
                    key_prefix=store_prefix(online_view_name(spec.name, view.name)),
                    key_names=view.join_keys,
                    picks=picks,
                    int64=tuple(a.output_dtype == "int64" and not raw for a in aggs),
                    int64_elements=tuple(a.output_dtype == "array<int64>" and not raw for a in aggs),
                    any_int64=not raw and any(a.output_dtype in ("int64", "array<int64>") for a in aggs),
                    is_count=tuple(a.function == "count" for a in aggs),
                    aggregators=aggregators,
                    empty=tuple(a.result(a.initialize()) for a in aggregators),
                    plain=(not compiled.has_lifetime and view.aggregation_leading_edge == WALL_CLOCK_TIME
                           and all(a.window_kind == "time" and a.offset_ms == 0 for a in view.aggregations)),
                )
            )
            meta.extend({"name": f"{view.name}.{a.name}", "dataType": data_type(a.output_dtype)} for a in aggs)
    except (DefinitionError, NotFoundError) as exc:
        problem = f"feature service {service.name!r} in workspace {spec.name!r} cannot be served: {exc}"
        return _ServicePlan(service.name, (), (), (), problem)
    return _ServicePlan(service.name, tuple(views), tuple(join_keys.items()), tuple(meta), None)


def _plan_realtime_service(spec: WorkspaceSpec, service: FeatureServiceSpec) -> _ServicePlan:
    """Fetch the stream features unformatted (served ones and realtime inputs), then compute."""
    try:
        realtime = RealtimeServing.build(spec, service)
    except (DefinitionError, NotFoundError) as exc:
        problem = f"feature service {service.name!r} in workspace {spec.name!r} cannot be served: {exc}"
        return _ServicePlan(service.name, (), (), (), problem)
    fetch = _plan_service(spec, realtime.fetch, raw=True)
    realtime.fetch_plan = fetch
    meta = tuple(
        {"name": f"{o[1]}.{o[2]}" if o[0] == "realtime" else fetch.feature_meta[o[1]]["name"], "dataType": data_type(d)}
        for o, d in zip(realtime.outputs, realtime.output_dtypes, strict=True)
    )
    return _ServicePlan(service.name, fetch.views, fetch.join_keys, meta, fetch.problem, realtime)


class FeatureServer:
    def __init__(
        self,
        specs_provider: Callable[[], Mapping[str, WorkspaceSpec]],
        store: KeyValueStore,
        clock_ms: Callable[[], int],
        tile_cache: TileCache | None = None,
    ) -> None:
        """``tile_cache``: keep the tiles of entities that have many between requests; only
        for a store whose every write is followed by ``tile_cache.invalidate`` (the online
        materializer's write listener does that)."""
        self._specs_provider = specs_provider
        self._cache = tile_cache
        self._store = store
        self._clock_ms = clock_ms
        # Keyed by workspace; reused while the provider returns the very same spec object.
        self._plans: dict[str, _WorkspacePlan] = {}
        self._last_at: tuple[int, _ServicePlan, bool, list[_ViewAt]] | None = None

    def get_features(
        self,
        workspace: str,
        service: str,
        join_key_map: Mapping[str, Any],
        metadata_options: MetadataOptions | Mapping[str, Any] | None = None,
        request_context_map: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        plan = self._service_plan(workspace, service)
        options = MetadataOptions.parse(metadata_options)
        t_ms = self._clock_ms()
        at = self._at(plan, t_ms, options.include_effective_times)
        features, statuses, times = self._row(plan, join_key_map, t_ms, at, options.include_effective_times,
                                              options.include_serving_status, request_context_map)
        meta = [dict(m) for m in plan.feature_meta] if options.include_data_types else _names(plan)
        for i, item in enumerate(meta):
            if options.include_serving_status:
                item["status"] = statuses[i]
            if options.include_effective_times:
                item["effectiveTime"] = times[i]
        return {"result": {"features": features}, "metadata": {"features": meta}}

    def get_features_batch(
        self,
        workspace: str,
        service: str,
        requests: Sequence[Mapping[str, Any]],
        metadata_options: MetadataOptions | Mapping[str, Any] | None = None,
        request_context_maps: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """One answer per join key map, all at one request time; per-row statuses and times."""
        plan = self._service_plan(workspace, service)
        options = MetadataOptions.parse(metadata_options)
        t_ms = self._clock_ms()
        at = self._at(plan, t_ms, options.include_effective_times)
        per_row = options.include_serving_status or options.include_effective_times
        results = []
        contexts = request_context_maps if request_context_maps is not None else [None] * len(requests)
        for join_key_map, context in zip(requests, contexts, strict=True):
            features, statuses, times = self._row(plan, join_key_map, t_ms, at, options.include_effective_times,
                                                  options.include_serving_status, context)
            row: dict[str, Any] = {"features": features}
            if per_row:
                row_meta: list[dict[str, Any]] = [{} for _ in features]
                for i, item in enumerate(row_meta):
                    if options.include_serving_status:
                        item["status"] = statuses[i]
                    if options.include_effective_times:
                        item["effectiveTime"] = times[i]
                row["metadata"] = {"features": row_meta}
            results.append(row)
        meta = list(plan.feature_meta) if options.include_data_types else _names(plan)
        return {"result": results, "metadata": {"features": meta}}

    def metadata(self, workspace: str, service: str) -> dict[str, Any]:
        plan = self._service_plan(workspace, service)
        result = {
            "featureServiceType": "DEFAULT",
            "inputJoinKeys": [{"name": name, "dataType": data_type(dtype)} for name, dtype in plan.join_keys],
            "featureValues": list(plan.feature_meta),
        }
        if plan.realtime is not None:
            result["inputRequestContextKeys"] = [
                {"name": name, "dataType": data_type(dtype)} for name, dtype in plan.realtime.request_fields
            ]
        return result

    def feature_docs(self, workspace: str, service: str) -> list[FeatureDoc]:
        """``(description, tags)`` of each served feature, for Tecton's includeFeatureDescriptions
        and includeFeatureTags (see ``request_surface.py``)."""
        self._service_plan(workspace, service)  # the same errors as a lookup
        return feature_docs(self._specs_provider()[workspace], service)

    # -- internals ---------------------------------------------------------------------------
    def _at(self, plan: _ServicePlan, t_ms: int, with_times: bool) -> list[_ViewAt]:
        # Under load many requests fall in the same millisecond: reuse that time's bounds.
        cached = self._last_at
        if cached is not None and cached[0] == t_ms and cached[1] is plan and cached[2] == with_times:
            return cached[3]
        at = [_ViewAt(view, t_ms, with_times) for view in plan.views]
        self._last_at = (t_ms, plan, with_times, at)
        return at

    def _service_plan(self, workspace: str, service: str) -> _ServicePlan:
        specs = self._specs_provider()
        spec = specs.get(workspace)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise NotFoundError(f"no workspace named {workspace!r} (known: {known})")
        plan = self._plans.get(workspace)
        if plan is None or plan.spec is not spec:
            plan = _WorkspacePlan(spec)
            self._plans[workspace] = plan  # a racing request may build the same plan: harmless
        service_plan = plan.services.get(service)
        if service_plan is None and service.startswith(VIEW_SERVICE_PREFIX):
            service_plan = plan.view_service(service)
        if service_plan is None:
            known = ", ".join(sorted(plan.services)) or "none"
            raise NotFoundError(f"no feature service named {service!r} in workspace {workspace!r} (known: {known})")
        if service_plan.problem is not None:
            raise InvalidRequestError(service_plan.problem)
        return service_plan

    def _scan(self, view: _ViewPlan, entity: bytes, starts: tuple[int, int] | None) -> list[Tile]:
        """An entity's tiles (every shard's) with starts in ``[start, end)``: one contiguous scan,
        as an entity's tiles sort by start time (see schemas/encoding.py), decoded together; with
        their shards only where lifetime prefixes need them (``streams.lifetime``)."""
        if starts is None:
            return []
        lo, hi = starts
        items = self._store.scan(view.key_prefix + tile_key(entity, lo), view.key_prefix + tile_key(entity, hi))
        if view.compiled.has_lifetime:
            return list(decode_tiles(items, shards=True))
        return list(decode_tiles(items))

    def _leading_edge(self, view: _ViewPlan, request_ms: int) -> int:
        """The time the view's windows end at: the request's, or its stream high watermark's."""
        edge = view.compiled.spec.aggregation_leading_edge
        if edge == WALL_CLOCK_TIME:
            return request_ms
        marks = view.key_prefix + HIGH_WATERMARK_PREFIX
        # One record per shard (keys: the prefix + u16 shard); the view's edge is the newest.
        high_watermark = latest_event_time(value for _, value in self._store.scan(marks, marks + b"\xff" * 3))
        return leading_edge_ms(request_ms, high_watermark, edge)

    def _row(
        self, plan: _ServicePlan, join_key_map: Mapping[str, Any], t_ms: int, at: Sequence[_ViewAt],
        with_times: bool, with_statuses: bool, request_context_map: Mapping[str, Any] | None = None,
    ) -> tuple[list[Any], list[str], list[str]]:
        if plan.realtime is not None:  # fetch the stream values, then run the realtime views on them
            fetch = plan.realtime.fetch_plan
            fetched = self._row(fetch, join_key_map, t_ms, self._at(fetch, t_ms, with_times), with_times, True)
            return plan.realtime.row(fetched, request_context_map, t_ms, with_times)
        if not isinstance(join_key_map, Mapping):
            raise InvalidRequestError("joinKeyMap must be an object of join key names to values")
        features: list[Any] = []
        statuses: list[str] = []
        times: list[str] = []
        for view, view_at in zip(plan.views, at, strict=True):
            try:
                key_values = [join_key_map[name] for name in view.key_names]
            except KeyError as exc:
                required = ", ".join(name for name, _ in plan.join_keys)
                raise InvalidRequestError(
                    f"joinKeyMap is missing join key {exc.args[0]!r}; feature service {plan.name!r} "
                    f"requires: {required}"
                ) from None
            entity = view.compiled.entity_key(key_values)
            if view.plain:
                values = self._values(view, view_at, entity)
                effective_time = view_at.effective_time
            else:
                values, effective_time = self._general_values(view, entity, t_ms, with_times)
            if with_statuses:
                statuses.extend(
                    MISSING_DATA if value is None or (is_count and value == 0) else PRESENT
                    for value, is_count in zip(values, view.is_count, strict=True)
                )
            if view.any_int64:
                features.extend(
                    _int64_as_strings(value, as_string, elements)
                    for value, as_string, elements in zip(values, view.int64, view.int64_elements, strict=True)
                )
            else:
                features.extend(values)
            if with_times:
                times.extend([effective_time] * len(view.picks))
        return features, statuses, times

    def _general_values(self, view: _ViewPlan, entity: bytes, request_ms: int,
                        with_times: bool) -> tuple[list[Any], str]:
        """Views the per-request plan does not cover (lifetime, offset and series windows, the
        latest-event-time leading edge): ``compute_values`` over the entity's tiles, reading a
        lifetime window's per-shard prefixes first and only the tiles after them."""
        compiled = view.compiled
        t_ms = self._leading_edge(view, request_ms)
        prefixes = self._scan(view, entity, prefix_range(compiled))
        start_ms, end_ms = read_range(compiled, t_ms, prefixes)
        values = compute_values(compiled, prefixes + self._scan(view, entity, (start_ms, end_ms)), t_ms)
        interval_ms = compiled.spec.aggregation_interval_ms
        effective_ms = t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms
        return [values[pick] for pick in view.picks], format_time_ms(effective_ms) if with_times else ""

    def _values(self, view: _ViewPlan, at: _ViewAt, entity: bytes) -> Sequence[Any]:
        """The served features of one entity: ``compute_values`` restricted to the served
        aggregations, with the window bounds of the request time computed once per request."""
        prefix = view.key_prefix + entity
        cache = self._cache
        cached = None if cache is None else cache.get(prefix)
        if cached is not None:
            starts, partials = cached
        else:
            generation = 0 if cache is None else cache.generation  # before reading: see tile_cache.py
            # One contiguous scan: an entity's tiles sort by start time (see schemas/encoding.py),
            # decoded together (store keys end with the tile start, as tile keys do).
            tiles = decode_tiles(self._store.scan(prefix + at.start_suffix, prefix + at.end_suffix))
            if not tiles:
                return view.empty
            if cache is not None and len(tiles) >= cache.min_tiles:
                # Worth keeping: all of the entity's tiles, as later requests read later ranges.
                tiles = decode_tiles(self._store.scan(prefix, prefix + _ENTITY_END))
                starts, partials = [start for start, _ in tiles], [tile for _, tile in tiles]
                cache.put(prefix, (starts, partials), generation)
            else:
                starts, partials = [start for start, _ in tiles], [tile for _, tile in tiles]
        values = list(view.empty)
        for window_start, window_end, members in at.windows:
            lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
            if lo < hi:
                window = partials[lo:hi]
                for index, pick, aggregator in members:
                    values[index] = aggregator.result(aggregator.merge_many([tile[pick] for tile in window]))
        return values


class _ViewAt:
    """What a request time fixes for one view, shared by every row of the request: the served
    aggregations grouped by window bounds (``window_bounds``, as ``compute_values`` uses them;
    aggregations over the same window share one tile slice), the tile key range covering all of
    them, and the effective time."""

    __slots__ = ("effective_time", "end_suffix", "start_suffix", "windows")

    def __init__(self, view: _ViewPlan, t_ms: int, with_times: bool) -> None:
        spec = view.compiled.spec
        interval_ms = spec.aggregation_interval_ms
        if not view.plain:  # answered by _general_values, which works from the request time itself
            self.windows, self.start_suffix, self.end_suffix, self.effective_time = [], b"", b"", ""
            return
        # (window start, window end) -> [(index among served features, index in the view, aggregator)]
        grouped: dict[tuple[int, int], list[tuple[int, int, Aggregator]]] = {}
        for index, (pick, aggregator) in enumerate(zip(view.picks, view.aggregators, strict=True)):
            bounds = window_bounds(t_ms, spec.aggregations[pick].window_ms, interval_ms)
            grouped.setdefault(bounds, []).append((index, pick, aggregator))
        self.windows = [(start, end, tuple(members)) for (start, end), members in grouped.items()]
        # Over all of the view's aggregations, as read_range does: the scan is the same either way.
        start_ms, end_ms = read_range(view.compiled, t_ms)
        self.start_suffix = tile_key(b"", start_ms)  # store key = view prefix + entity + this
        self.end_suffix = tile_key(b"", end_ms)
        effective_ms = t_ms if interval_ms is None else (t_ms // interval_ms) * interval_ms
        self.effective_time = format_time_ms(effective_ms) if with_times else ""


def _int64_as_strings(value: Any, as_string: bool, elements_as_strings: bool) -> Any:
    """Tecton's encoding: int64 values, and int64 array elements, travel as strings."""
    if value is None:
        return None
    if as_string:
        return str(value)
    if elements_as_strings:
        return [None if v is None else str(v) for v in value]
    return value


def _names(plan: _ServicePlan) -> list[dict[str, Any]]:
    return [{"name": m["name"]} for m in plan.feature_meta]
