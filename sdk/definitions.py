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
from datetime import timedelta
from typing import Any

from featurebus.aggregation_functions import AggregationFunction
from featurebus.exceptions import DefinitionError
from featurebus.types import DataType, Field

__all__ = [
    "Entity",
    "KafkaConfig",
    "PushConfig",
    "StreamSource",
    "TimeWindow",
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
    window_size: timedelta
    offset: timedelta = timedelta(0)


class StreamProcessingMode(enum.StrEnum):
    TIME_INTERVAL = "time_interval"
    CONTINUOUS = "continuous"


@dataclass
class Aggregate:
    """A windowed aggregation of one column: ``function`` is a name ("sum", "max", "stddev", ...) or
    a parameterised function from ``featurebus.aggregation_functions`` (``last(3)``)."""

    function: str | AggregationFunction
    time_window: TimeWindow | timedelta
    input_column: Field
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] | None = None
    site: DefinitionSite = field(default_factory=lambda: _caller_site(3), repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.time_window, timedelta):
            self.time_window = TimeWindow(self.time_window)
        label = self.name or f"{getattr(self.input_column, 'name', '?')}_{self.resolved_name}"
        if not isinstance(self.function, (str, AggregationFunction)):
            raise _fail("Aggregate", label, self.site, f"function must be a name or an aggregation function, "
                        f"got {self.function!r}", "Pass function='sum' or function=last(3) "
                        "(from featurebus.aggregation_functions).")
        if not isinstance(self.time_window, TimeWindow):
            raise _fail("Aggregate", label, self.site, f"time_window must be a timedelta or TimeWindow, "
                        f"got {self.time_window!r}", "Pass time_window=timedelta(hours=1).")
        if self.time_window.offset:
            raise _fail("Aggregate", label, self.site, "TimeWindow offsets are not supported yet",
                        "Remove offset=.")
        if not isinstance(self.input_column, Field):
            raise _fail("Aggregate", label, self.site, "input_column must be a Field",
                        "Pass input_column=Field('amount', Float64).")

    @property
    def function_name(self) -> str:
        """The spec's function: the name itself, or a parameterised function's base name."""
        return self.function.base_name if isinstance(self.function, AggregationFunction) else self.function

    @property
    def resolved_name(self) -> str:
        """The function's part of the default feature name (``sum``, ``last_3``), as Tecton's."""
        return self.function.resolved_name if isinstance(self.function, AggregationFunction) else str(self.function)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.function.params) if isinstance(self.function, AggregationFunction) else {}

    @property
    def window_ms(self) -> int:
        assert isinstance(self.time_window, TimeWindow)  # normalised in __post_init__
        return duration_ms(self.time_window.window_size, "time_window", "Aggregate", self.name or "?", self.site)


class Attribute:
    """A column of the transformation's output served as is: its latest value before the request
    (or spine) time, missing once older than the view's ``ttl`` (Tecton's ``Attribute``). The
    feature is named after the column. ``Attribute(Field("city", String))`` works too."""

    def __init__(self, name: str | Field, dtype: DataType | None = None, description: str | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.site = _caller_site()
        if isinstance(name, Field):
            column: Field = name
            name, dtype = column.name, dtype or column.dtype
        if not isinstance(name, str) or not name:
            raise _fail("Attribute", str(name), self.site, "name must be the name of a column of the "
                        "transformation's output", "Pass Attribute('city', String).")
        if not isinstance(dtype, DataType):
            raise _fail("Attribute", name, self.site, f"dtype must be a featurebus.types type, got {dtype!r}",
                        f"Pass Attribute({name!r}, String).")
        self.name = name
        self.dtype = dtype
        self.description = description
        self.tags = dict(tags or {})

    def __repr__(self) -> str:
        return f"Attribute({self.name!r}, {self.dtype!r})"


class StreamFeatureView(_Definition):
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
        if not features or not (all(isinstance(f, Aggregate) for f in features)
                                or all(isinstance(f, Attribute) for f in features)):
            raise self.error("features must be a non-empty list of Aggregate, or of Attribute (not both, "
                             "as in Tecton)", "Pass features=[Aggregate(function='sum', time_window=..., "
                             "input_column=...)] or features=[Attribute('city', String)]; put attributes "
                             "and aggregations in separate views.")
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
            raise self.error("continuous mode cannot have an aggregation_interval",
                             "Remove aggregation_interval, or use StreamProcessingMode.TIME_INTERVAL.")
        if isinstance(self.features[0], Attribute):
            if ttl is None:
                raise self.error("a view of Attribute features needs a ttl (how old a latest value may be)",
                                 "Pass ttl=timedelta(days=1).")
            if aggregation_interval is not None or stream_processing_mode is StreamProcessingMode.TIME_INTERVAL:
                raise self.error("Attribute features are continuous: the latest value before the request time",
                                 "Remove aggregation_interval / stream_processing_mode from this view.")

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
) -> Callable[[Callable[..., Any]], StreamFeatureView]:
    site = _caller_site()

    def wrap(function: Callable[..., Any]) -> StreamFeatureView:
        return StreamFeatureView(
            function=function, source=source, entities=entities, mode=mode, features=features,
            timestamp_field=timestamp_field, name=name, aggregation_interval=aggregation_interval,
            stream_processing_mode=stream_processing_mode, ttl=ttl, online=online, offline=offline,
            description=description, owner=owner, tags=tags, prevent_destroy=prevent_destroy, site=site,
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
