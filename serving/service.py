"""The read service: specs + online store + clock -> Tecton-shaped answers, without a web framework.

Everything that depends only on a workspace's spec is planned once per spec object (``plan.py``)
and reused until the registry publishes a new one; what depends on the request time (window
bounds, the scanned key range) once per request, for all its rows (``ViewAt``); a row does only
the key encoding, one store scan per view, and the window merge of the served features. The
answers' JSON shapes are ``wire.py``'s.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import decode_tiles, tile_key
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.kinds import AggregationLeadingEdge
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.feature_logging import FeatureLogger
from featurebus.serving.plan import VIEW_SERVICE_PREFIX, ServicePlan, ViewAt, ViewPlan, WorkspacePlan
from featurebus.serving.request_metrics import observe_lookup
from featurebus.serving.request_surface import FeatureDoc, feature_docs
from featurebus.serving.tile_cache import MAX_WINDOW_VALUES, CachedTiles, TileCache
from featurebus.serving.wire import (
    MISSING_DATA,
    PRESENT,
    MetadataOptions,
    Row,
    batch_response,
    format_time_ms,
    int64_as_strings,
    metadata_response,
    single_response,
)
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX, latest_event_time
from featurebus.streams.tiles import Tile, compute_values, prefix_range, read_range
from featurebus.streams.windows import leading_edge_ms

__all__ = ["FeatureServer", "MetadataOptions", "VIEW_SERVICE_PREFIX", "format_time_ms"]

_UNKNOWN = object()
_IMMUTABLE = frozenset({int, float, str, bool, type(None)})
_ENTITY_END = b"\xff" * 16  # past every tile key suffix (start + shard) of an entity


class FeatureServer:
    def __init__(
        self,
        specs_provider: Callable[[], Mapping[str, WorkspaceSpec]],
        store: KeyValueStore,
        clock_ms: Callable[[], int],
        tile_cache: TileCache | None = None,
        feature_logger: FeatureLogger | None = None,
    ) -> None:
        """``tile_cache``: keep the tiles of entities that have many between requests; only
        for a store whose every write is followed by ``tile_cache.invalidate`` (the online
        materializer's write listener does that). ``feature_logger``: where sampled requests
        of services with logging go (None: nothing is logged)."""
        self._specs_provider = specs_provider
        self._logger = feature_logger
        self._cache = tile_cache
        self._store = store
        self._clock_ms = clock_ms
        # Keyed by workspace; reused while the provider returns the very same spec object.
        self._plans: dict[str, WorkspacePlan] = {}
        self._last_at: tuple[int, ServicePlan, bool, list[ViewAt]] | None = None

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
        logged = self._logged(plan)
        with_times = options.include_effective_times or (
            logged and plan.logging is not None and plan.logging.log_effective_times
        )
        at = self._at(plan, t_ms, with_times)
        realtime_s = [0.0]
        started = time.perf_counter()
        row = self._row(
            plan,
            join_key_map,
            t_ms,
            at,
            with_times,
            options.include_serving_status,
            request_context_map,
            realtime_s,
        )
        observe_lookup(workspace, service, time.perf_counter() - started, realtime_s[0], plan.realtime is not None)
        if logged:
            self._log(workspace, plan, t_ms, join_key_map, request_context_map, row)
        return single_response(row, plan.feature_meta, options)

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
        contexts = request_context_maps if request_context_maps is not None else [None] * len(requests)
        logging = plan.logging if self._logger is not None else None
        if logging is not None and logging.log_effective_times and not options.include_effective_times:
            at = self._at(plan, t_ms, True)
        with_times = options.include_effective_times or (logging is not None and logging.log_effective_times)
        realtime_s = [0.0]
        started = time.perf_counter()
        rows = [
            self._row(plan, join_key_map, t_ms, at, with_times, options.include_serving_status, context, realtime_s)
            for join_key_map, context in zip(requests, contexts, strict=True)
        ]
        observe_lookup(workspace, service, time.perf_counter() - started, realtime_s[0], plan.realtime is not None)
        if logging is not None:
            for join_key_map, context, row in zip(requests, contexts, rows, strict=True):
                if self._logged(plan):
                    self._log(workspace, plan, t_ms, join_key_map, context, row)
        return batch_response(rows, plan.feature_meta, options)

    def metadata(self, workspace: str, service: str) -> dict[str, Any]:
        plan = self._service_plan(workspace, service)
        request_fields = plan.realtime.request_fields if plan.realtime is not None else None
        return metadata_response(plan.join_keys, plan.feature_meta, request_fields)

    def feature_docs(self, workspace: str, service: str) -> list[FeatureDoc]:
        """``(description, tags)`` of each served feature, for Tecton's includeFeatureDescriptions
        and includeFeatureTags (see ``request_surface.py``)."""
        self._service_plan(workspace, service)  # the same errors as a lookup
        return feature_docs(self._specs_provider()[workspace], service)

    # -- internals ---------------------------------------------------------------------------
    def _logged(self, plan: ServicePlan) -> bool:
        """Whether this request of ``plan`` is logged (sampled at the service's rate)."""
        return plan.logging is not None and self._logger is not None and self._logger.sampled(plan.logging.sample_rate)

    def _log(
        self,
        workspace: str,
        plan: ServicePlan,
        t_ms: int,
        join_key_map: Mapping[str, Any],
        request_context_map: Mapping[str, Any] | None,
        row: Row,
    ) -> None:
        assert self._logger is not None and plan.logging is not None  # _logged said so
        features, _, times = row
        names = plan.logged_names
        self._logger.log(
            workspace,
            plan.name,
            t_ms,
            join_key_map,
            request_context_map,
            names,
            features,
            times if plan.logging.log_effective_times else None,
        )

    def _at(self, plan: ServicePlan, t_ms: int, with_times: bool) -> list[ViewAt]:
        # Under load many requests fall in the same millisecond: reuse that time's bounds.
        cached = self._last_at
        if cached is not None and cached[0] == t_ms and cached[1] is plan and cached[2] == with_times:
            return cached[3]
        at = [ViewAt(view, t_ms, with_times) for view in plan.views]
        self._last_at = (t_ms, plan, with_times, at)
        return at

    def _service_plan(self, workspace: str, service: str) -> ServicePlan:
        specs = self._specs_provider()
        spec = specs.get(workspace)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise NotFoundError(f"no workspace named {workspace!r} (known: {known})")
        plan = self._plans.get(workspace)
        if plan is None or plan.spec is not spec:
            plan = WorkspacePlan(spec)
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

    def _scan(self, view: ViewPlan, entity: bytes, starts: tuple[int, int] | None) -> list[Tile]:
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

    def _leading_edge(self, view: ViewPlan, request_ms: int) -> int:
        """The time the view's windows end at: the request's, or its stream high watermark's."""
        edge = view.compiled.spec.aggregation_leading_edge
        if edge == AggregationLeadingEdge.WALL_CLOCK_TIME:
            return request_ms
        marks = view.key_prefix + HIGH_WATERMARK_PREFIX
        # One record per shard (keys: the prefix + u16 shard); the view's edge is the newest.
        high_watermark = latest_event_time(value for _, value in self._store.scan(marks, marks + b"\xff" * 3))
        return leading_edge_ms(request_ms, high_watermark, edge)

    def _row(
        self,
        plan: ServicePlan,
        join_key_map: Mapping[str, Any],
        t_ms: int,
        at: Sequence[ViewAt],
        with_times: bool,
        with_statuses: bool,
        request_context_map: Mapping[str, Any] | None = None,
        realtime_s: list[float] | None = None,
    ) -> Row:
        """``realtime_s[0]``, when given, accumulates the time spent in realtime transformations."""
        if plan.realtime is not None:  # fetch the stream values, then run the realtime views on them
            fetch = plan.realtime.fetch_plan
            fetched = self._row(fetch, join_key_map, t_ms, self._at(fetch, t_ms, with_times), with_times, True)
            transform_started = time.perf_counter()
            row = plan.realtime.row(fetched, request_context_map, t_ms, with_times)
            if realtime_s is not None:
                realtime_s[0] += time.perf_counter() - transform_started
            return row
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
                    int64_as_strings(value, as_string, elements)
                    for value, as_string, elements in zip(values, view.int64, view.int64_elements, strict=True)
                )
            else:
                features.extend(values)
            if with_times:
                times.extend([effective_time] * len(view.picks))
        return features, statuses, times

    def _general_values(
        self, view: ViewPlan, entity: bytes, request_ms: int, with_times: bool
    ) -> tuple[list[Any], str]:
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

    def _values(self, view: ViewPlan, at: ViewAt, entity: bytes) -> Sequence[Any]:
        """The served features of one entity: ``compute_values`` restricted to the served
        aggregations, with the window bounds of the request time computed once per request."""
        prefix = view.key_prefix + entity
        cache = self._cache
        cached = None if cache is None else cache.get(prefix)
        if cached is not None:
            starts, partials, known = cached
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
                entry = CachedTiles([start for start, _ in tiles], [tile for _, tile in tiles], {})
                cache.put(prefix, entry, generation)
                starts, partials, known = entry
            else:
                starts, partials, known = [start for start, _ in tiles], [tile for _, tile in tiles], None
        values = list(view.empty)
        for window_start, window_end, members in at.windows:
            lo, hi = bisect_left(starts, window_start), bisect_left(starts, window_end)
            if lo < hi:
                window = partials[lo:hi]
                for index, pick, value_of in members:
                    if known is None:
                        values[index] = value_of([tile[pick] for tile in window])
                        continue
                    # A cached entity's tiles are fixed: the same window has the same value.
                    value = known.get((pick, lo, hi), _UNKNOWN)
                    if value is _UNKNOWN:
                        value = value_of([tile[pick] for tile in window])
                        if type(value) in _IMMUTABLE:  # a list could be changed by its receiver (realtime code)
                            if len(known) >= MAX_WINDOW_VALUES:
                                known.clear()
                            known[(pick, lo, hi)] = value
                    values[index] = value
        return values
