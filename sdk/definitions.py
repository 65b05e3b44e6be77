"""The declarative definitions users write, mirroring Tecton 1.x names and parameters.

Objects are validated on construction and compiled to plain specs by ``featurebus.compile``;
engines never see them. Each object remembers where it was defined so errors can name file:line.
"""

from __future__ import annotations

import ast
import enum
import inspect
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurebus.exceptions import DefinitionError
from featurebus.types import Field

__all__ = [
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
    "StreamFeatureView",
    "stream_feature_view",
    "FeatureReference",
    "FeatureService",
    "DefinitionSite",
    "duration_ms",
]


@dataclass(frozen=True)
class DefinitionSite:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _caller_site(depth: int = 2) -> DefinitionSite:
    # Recording where a definition was written is the only use of frames here: it lets every
    # validation error point at the user's file:line, as Tecton's do. Nothing depends on it.
    frame = sys._getframe(depth)
    return DefinitionSite(frame.f_code.co_filename, frame.f_lineno)


def _fail(kind: str, name: str, site: DefinitionSite, problem: str, fix: str) -> DefinitionError:
    return DefinitionError(f"{kind} '{name}' ({site}): {problem}. {fix}")


def _require_name(kind: str, name: Any, site: DefinitionSite) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(kind, str(name), site, "the name must be a Python-identifier-like string",
                    "Use letters, digits and underscores, e.g. 'user_transactions'.")
    return name


def duration_ms(value: timedelta, what: str, kind: str, name: str, site: DefinitionSite) -> int:
    if not isinstance(value, timedelta):
        raise _fail(kind, name, site, f"{what} must be a datetime.timedelta, got {value!r}",
                    f"Pass e.g. {what}=timedelta(hours=1).")
    ms = int(value / timedelta(milliseconds=1))
    if ms <= 0 or value % timedelta(milliseconds=1):
        raise _fail(kind, name, site, f"{what} must be a positive whole number of milliseconds, got {value}",
                    f"Use a positive {what}.")
    return ms


class _Definition:
    """Descriptive metadata every top-level definition keeps (and ``describe`` shows)."""

    site: DefinitionSite
    name: str

    def _keep_metadata(self, description: str | None, owner: str | None, tags: dict[str, str] | None,
                       prevent_destroy: bool) -> None:
        self.description = description or ""
        self.owner = owner
        self.tags = dict(tags or {})
        self.prevent_destroy = prevent_destroy


class Entity(_Definition):
    def __init__(
        self,
        name: str,
        join_keys: Sequence[Field] | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("Entity", name, self.site)
        if not join_keys or not all(isinstance(k, Field) for k in join_keys):
            raise _fail("Entity", name, self.site, "join_keys must be a non-empty list of Field",
                        "Pass join_keys=[Field('user_id', String)].")
        for key in join_keys:
            if key.dtype.name not in ("string", "int64", "int32"):
                raise _fail("Entity", name, self.site, f"join key {key.name!r} has type {key.dtype.name}",
                            "Join keys must be String, Int64 or Int32.")
        self.join_keys = tuple(join_keys)
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def __repr__(self) -> str:
        return f"Entity({self.name!r})"


class KafkaConfig:
    """Where a stream source's events come from. ``kafka_bootstrap_servers=None`` means the
    platform's own cluster. Values are JSON objects; timestamps are ISO-8601 strings or epoch
    milliseconds."""

    def __init__(
        self,
        topics: str,
        timestamp_field: str,
        kafka_bootstrap_servers: str | None = None,
        watermark_delay_threshold: timedelta = timedelta(hours=24),
        value_format: str = "json",
    ) -> None:
        self.site = _caller_site()
        if not isinstance(topics, str) or not topics.strip():
            raise _fail("KafkaConfig", str(topics), self.site, "topics must be a comma-separated string",
                        "Pass topics='transactions'.")
        self.topics = tuple(t.strip() for t in topics.split(",") if t.strip())
        self.timestamp_field = timestamp_field
        self.kafka_bootstrap_servers = kafka_bootstrap_servers
        if value_format != "json":
            raise _fail("KafkaConfig", topics, self.site, f"value_format {value_format!r} is not supported yet",
                        "Use value_format='json'.")
        self.value_format = value_format
        if not isinstance(watermark_delay_threshold, timedelta) or watermark_delay_threshold < timedelta(0):
            raise _fail("KafkaConfig", topics, self.site, "watermark_delay_threshold must be a timedelta >= 0",
                        "Pass e.g. watermark_delay_threshold=timedelta(minutes=5).")
        self.watermark_delay_ms = int(watermark_delay_threshold / timedelta(milliseconds=1))


class PushConfig:
    """A source whose records are pushed through the ingestion API (``POST /ingest``).

    ``timestamp_field`` defaults to the schema's only Timestamp field; ``log_offline`` keeps the
    pushed records in the offline store for training sets.
    """

    def __init__(
        self,
        log_offline: bool = False,
        timestamp_field: str | None = None,
        post_processor: Any = None,
        input_schema: Any = None,
    ) -> None:
        self.site = _caller_site()
        for option, value in (("post_processor", post_processor), ("input_schema", input_schema)):
            if value is not None:
                raise _fail("PushConfig", option, self.site, f"{option} is not supported yet",
                            f"Remove {option}=; push records that already match the source's schema.")
        self.log_offline = log_offline
        self.timestamp_field = timestamp_field


class StreamSource(_Definition):
    def __init__(
        self,
        name: str,
        schema: Sequence[Field],
        stream_config: KafkaConfig | PushConfig,
        batch_config: Any = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("StreamSource", name, self.site)
        if not isinstance(stream_config, (KafkaConfig, PushConfig)):
            raise _fail("StreamSource", name, self.site, "stream_config must be a KafkaConfig or a PushConfig",
                        "Pass stream_config=KafkaConfig(topics=..., timestamp_field=...) or PushConfig().")
        if batch_config is not None:
            raise _fail("StreamSource", name, self.site, "batch_config is not supported yet",
                        "Remove batch_config; history is replayed from the topic.")
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise _fail("StreamSource", name, self.site, "schema must be a non-empty list of Field",
                        "Pass schema=[Field('user_id', String), ...].")
        names = [f.name for f in schema]
        timestamp_field = stream_config.timestamp_field
        if timestamp_field is None:  # a PushConfig without one: the schema's only Timestamp field
            stamps = [f.name for f in schema if f.dtype.name == "timestamp"]
            if len(stamps) != 1:
                raise _fail("StreamSource", name, self.site, f"the schema has {len(stamps)} Timestamp fields",
                            "Pass PushConfig(timestamp_field=...) to say which one is the event time.")
            timestamp_field = stamps[0]
        if timestamp_field not in names:
            raise _fail("StreamSource", name, self.site,
                        f"timestamp_field {timestamp_field!r} is not in the schema",
                        f"Add Field({timestamp_field!r}, Timestamp) to schema.")
        self.timestamp_field = timestamp_field
        self.schema = tuple(schema)
        self.stream_config = stream_config
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def __repr__(self) -> str:
        return f"StreamSource({self.name!r})"


@dataclass(frozen=True)
class TimeWindow:
    """A window of ``window_size`` whose end is ``offset`` before the aggregation's reference
    point (the request's time, the spine row's time, or the end of the last complete interval).

    ``offset`` is zero or negative, as in Tecton: ``TimeWindow(timedelta(days=1),
    offset=-timedelta(days=7))`` is the day a week ago, named ``..._1d_..._offset_7d``.
    """

    window_size: timedelta
    offset: timedelta = timedelta(0)


@dataclass(frozen=True)
class LifetimeWindow:
    """Every event from the view's ``lifetime_start_time`` up to the reference point (which the
    view must then set, as Tecton requires)."""


@dataclass(frozen=True, kw_only=True)
class TimeWindowSeries:
    """A series of windows giving one array feature, earliest window first (Tecton 1.x).

    Windows of ``window_size`` start at ``series_start`` (negative: before the reference point)
    and every ``step_size`` after it (default: ``window_size``, back-to-back windows) while they
    end by ``series_end`` (zero or negative). ``TimeWindowSeries(series_start=-timedelta(days=7),
    window_size=timedelta(days=1))`` is the seven last days, one value per day.
    featurebus also requires ``step_size`` to divide ``series_end - series_start - window_size``
    (Tecton silently ends the series early otherwise) and, as Tecton, at least two windows.
    """

    series_start: timedelta
    series_end: timedelta = timedelta(0)
    step_size: timedelta | None = None
    window_size: timedelta


class AggregationLeadingEdge(enum.StrEnum):
    """Where a stream feature view's aggregation windows end when served online.

    ``WALL_CLOCK_TIME`` (the default, as in Tecton 1.x): at the request's time.
    ``LATEST_EVENT_TIME``: just after the newest event the view has processed (its stream high
    watermark over all source partitions), as in Tecton. A stream running 30 s behind therefore
    serves a 10-minute window over the 10 minutes up to its newest event, not the last 10
    minutes of wall clock (which would miss the 30 s it has not seen yet).
    Tecton documents this option as affecting online serving only; training sets in featurebus
    apply the closest equivalent, so online and offline agree: for a spine row at ``T`` the edge
    is just after the newest event of the view's source with a timestamp before ``T`` — what a
    stream with no lag would have processed at ``T``. ``UNSPECIFIED`` means the default.
    """

    UNSPECIFIED = "unspecified"
    WALL_CLOCK_TIME = "wall_clock_time"
    LATEST_EVENT_TIME = "latest_event_time"


class StreamProcessingMode(enum.StrEnum):
    TIME_INTERVAL = "time_interval"
    CONTINUOUS = "continuous"


WindowDefinition = TimeWindow | LifetimeWindow | TimeWindowSeries


@dataclass
class Aggregate:
    function: str
    time_window: WindowDefinition | timedelta
    input_column: Field
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] | None = None
    site: DefinitionSite = field(default_factory=lambda: _caller_site(3), repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.time_window, timedelta):
            self.time_window = TimeWindow(self.time_window)
        if not isinstance(self.time_window, (TimeWindow, LifetimeWindow, TimeWindowSeries)):
            raise _fail("Aggregate", self.label, self.site, f"time_window must be a timedelta, TimeWindow, "
                        f"LifetimeWindow or TimeWindowSeries, got {self.time_window!r}",
                        "Pass time_window=timedelta(hours=1).")
        if not isinstance(self.input_column, Field):
            raise _fail("Aggregate", self.label, self.site, "input_column must be a Field",
                        "Pass input_column=Field('amount', Float64).")

    @property
    def label(self) -> str:
        """The name errors use: the explicit name, else ``column_function``."""
        return self.name or f"{getattr(self.input_column, 'name', '?')}_{self.function}"

    @property
    def window(self) -> WindowDefinition:
        assert not isinstance(self.time_window, timedelta)  # normalised in __post_init__
        return self.time_window


class StreamFeatureView(_Definition):
    """A stream feature view: a row transformation over a stream source plus aggregations."""

    def __init__(
        self,
        *,
        function: Callable[..., Any],
        source: StreamSource,
        entities: Sequence[Entity],
        mode: str,
        features: Sequence[Aggregate],
        timestamp_field: str | None,
        name: str | None,
        aggregation_interval: timedelta | None,
        stream_processing_mode: StreamProcessingMode | None,
        online: bool,
        offline: bool,
        description: str | None,
        owner: str | None,
        tags: dict[str, str] | None,
        prevent_destroy: bool,
        site: DefinitionSite,
        lifetime_start_time: datetime | None = None,
        aggregation_leading_edge: AggregationLeadingEdge | None = None,
    ) -> None:
        self.site = site
        self.function = function
        self.name = _require_name("StreamFeatureView", name or function.__name__, site)
        if not isinstance(source, StreamSource):
            raise self.error(f"source must be a StreamSource, got {source!r}", "Pass source=<a StreamSource>.")
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise self.error("entities must be a non-empty list of Entity", "Pass entities=[user].")
        if mode not in ("pandas", "python"):
            raise self.error(f"mode {mode!r} is not supported", "Use mode='pandas' or mode='python'.")
        if not features or not all(isinstance(f, Aggregate) for f in features):
            raise self.error("features must be a non-empty list of Aggregate",
                             "Pass features=[Aggregate(function='sum', time_window=..., input_column=...)].")
        self.source = source
        self.entities = tuple(entities)
        self.mode = mode
        self.features = tuple(features)
        self.timestamp_field = timestamp_field or source.timestamp_field
        self.aggregation_interval = aggregation_interval
        self.stream_processing_mode = stream_processing_mode
        self.online = online
        self.offline = offline
        self._keep_metadata(description, owner, tags, prevent_destroy)
        if stream_processing_mode is StreamProcessingMode.CONTINUOUS and aggregation_interval is not None:
            raise self.error("continuous mode cannot have an aggregation_interval",
                             "Remove aggregation_interval, or use StreamProcessingMode.TIME_INTERVAL.")
        if lifetime_start_time is not None and not isinstance(lifetime_start_time, datetime):
            raise self.error(f"lifetime_start_time must be a datetime, got {lifetime_start_time!r}",
                             "Pass e.g. lifetime_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc).")
        self.lifetime_start_time = lifetime_start_time
        edge = aggregation_leading_edge or AggregationLeadingEdge.WALL_CLOCK_TIME
        if not isinstance(edge, AggregationLeadingEdge):
            raise self.error(f"aggregation_leading_edge must be an AggregationLeadingEdge, got {edge!r}",
                             "Pass aggregation_leading_edge=AggregationLeadingEdge.LATEST_EVENT_TIME.")
        if edge is AggregationLeadingEdge.UNSPECIFIED:
            edge = AggregationLeadingEdge.WALL_CLOCK_TIME
        self.aggregation_leading_edge = edge

    @property
    def lifetime_start_ms(self) -> int | None:
        """``lifetime_start_time`` in epoch milliseconds (a naive datetime is UTC)."""
        start = self.lifetime_start_time
        if start is None:
            return None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    def error(self, problem: str, fix: str) -> DefinitionError:
        return _fail("StreamFeatureView", self.name, self.site, problem, fix)

    @property
    def transformation_code(self) -> str:
        """The function's source from its ``def`` line (decorators stripped), dedented."""
        try:
            lines, _ = inspect.getsourcelines(self.function)
        except (OSError, TypeError):
            raise self.error("the transformation's source code cannot be read",
                             "Define the function in a .py file of the feature repository.") from None
        source = textwrap.dedent("".join(lines))
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, ast.FunctionDef):
            raise self.error("the transformation must be a plain function", "Decorate a `def` function.")
        return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"

    def __getitem__(self, features: Sequence[str]) -> FeatureReference:
        return FeatureReference(self, tuple(features))

    def __repr__(self) -> str:
        return f"StreamFeatureView({self.name!r})"


@dataclass(frozen=True)
class FeatureReference:
    """``fv[["a", "b"]]``: a selection of a view's features for a feature service."""

    view: StreamFeatureView
    features: tuple[str, ...]


def stream_feature_view(
    *,
    source: StreamSource,
    entities: Sequence[Entity],
    mode: str,
    features: Sequence[Aggregate],
    timestamp_field: str | None = None,
    name: str | None = None,
    aggregation_interval: timedelta | None = None,
    stream_processing_mode: StreamProcessingMode | None = None,
    online: bool = False,
    offline: bool = False,
    description: str | None = None,
    owner: str | None = None,
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    lifetime_start_time: datetime | None = None,
    aggregation_leading_edge: AggregationLeadingEdge | None = None,
) -> Callable[[Callable[..., Any]], StreamFeatureView]:
    site = _caller_site()

    def wrap(function: Callable[..., Any]) -> StreamFeatureView:
        return StreamFeatureView(
            function=function, source=source, entities=entities, mode=mode, features=features,
            timestamp_field=timestamp_field, name=name, aggregation_interval=aggregation_interval,
            stream_processing_mode=stream_processing_mode, online=online, offline=offline,
            description=description, owner=owner, tags=tags, prevent_destroy=prevent_destroy, site=site,
            lifetime_start_time=lifetime_start_time, aggregation_leading_edge=aggregation_leading_edge,
        )

    return wrap


class FeatureService(_Definition):
    def __init__(
        self,
        name: str,
        features: Sequence[StreamFeatureView | FeatureReference],
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        online_serving_enabled: bool = True,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("FeatureService", name, self.site)
        if not features:
            raise _fail("FeatureService", name, self.site, "features is empty",
                        "Pass features=[my_view] or features=[my_view[['feature_a']]].")
        refs: list[FeatureReference] = []
        for item in features:
            if isinstance(item, StreamFeatureView):
                refs.append(FeatureReference(item, ()))
            elif isinstance(item, FeatureReference):
                refs.append(item)
            else:
                raise _fail("FeatureService", name, self.site, f"{item!r} is not a feature view",
                            "List feature views or selections such as my_view[['a', 'b']].")
        self.features = tuple(refs)
        self._keep_metadata(description, owner, tags, prevent_destroy)
        self.online_serving_enabled = online_serving_enabled

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r})"
