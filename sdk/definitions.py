"""The declarative definitions users write, mirroring Tecton 1.x names and parameters.

Objects are validated on construction and compiled to plain specs by ``featurebus.compile``;
engines never see them. Each object remembers where it was defined so errors can name file:line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featurebus.aggregates import (
    Aggregate,
    AggregationLeadingEdge,
    Attribute,
    LifetimeWindow,
    StreamProcessingMode,
    TimeWindow,
    TimeWindowSeries,
)
from featurebus.alerting import take_monitoring
from featurebus.batch_config import MaterializationContext
from featurebus.data_sources import (
    BatchSource,
    DataSource,
    FileConfig,
    KafkaConfig,
    PushConfig,
    RangedSource,
    StreamSource,
    UnfilteredSource,
    plain_source,
)
from featurebus.definition_base import (
    DefinitionSite,
    _caller_site,
    _Definition,
    _fail,
    _require_name,
    duration_ms,
    reject_options,
)
from featurebus.exceptions import DefinitionError
from featurebus.monitoring import DataQualityOptions, Expectation, LoggingConfig
from featurebus.options import (
    BATCH_VIEW_OPTIONS,
    ENTITY_OPTIONS,
    SERVICE_OPTIONS,
    VIEW_OPTIONS,
)
from featurebus.schemas.kinds import BatchTriggerType, TransformationMode
from featurebus.schemas.specs import ViewMonitoringSpec
from featurebus.schemas.time import to_epoch_ms
from featurebus.stream_backfill import stream_backfill
from featurebus.types import Field
from featurebus.view_methods import MaterializedViewMethods, ServiceMethods

__all__ = [
    "BatchFeatureView",
    "BatchSource",
    "BatchTriggerType",
    "DataSource",
    "UnfilteredSource",
    "FeatureView",
    "FileConfig",
    "MaterializedFeatureView",
    "PANDAS_MODE",
    "PYSPARK_MODE",
    "PYTHON_MODE",
    "SNOWFLAKE_SQL_MODE",
    "SPARK_SQL_MODE",
    "batch_feature_view",
    "reject_options",
    "Entity",
    "KafkaConfig",
    "PushConfig",
    "StreamSource",
    "TimeWindow",
    "LifetimeWindow",
    "TimeWindowSeries",
    "AggregationLeadingEdge",
    "StreamProcessingMode",
    "Aggregate",
    "Attribute",
    "StreamFeatureView",
    "stream_feature_view",
    "FeatureReference",
    "FeatureService",
    "DefinitionSite",
    "duration_ms",
]


# ``@stream_feature_view``'s batch-history parameters at their defaults (``stream_backfill``).
_NO_BATCH_HISTORY: dict[str, object] = {
    "feature_start_time": None,
    "batch_schedule": None,
    "batch_trigger": None,
    "manual_trigger_backfill_end_time": None,
    "max_backfill_interval": None,
    "incremental_backfills": False,
}


class Entity(_Definition):
    def __init__(
        self,
        name: str,
        join_keys: Sequence[Field] | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("Entity", name, self.site)
        reject_options("Entity", name, self.site, tecton_options, ENTITY_OPTIONS)
        if not join_keys or not all(isinstance(k, Field) for k in join_keys):
            raise _fail(
                "Entity",
                name,
                self.site,
                "join_keys must be a non-empty list of Field",
                "Pass join_keys=[Field('user_id', String)].",
            )
        for key in join_keys:
            if key.dtype.name not in ("string", "int64", "int32"):
                raise _fail(
                    "Entity",
                    name,
                    self.site,
                    f"join key {key.name!r} has type {key.dtype.name}",
                    "Join keys must be String, Int64 or Int32.",
                )
        key_names = [k.name for k in join_keys]
        if len(set(key_names)) != len(key_names):
            raise _fail("Entity", name, self.site, f"join_keys repeat a name ({key_names})", "List each join key once.")
        self.join_keys = tuple(join_keys)
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def __repr__(self) -> str:
        return f"Entity({self.name!r})"


PANDAS_MODE = TransformationMode.PANDAS
PYTHON_MODE = TransformationMode.PYTHON
SPARK_SQL_MODE = "spark_sql"
PYSPARK_MODE = "pyspark"
SNOWFLAKE_SQL_MODE = "snowflake_sql"


class FeatureView(_Definition):
    """What every kind of feature view shares (Tecton's ``FeatureView``): ``fv[["a", "b"]]``."""

    site: DefinitionSite
    name: str

    def error(self, problem: str, fix: str) -> DefinitionError:
        return _fail(type(self).__name__, self.name, self.site, problem, fix)

    def __getitem__(self, features: Sequence[str]) -> FeatureReference:
        return FeatureReference(self, tuple(features), site=_caller_site())

    def with_name(self, namespace: str) -> FeatureReference:
        """Tecton's ``with_name``: this view's features under another name in a feature service
        (served as ``<namespace>.<feature>``, trained as ``<namespace>__<feature>``)."""
        return FeatureReference(self, (), site=_caller_site()).with_name(namespace)

    def with_join_key_map(self, join_key_map: dict[str, str]) -> FeatureReference:
        """Tecton's ``with_join_key_map``: ``{view join key: request/spine key}``, so the same view
        can be joined twice (e.g. ``{"user_id": "sender_id"}`` and ``{"user_id": "recipient_id"}``)."""
        return FeatureReference(self, (), site=_caller_site()).with_join_key_map(join_key_map)

    function: Callable[..., Any]

    @property
    def transformation_code(self) -> str:
        """The function's source from its ``def`` line (decorators stripped), dedented."""
        try:
            lines, _ = inspect.getsourcelines(self.function)
        except (OSError, TypeError):
            raise self.error(
                "the transformation's source code cannot be read",
                "Define the function in a .py file of the feature repository.",
            ) from None
        source = textwrap.dedent("".join(lines))
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, ast.FunctionDef):
            raise self.error("the transformation must be a plain function", "Decorate a `def` function.")
        return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"


class MaterializedFeatureView(MaterializedViewMethods, FeatureView):
    """Base class of the views whose features are computed ahead of requests (stream, batch);
    ``view_methods`` has their ``get_features_for_events``, ``run_transformation`` and
    ``get_online_features``."""

    # Tecton's monitor_freshness / expected_feature_freshness / alert_email (featurebus.monitoring)
    monitoring: ViewMonitoringSpec | None = None


class StreamFeatureView(MaterializedFeatureView):
    """A stream feature view: a row transformation over a stream source plus aggregations."""

    def __init__(
        self,
        *,
        function: Callable[..., Any],
        source: StreamSource,
        entities: Sequence[Entity],
        mode: str,
        features: Sequence[Aggregate] | Sequence[Attribute],
        timestamp_field: str | None,
        name: str | None,
        aggregation_interval: timedelta | None,
        stream_processing_mode: StreamProcessingMode | None,
        ttl: timedelta | None,
        online: bool,
        offline: bool,
        description: str | None,
        owner: str | None,
        tags: dict[str, str] | None,
        prevent_destroy: bool,
        site: DefinitionSite,
        lifetime_start_time: datetime | None = None,
        aggregation_leading_edge: AggregationLeadingEdge | None = None,
        batch_history: Mapping[str, object] | None = None,
        aggregation_secondary_key: str | None = None,
        data_quality: DataQualityOptions | None = None,
    ) -> None:
        self.site = site
        self.function = function
        self.name = _require_name("StreamFeatureView", name or function.__name__, site)
        self.data_quality = data_quality or DataQualityOptions()
        self.data_quality.check(self.error)
        given: object = source
        # Tecton's select_range on a stream view's source bounds the batch_config rows each
        # backfill window reads (streams/cutover.py); the stream itself is never filtered.
        ranged = given if isinstance(given, RangedSource) else None
        if ranged is not None:
            given = ranged.source
        if isinstance(given, UnfilteredSource):
            given = given.source  # a stream view never filters its source by a range
        if isinstance(given, BatchSource):
            raise self.error(
                f"source {given.name!r} is a BatchSource; stream feature views read StreamSources",
                "Pass a StreamSource (it may carry the history as batch_config=FileConfig(...)).",
            )
        if not isinstance(given, StreamSource):
            raise self.error(f"source must be a StreamSource, got {given!r}", "Pass source=<a StreamSource>.")
        source = given
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise self.error("entities must be a non-empty list of Entity", "Pass entities=[user].")
        if mode not in tuple(TransformationMode):
            raise self.error(f"mode {mode!r} is not supported", "Use mode='pandas' or mode='python'.")
        if not features or not (
            all(isinstance(f, Aggregate) for f in features) or all(isinstance(f, Attribute) for f in features)
        ):
            raise self.error(
                "features must be a non-empty list of Aggregate, or of Attribute (not both, as in Tecton)",
                "Pass features=[Aggregate(function='sum', time_window=..., "
                "input_column=...)] or features=[Attribute('city', String)]; put attributes "
                "and aggregations in separate views.",
            )
        self.source = source
        self.entities = tuple(entities)
        self.mode = mode
        self.features: tuple[Aggregate | Attribute, ...] = tuple(features)
        self.timestamp_field = timestamp_field or source.timestamp_field
        self.aggregation_interval = aggregation_interval
        self.stream_processing_mode = stream_processing_mode
        self.ttl = ttl
        self.online = online
        self.offline = offline
        self._keep_metadata(description, owner, tags, prevent_destroy)
        if stream_processing_mode is StreamProcessingMode.CONTINUOUS and aggregation_interval is not None:
            raise self.error(
                "continuous mode cannot have an aggregation_interval",
                "Remove aggregation_interval, or use StreamProcessingMode.TIME_INTERVAL.",
            )
        if isinstance(self.features[0], Attribute):
            if ttl is None:
                raise self.error(
                    "a view of Attribute features needs a ttl (how old a latest value may be)",
                    "Pass ttl=timedelta(days=1).",
                )
            if aggregation_interval is not None or stream_processing_mode is StreamProcessingMode.TIME_INTERVAL:
                raise self.error(
                    "Attribute features are continuous: the latest value before the request time",
                    "Remove aggregation_interval / stream_processing_mode from this view.",
                )
        if lifetime_start_time is not None and not isinstance(lifetime_start_time, datetime):
            raise self.error(
                f"lifetime_start_time must be a datetime, got {lifetime_start_time!r}",
                "Pass e.g. lifetime_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc).",
            )
        self.lifetime_start_time = lifetime_start_time
        edge = aggregation_leading_edge or AggregationLeadingEdge.WALL_CLOCK_TIME
        if not isinstance(edge, AggregationLeadingEdge):
            raise self.error(
                f"aggregation_leading_edge must be an AggregationLeadingEdge, got {edge!r}",
                "Pass aggregation_leading_edge=AggregationLeadingEdge.LATEST_EVENT_TIME.",
            )
        if edge is AggregationLeadingEdge.UNSPECIFIED:
            edge = AggregationLeadingEdge.WALL_CLOCK_TIME
        self.aggregation_leading_edge = edge
        # Tecton's batch parameters: a backfill of the view's history from the source's batch_config.
        self.backfill = stream_backfill(
            fail=self.error,
            source_name=source.name,
            has_batch_config=source.batch_config is not None,
            # (a bad aggregation_interval is reported by compile, with its own fix)
            aggregation_interval_ms=(
                int(aggregation_interval / timedelta(milliseconds=1))
                if isinstance(aggregation_interval, timedelta) and aggregation_interval > timedelta(0)
                else None
            ),
            has_lifetime=any(
                isinstance(f, Aggregate) and isinstance(f.time_window, LifetimeWindow) for f in self.features
            ),
            latest_event_edge=edge is AggregationLeadingEdge.LATEST_EVENT_TIME,
            **_NO_BATCH_HISTORY | dict(batch_history or {}),
        )
        if ranged is not None and not self.backfill.from_batch:
            raise self.error(
                f"source {ranged.name!r} is passed as {ranged!r}, which bounds the history backfilled "
                "from the source's batch_config, but the view has none (it needs feature_start_time, "
                "a source with batch_config, and a batch_trigger other than NO_BATCH_MATERIALIZATION); "
                "the stream itself is never filtered by a range",
                f"Give the view feature_start_time=... (and the source batch_config=FileConfig(...)), "
                f"or pass source={ranged.name} itself.",
            )
        self.source_range = None if ranged is None else ranged.range
        self.aggregation_secondary_key = _secondary_key(self, aggregation_secondary_key)

    @property
    def lifetime_start_ms(self) -> int | None:
        """``lifetime_start_time`` in epoch milliseconds (a naive datetime is UTC)."""
        start = self.lifetime_start_time
        return None if start is None else to_epoch_ms(start)

    def __repr__(self) -> str:
        return f"StreamFeatureView({self.name!r})"


def _secondary_key(view: FeatureView, key: str | None) -> str | None:
    """``aggregation_secondary_key``, checked where the view is written (its type and the column's
    existence are checked by ``featurebus.compile`` against the source schema)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.isidentifier():
        raise view.error(
            f"aggregation_secondary_key must be a column name, got {key!r}",
            "Pass e.g. aggregation_secondary_key='item_category'.",
        )
    features: tuple[Any, ...] = getattr(view, "features", ())
    if any(isinstance(f, Attribute) for f in features):
        raise view.error(
            "aggregation_secondary_key applies to Aggregate features; this view has Attribute features",
            "Remove aggregation_secondary_key=, or make the features Aggregates.",
        )
    return key


@dataclass(frozen=True)
class FeatureReference:
    """``fv[["a", "b"]]``, ``fv.with_name("sender")``, ``fv.with_join_key_map({...})``: a use of a
    view's features in a feature service or as a realtime view's source (Tecton's
    ``FeatureReference``). Each method returns a new reference; the view itself never changes.

    ``name`` is the namespace (None: the view's name); ``join_key_map`` the (view join key,
    request key) pairs. Both are checked against the view at plan time (``featurebus.compile``),
    where the file:line of the reference (``site``) is known.
    """

    view: FeatureView
    features: tuple[str, ...]
    name: str | None = None
    join_key_map: tuple[tuple[str, str], ...] = ()
    site: DefinitionSite | None = None

    @property
    def namespace(self) -> str:
        return self.name or self.view.name

    def __getitem__(self, features: Sequence[str]) -> FeatureReference:
        return dataclasses.replace(self, features=tuple(features), site=self.site or _caller_site())

    def with_name(self, namespace: str) -> FeatureReference:
        site = self.site or _caller_site()
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise _fail(
                type(self.view).__name__,
                self.view.name,
                site,
                f"with_name({namespace!r}) is not a valid name",
                "Pass a name of letters, digits and underscores, e.g. with_name('sender_features').",
            )
        return dataclasses.replace(self, name=namespace, site=site)

    def with_join_key_map(self, join_key_map: dict[str, str]) -> FeatureReference:
        site = self.site or _caller_site()
        if (
            not isinstance(join_key_map, dict)
            or not join_key_map
            or not all(isinstance(k, str) and isinstance(v, str) and v.isidentifier() for k, v in join_key_map.items())
        ):
            raise _fail(
                type(self.view).__name__,
                self.view.name,
                site,
                f"with_join_key_map({join_key_map!r}) must be a non-empty dict of join key names to column names",
                "Pass e.g. with_join_key_map({'user_id': 'sender_id'}) (the view's key on the left).",
            )
        return dataclasses.replace(self, join_key_map=tuple(sorted(join_key_map.items())), site=site)


def stream_feature_view(
    *,
    source: StreamSource,
    entities: Sequence[Entity],
    mode: str,
    features: Sequence[Aggregate] | Sequence[Attribute],
    timestamp_field: str | None = None,
    name: str | None = None,
    aggregation_interval: timedelta | None = None,
    stream_processing_mode: StreamProcessingMode | None = None,
    ttl: timedelta | None = None,
    online: bool = False,
    offline: bool = False,
    description: str | None = None,
    owner: str | None = None,
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    lifetime_start_time: datetime | None = None,
    aggregation_leading_edge: AggregationLeadingEdge | None = None,
    feature_start_time: datetime | None = None,
    batch_schedule: timedelta | None = None,
    batch_trigger: BatchTriggerType | None = None,
    manual_trigger_backfill_end_time: datetime | None = None,
    max_backfill_interval: timedelta | None = None,
    incremental_backfills: bool = False,
    aggregation_secondary_key: str | None = None,
    data_quality_enabled: bool | None = None,
    skip_default_expectations: bool = False,
    data_quality_expectations: Sequence[Expectation] = (),
    **tecton_options: Any,
) -> Callable[[Callable[..., Any]], StreamFeatureView]:
    """Tecton's ``@stream_feature_view``. With ``feature_start_time`` and a source whose
    ``batch_config`` holds its history, the history before the stream is backfilled from the
    files (``featurebus.streams.cutover``); the other batch parameters cut that backfill into jobs."""
    site = _caller_site()
    batch_history: dict[str, object] = {
        "feature_start_time": feature_start_time,
        "batch_schedule": batch_schedule,
        "batch_trigger": batch_trigger,
        "manual_trigger_backfill_end_time": manual_trigger_backfill_end_time,
        "max_backfill_interval": max_backfill_interval,
        "incremental_backfills": incremental_backfills,
    }

    def wrap(function: Callable[..., Any]) -> StreamFeatureView:
        # Checked here, where the view's name (the function's, by default) is known.
        options = dict(tecton_options)
        monitoring = take_monitoring("StreamFeatureView", name or function.__name__, site, options)
        reject_options("StreamFeatureView", name or function.__name__, site, options, VIEW_OPTIONS)
        view = StreamFeatureView(
            function=function,
            source=source,
            entities=entities,
            mode=mode,
            features=features,
            timestamp_field=timestamp_field,
            name=name,
            aggregation_interval=aggregation_interval,
            stream_processing_mode=stream_processing_mode,
            ttl=ttl,
            online=online,
            offline=offline,
            description=description,
            owner=owner,
            tags=tags,
            prevent_destroy=prevent_destroy,
            site=site,
            lifetime_start_time=lifetime_start_time,
            aggregation_leading_edge=aggregation_leading_edge,
            batch_history=batch_history,
            aggregation_secondary_key=aggregation_secondary_key,
            data_quality=DataQualityOptions(data_quality_enabled, skip_default_expectations, data_quality_expectations),
        )
        view.monitoring = monitoring
        return view

    return wrap


class FeatureService(ServiceMethods, _Definition):
    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureReference],
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        online_serving_enabled: bool = True,
        logging: LoggingConfig | None = None,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("FeatureService", name, self.site)
        if logging is not None and not isinstance(logging, LoggingConfig):
            raise _fail(
                "FeatureService",
                name,
                self.site,
                f"logging must be a LoggingConfig, got {logging!r}",
                "Pass logging=LoggingConfig(sample_rate=0.1).",
            )
        self.logging = logging
        reject_options("FeatureService", name, self.site, tecton_options, SERVICE_OPTIONS)
        if not features:
            raise _fail(
                "FeatureService",
                name,
                self.site,
                "features is empty",
                "Pass features=[my_view] or features=[my_view[['feature_a']]].",
            )
        refs: list[FeatureReference] = []
        for item in features:
            if isinstance(item, FeatureView):
                refs.append(FeatureReference(item, ()))
            elif isinstance(item, FeatureReference):
                refs.append(item)
            else:
                raise _fail(
                    "FeatureService",
                    name,
                    self.site,
                    f"{item!r} is not a feature view",
                    "List feature views or selections such as my_view[['a', 'b']].",
                )
        self.features = tuple(refs)
        self._keep_metadata(description, owner, tags, prevent_destroy)
        self.online_serving_enabled = online_serving_enabled

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r})"


class BatchFeatureView(MaterializedFeatureView):
    """A batch feature view (Tecton's ``@batch_feature_view``): a pandas transformation over
    batch sources (or stream sources' history files), materialized for time ranges offline and
    online by ``featurebus.platform.batch`` and read by training sets.

    The function takes one argument per source, in ``sources`` order, and optionally a
    ``context=materialization_context()`` argument that receives the range being computed.
    ``features`` are ``Aggregate`` (tiled every ``aggregation_interval``, by default the
    ``batch_schedule``) or ``Attribute`` (served within ``ttl``) as for stream views.
    """

    def __init__(
        self,
        *,
        function: Callable[..., Any],
        sources: Sequence[DataSource],
        entities: Sequence[Entity],
        mode: str,
        features: Sequence[Any],
        timestamp_field: str | None,
        name: str | None,
        aggregation_interval: timedelta | None,
        ttl: timedelta | None,
        online: bool,
        offline: bool,
        batch_schedule: timedelta,
        feature_start_time: datetime | None,
        incremental_backfills: bool,
        batch_trigger: BatchTriggerType | None,
        lifetime_start_time: datetime | None,
        description: str | None,
        owner: str | None,
        tags: dict[str, str] | None,
        prevent_destroy: bool,
        site: DefinitionSite,
        aggregation_secondary_key: str | None = None,
    ) -> None:
        self.site = site
        self.function = function
        self.name = _require_name("BatchFeatureView", name or function.__name__, site)
        if not sources or not all(isinstance(s, DataSource) for s in sources):
            raise self.error(
                "sources must be a non-empty list of BatchSource or StreamSource", "Pass sources=[my_batch_source]."
            )
        for source in (plain_source(s) for s in sources):
            if isinstance(source, StreamSource) and source.batch_config is None:
                raise self.error(
                    f"stream source {source.name!r} has no batch_config, so it has no history to read",
                    "Give the StreamSource batch_config=FileConfig(...), or use @stream_feature_view.",
                )
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise self.error("entities must be a non-empty list of Entity", "Pass entities=[user].")
        if mode != PANDAS_MODE:
            # Tecton's batch views take 'spark_sql', 'pyspark', 'snowflake_sql', 'snowpark' or 'pandas';
            # its 'python' mode (rows as dicts) exists for realtime views only, so there is none to port.
            fix = (
                "Use mode='pandas' (featurebus runs no Spark or warehouse SQL)."
                if mode != PYTHON_MODE
                else "Use mode='pandas', the mode batch views support: the function receives and returns "
                "DataFrames. As in Tecton, mode='python' (one dict per row) is for @realtime_feature_view."
            )
            raise self.error(f"mode {mode!r} is not supported for batch feature views", fix)
        if not features or not (
            all(isinstance(f, Aggregate) for f in features) or all(isinstance(f, Attribute) for f in features)
        ):
            raise self.error(
                "features must be a non-empty list of Aggregate, or of Attribute (not both)",
                "Pass features=[Attribute('city', String)] or features=[Aggregate(...)]; put "
                "attributes and aggregations in separate views.",
            )
        self.sources = tuple(sources)
        self.entities = tuple(entities)
        self.mode = mode
        self.features: tuple[Aggregate | Attribute, ...] = tuple(features)
        self.timestamp_field = timestamp_field
        self.aggregation_interval = aggregation_interval
        self.ttl = ttl
        self.online = online
        self.offline = offline
        self._keep_metadata(description, owner, tags, prevent_destroy)
        self.batch_schedule_ms = duration_ms(batch_schedule, "batch_schedule", "BatchFeatureView", self.name, site)
        if feature_start_time is not None and not isinstance(feature_start_time, datetime):
            raise self.error(
                f"feature_start_time must be a datetime, got {feature_start_time!r}",
                "Pass e.g. feature_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc).",
            )
        self.feature_start_time = feature_start_time
        if not isinstance(incremental_backfills, bool):
            raise self.error("incremental_backfills must be True or False", "Pass incremental_backfills=True.")
        self.incremental_backfills = incremental_backfills
        trigger = batch_trigger or BatchTriggerType.SCHEDULED
        if not isinstance(trigger, BatchTriggerType):
            raise self.error(
                f"batch_trigger must be a BatchTriggerType, got {batch_trigger!r}",
                "Pass batch_trigger=BatchTriggerType.MANUAL, or leave the default (SCHEDULED).",
            )
        self.batch_trigger = trigger
        if lifetime_start_time is not None:
            raise self.error(
                "lifetime windows are not supported for batch feature views yet",
                "Use a TimeWindow (time_window=timedelta(...)), or a stream feature view.",
            )
        if not isinstance(self.features[0], Attribute) and ttl is not None:
            raise self.error(
                "ttl applies to Attribute features; an aggregation's time_window already bounds the data it reads",
                "Remove ttl=, or make the features Attributes.",
            )
        if isinstance(self.features[0], Attribute):
            if ttl is None:
                raise self.error(
                    "a view of Attribute features needs a ttl (how old a latest value may be)",
                    "Pass ttl=timedelta(days=1).",
                )
            if aggregation_interval is not None:
                raise self.error(
                    "Attribute features are the latest value before the request time: there is no aggregation_interval",
                    "Remove aggregation_interval from this view.",
                )
        self.aggregation_secondary_key = _secondary_key(self, aggregation_secondary_key)
        parameters = list(inspect.signature(function).parameters.values())
        contexts = [p.name for p in parameters if isinstance(p.default, MaterializationContext)]
        self.context_parameter = contexts[0] if contexts else None
        inputs = [p for p in parameters if p.name not in contexts]
        if len(contexts) > 1 or len(inputs) != len(self.sources):
            raise self.error(
                f"the transformation takes {[p.name for p in inputs]} but the view has {len(self.sources)} source(s)",
                "Give the function one argument per source, in sources order, plus optionally "
                "context=materialization_context().",
            )

    @property
    def feature_start_ms(self) -> int | None:
        start = self.feature_start_time
        return None if start is None else to_epoch_ms(start)

    def __repr__(self) -> str:
        return f"BatchFeatureView({self.name!r})"


def batch_feature_view(
    *,
    sources: Sequence[DataSource],
    entities: Sequence[Entity],
    mode: str,
    features: Sequence[Aggregate] | Sequence[Attribute] = (),
    timestamp_field: str | None = None,
    name: str | None = None,
    aggregation_interval: timedelta | None = None,
    ttl: timedelta | None = None,
    online: bool = False,
    offline: bool = False,
    batch_schedule: timedelta = timedelta(days=1),
    feature_start_time: datetime | None = None,
    incremental_backfills: bool = False,
    batch_trigger: BatchTriggerType | None = None,
    lifetime_start_time: datetime | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    aggregation_secondary_key: str | None = None,
    **tecton_options: Any,
) -> Callable[[Callable[..., Any]], BatchFeatureView]:
    """Tecton's ``@batch_feature_view`` (see ``BatchFeatureView``)."""
    site = _caller_site()

    def wrap(function: Callable[..., Any]) -> BatchFeatureView:
        # Checked here, where the view's name (the function's, by default) is known.
        options = dict(tecton_options)
        monitoring = take_monitoring("BatchFeatureView", name or function.__name__, site, options)
        reject_options("BatchFeatureView", name or function.__name__, site, options, BATCH_VIEW_OPTIONS)
        view = BatchFeatureView(
            function=function,
            sources=sources,
            entities=entities,
            mode=mode,
            features=features,
            timestamp_field=timestamp_field,
            name=name,
            aggregation_interval=aggregation_interval,
            ttl=ttl,
            online=online,
            offline=offline,
            batch_schedule=batch_schedule,
            feature_start_time=feature_start_time,
            incremental_backfills=incremental_backfills,
            batch_trigger=batch_trigger,
            lifetime_start_time=lifetime_start_time,
            description=description,
            owner=owner,
            tags=tags,
            prevent_destroy=prevent_destroy,
            site=site,
            aggregation_secondary_key=aggregation_secondary_key,
        )
        view.monitoring = monitoring
        return view

    return wrap
