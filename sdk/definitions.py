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

from featurebus.aggregation_functions import AggregationFunction
from featurebus.batch_config import CustomBatchConfig, MaterializationContext
from featurebus.exceptions import DefinitionError
from featurebus.options import (
    BATCH_VIEW_OPTIONS,
    ENTITY_OPTIONS,
    FILE_OPTIONS,
    KAFKA_OPTIONS,
    PUSH_OPTIONS,
    SERVICE_OPTIONS,
    SOURCE_OPTIONS,
    VIEW_OPTIONS,
)
from featurebus.types import DataType, Field

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
        kind = type(self).__name__
        if description is not None and not isinstance(description, str):
            raise _fail(kind, self.name, self.site, f"description must be a string, got {description!r}",
                        "Pass description='what this is for'.")
        if owner is not None and not isinstance(owner, str):
            raise _fail(kind, self.name, self.site, f"owner must be a string, got {owner!r}",
                        "Pass owner='team@example.com'.")
        if tags is not None and (not isinstance(tags, dict)
                                 or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
            raise _fail(kind, self.name, self.site, f"tags must map strings to strings, got {tags!r}",
                        "Pass tags={'team': 'fraud'}.")
        if not isinstance(prevent_destroy, bool):
            raise _fail(kind, self.name, self.site, f"prevent_destroy must be True or False, got {prevent_destroy!r}",
                        "Pass prevent_destroy=True to protect the object from deletion.")
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
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("Entity", name, self.site)
        reject_options("Entity", name, self.site, tecton_options, ENTITY_OPTIONS)
        if not join_keys or not all(isinstance(k, Field) for k in join_keys):
            raise _fail("Entity", name, self.site, "join_keys must be a non-empty list of Field",
                        "Pass join_keys=[Field('user_id', String)].")
        for key in join_keys:
            if key.dtype.name not in ("string", "int64", "int32"):
                raise _fail("Entity", name, self.site, f"join key {key.name!r} has type {key.dtype.name}",
                            "Join keys must be String, Int64 or Int32.")
        key_names = [k.name for k in join_keys]
        if len(set(key_names)) != len(key_names):
            raise _fail("Entity", name, self.site, f"join_keys repeat a name ({key_names})",
                        "List each join key once.")
        self.join_keys = tuple(join_keys)
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def __repr__(self) -> str:
        return f"Entity({self.name!r})"


VALUE_FORMATS = ("json", "avro", "confluent_avro")


def reject_options(kind: str, name: str, site: DefinitionSite, options: dict[str, Any], reasons: dict[str, str]) -> None:
    """Tecton parameters featurebus does not act on: raise naming the first one that is set.

    ``reasons`` says why per known Tecton parameter; any other keyword is a typo or a parameter
    Tecton does not have either, and the error says so, instead of Python's bare TypeError.
    """
    for option, value in options.items():
        if value is None or value is False or value == {} or value == []:
            continue  # Tecton's defaults: leaving them as they are asks for nothing
        reason = reasons.get(option)
        if reason is None:
            raise _fail(kind, name, site, f"there is no parameter {option!r}", "Check the spelling, or remove it.")
        raise _fail(kind, name, site, f"featurebus does not support {option}= ({reason})", f"Remove {option}=.")


class KafkaConfig:
    """Where a stream source's events come from. ``kafka_bootstrap_servers=None`` means the
    platform's own cluster. ``value_format`` (a featurebus addition; Tecton parses in a Spark
    ``post_processor``): ``'json'`` objects, whose timestamps are ISO-8601 strings or epoch
    milliseconds; ``'avro'`` binary records of ``avro_schema``; or ``'confluent_avro'``, Avro in
    the Confluent wire format (magic byte 0, a 4-byte schema id, then the Avro binary), decoded
    with the inline ``avro_schema`` since featurebus has no schema registry. Avro timestamps are
    ``long`` epoch milliseconds (``timestamp-millis``), ``timestamp-micros`` or ISO strings."""

    def __init__(
        self,
        topics: str,
        timestamp_field: str,
        kafka_bootstrap_servers: str | None = None,
        watermark_delay_threshold: timedelta = timedelta(hours=24),
        value_format: str = "json",
        avro_schema: str | dict[str, Any] | None = None,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        if not isinstance(topics, str) or not topics.strip():
            raise _fail("KafkaConfig", str(topics), self.site, "topics must be a comma-separated string",
                        "Pass topics='transactions'.")
        reject_options("KafkaConfig", topics, self.site, tecton_options, KAFKA_OPTIONS)
        self.topics = tuple(t.strip() for t in topics.split(",") if t.strip())
        self.timestamp_field = timestamp_field
        self.kafka_bootstrap_servers = kafka_bootstrap_servers
        if value_format not in VALUE_FORMATS:
            raise _fail("KafkaConfig", topics, self.site, f"value_format {value_format!r} is not supported",
                        "Use value_format='json', 'avro' or 'confluent_avro'.")
        self.value_format = value_format
        self.avro_schema = self._avro_schema(value_format, avro_schema)
        if not isinstance(watermark_delay_threshold, timedelta) or watermark_delay_threshold < timedelta(0):
            raise _fail("KafkaConfig", topics, self.site, "watermark_delay_threshold must be a timedelta >= 0",
                        "Pass e.g. watermark_delay_threshold=timedelta(minutes=5).")
        self.watermark_delay_ms = int(watermark_delay_threshold / timedelta(milliseconds=1))

    def _avro_schema(self, value_format: str, schema: str | dict[str, Any] | None) -> str | None:
        """The schema as canonical-enough JSON text (what the spec stores), checked by fastavro."""
        topics = ",".join(self.topics)
        if value_format == "json":
            if schema is not None:
                raise _fail("KafkaConfig", topics, self.site, "avro_schema is set but value_format is 'json'",
                            "Pass value_format='avro' or 'confluent_avro', or remove avro_schema.")
            return None
        if schema is None:
            raise _fail("KafkaConfig", topics, self.site, f"value_format {value_format!r} needs avro_schema",
                        "Pass avro_schema= the writer's record schema (a JSON string or dict).")
        from featurebus.streams.avro import avro_schema_text

        try:
            return avro_schema_text(schema)
        except ValueError as exc:
            raise _fail("KafkaConfig", topics, self.site, f"avro_schema is not a usable Avro record schema: {exc}",
                        "Pass the writer's schema: {'type': 'record', 'name': ..., 'fields': [...]}.") from None


FILE_FORMATS = ("parquet", "csv", "json")


class FileConfig:
    """Files (Parquet, CSV or JSON lines) that hold a source's history, as in Tecton: ``uri`` is a
    local file, folder (every file of the format below it) or glob, ``file://`` accepted. Read by
    ``featurebus.platform.batch.sources`` for batch feature views and stream views' history."""

    def __init__(self, uri: str, file_format: str = "parquet", timestamp_field: str | None = None,
                 **tecton_options: Any) -> None:
        self.site = _caller_site()
        if not isinstance(uri, str) or not uri:
            raise _fail("FileConfig", str(uri), self.site, "uri must be a non-empty string",
                        "Pass uri='s3://bucket/path/' or a local folder.")
        reject_options("FileConfig", uri, self.site, tecton_options, FILE_OPTIONS)
        if file_format not in FILE_FORMATS:
            raise _fail("FileConfig", uri, self.site, f"file_format {file_format!r} is not supported",
                        "Use file_format='parquet', 'csv' or 'json'.")
        self.uri = uri
        self.file_format = file_format
        self.timestamp_field = timestamp_field


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
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        reject_options("PushConfig", "push", self.site, tecton_options, PUSH_OPTIONS)
        for option, value in (("post_processor", post_processor), ("input_schema", input_schema)):
            if value is not None:
                raise _fail("PushConfig", option, self.site, f"{option} is not supported yet",
                            f"Remove {option}=; push records that already match the source's schema.")
        self.log_offline = log_offline
        self.timestamp_field = timestamp_field


class DataSource(_Definition):
    """What stream and batch sources share (Tecton's base class of both)."""

    def unfiltered(self) -> DataSource:
        """Tecton's way to read a source without the materialization time-range filter.

        Only batch feature views filter their sources by a range (a stream source's too, its
        ``batch_config`` history); stream views read the whole topic, so there it changes nothing."""
        return self


class StreamSource(DataSource):
    def __init__(
        self,
        name: str,
        schema: Sequence[Field],
        stream_config: KafkaConfig | PushConfig,
        batch_config: FileConfig | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("StreamSource", name, self.site)
        reject_options("StreamSource", name, self.site, tecton_options, SOURCE_OPTIONS)
        if not isinstance(stream_config, (KafkaConfig, PushConfig)):
            raise _fail("StreamSource", name, self.site, "stream_config must be a KafkaConfig or a PushConfig",
                        "Pass stream_config=KafkaConfig(topics=..., timestamp_field=...) or PushConfig().")
        if batch_config is not None and not isinstance(batch_config, FileConfig):
            raise _fail("StreamSource", name, self.site, f"batch_config must be a FileConfig, got {batch_config!r}",
                        "Pass batch_config=FileConfig(uri=..., file_format='parquet'), or remove it.")
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise _fail("StreamSource", name, self.site, "schema must be a non-empty list of Field",
                        "Pass schema=[Field('user_id', String), ...].")
        names = [f.name for f in schema]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _fail("StreamSource", name, self.site, f"the schema lists {repeated[0]!r} more than once",
                        "Keep one Field per column.")
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
        stamp_type = schema[names.index(timestamp_field)].dtype.name
        if stamp_type != "timestamp":
            raise _fail("StreamSource", name, self.site,
                        f"timestamp_field {timestamp_field!r} has type {stamp_type}",
                        f"Declare Field({timestamp_field!r}, Timestamp).")
        if isinstance(stream_config, KafkaConfig) and stream_config.avro_schema is not None:
            from featurebus.streams.avro import avro_field_names

            missing = [n for n in names if n not in avro_field_names(stream_config.avro_schema)]
            if missing:
                raise _fail("StreamSource", name, self.site,
                            f"field {missing[0]!r} of the schema is not a field of the KafkaConfig's avro_schema",
                            "Remove it from schema=, or use the Avro schema the producers write with.")
        self.timestamp_field = timestamp_field
        self.schema = tuple(schema)
        self.stream_config = stream_config
        self.batch_config = batch_config
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def unfiltered(self) -> DataSource:
        return UnfilteredSource(self)

    def __repr__(self) -> str:
        return f"StreamSource({self.name!r})"


class UnfilteredSource(DataSource):
    """``source.unfiltered()``: a batch feature view reads all of the source's rows (a stream
    source's: all of its ``batch_config`` history), not only those in the materialization range
    (Tecton's ``FilteredSource`` opposite). A stream view reads ``source`` itself."""

    def __init__(self, source: BatchSource | StreamSource) -> None:
        self.source = source
        self.name = source.name
        self.site = source.site

    def unfiltered(self) -> DataSource:
        return self

    def __repr__(self) -> str:
        return f"{self.source!r}.unfiltered()"


class BatchSource(DataSource):
    """A source of history only: files (``FileConfig``) or a Python function
    (``@pandas_batch_config`` / ``@pyarrow_batch_config``), read by batch feature views."""

    def __init__(
        self,
        name: str,
        batch_config: FileConfig | CustomBatchConfig,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("BatchSource", name, self.site)
        reject_options("BatchSource", name, self.site, tecton_options, SOURCE_OPTIONS)
        if not isinstance(batch_config, (FileConfig, CustomBatchConfig)):
            raise _fail("BatchSource", name, self.site, f"batch_config must be a FileConfig or a function decorated "
                        f"with @pandas_batch_config / @pyarrow_batch_config, got {batch_config!r}",
                        "Pass batch_config=FileConfig(uri=..., file_format='parquet', timestamp_field=...).")
        self.batch_config = batch_config
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def unfiltered(self) -> DataSource:
        return UnfilteredSource(self)

    def __repr__(self) -> str:
        return f"BatchSource({self.name!r})"


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
    """A windowed aggregation of one column: ``function`` is a name ("sum", "max", "stddev", ...) or
    a parameterised function from ``featurebus.aggregation_functions`` (``last(3)``); ``time_window``
    a ``timedelta``, ``TimeWindow`` (with an offset), ``LifetimeWindow`` or ``TimeWindowSeries``."""

    function: str | AggregationFunction
    time_window: WindowDefinition | timedelta
    input_column: Field
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] | None = None
    site: DefinitionSite = field(default_factory=lambda: _caller_site(3), repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.time_window, timedelta):
            self.time_window = TimeWindow(self.time_window)
        if not isinstance(self.function, (str, AggregationFunction)):
            raise _fail("Aggregate", self.label, self.site, f"function must be a name or an aggregation function, "
                        f"got {self.function!r}", "Pass function='sum' or function=last(3) "
                        "(from featurebus.aggregation_functions).")
        if not isinstance(self.time_window, (TimeWindow, LifetimeWindow, TimeWindowSeries)):
            raise _fail("Aggregate", self.label, self.site, f"time_window must be a timedelta, TimeWindow, "
                        f"LifetimeWindow or TimeWindowSeries, got {self.time_window!r}",
                        "Pass time_window=timedelta(hours=1).")
        if not isinstance(self.input_column, Field):
            raise _fail("Aggregate", self.label, self.site, "input_column must be a Field",
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
    def label(self) -> str:
        """The name errors use: the explicit name, else ``column_function``."""
        return self.name or f"{getattr(self.input_column, 'name', '?')}_{self.resolved_name}"

    @property
    def window(self) -> WindowDefinition:
        assert not isinstance(self.time_window, timedelta)  # normalised in __post_init__
        return self.time_window


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


# Tecton's ``mode=`` values; featurebus runs 'pandas' and 'python' and refuses the others where used.
PANDAS_MODE = "pandas"
PYTHON_MODE = "python"
SPARK_SQL_MODE = "spark_sql"
PYSPARK_MODE = "pyspark"
SNOWFLAKE_SQL_MODE = "snowflake_sql"


class BatchTriggerType(enum.Enum):
    """Tecton's batch materialization triggers; featurebus has no batch materialization yet."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    NO_BATCH_MATERIALIZATION = "no_batch_materialization"


class FeatureView(_Definition):
    """What every kind of feature view shares (Tecton's ``FeatureView``): ``fv[["a", "b"]]``."""

    site: DefinitionSite
    name: str

    def error(self, problem: str, fix: str) -> DefinitionError:
        return _fail(type(self).__name__, self.name, self.site, problem, fix)

    def __getitem__(self, features: Sequence[str]) -> FeatureReference:
        return FeatureReference(self, tuple(features))

    function: Callable[..., Any]

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


class MaterializedFeatureView(FeatureView):
    """Base class of the views whose features are computed ahead of requests (stream, batch)."""


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
    ) -> None:
        self.site = site
        self.function = function
        self.name = _require_name("StreamFeatureView", name or function.__name__, site)
        given: object = source
        if isinstance(given, UnfilteredSource):
            given = given.source  # a stream view never filters its source by a range
        if isinstance(given, BatchSource):
            raise self.error(f"source {given.name!r} is a BatchSource; stream feature views read StreamSources",
                             "Pass a StreamSource (it may carry the history as batch_config=FileConfig(...)).")
        if not isinstance(given, StreamSource):
            raise self.error(f"source must be a StreamSource, got {given!r}", "Pass source=<a StreamSource>.")
        source = given
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

    def __repr__(self) -> str:
        return f"StreamFeatureView({self.name!r})"


@dataclass(frozen=True)
class FeatureReference:
    """``fv[["a", "b"]]``: a selection of a view's features for a feature service."""

    view: FeatureView
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
    lifetime_start_time: datetime | None = None,
    aggregation_leading_edge: AggregationLeadingEdge | None = None,
    **tecton_options: Any,
) -> Callable[[Callable[..., Any]], StreamFeatureView]:
    site = _caller_site()
    reject_options("StreamFeatureView", name or "?", site, tecton_options, VIEW_OPTIONS)

    def wrap(function: Callable[..., Any]) -> StreamFeatureView:
        return StreamFeatureView(
            function=function, source=source, entities=entities, mode=mode, features=features,
            timestamp_field=timestamp_field, name=name, aggregation_interval=aggregation_interval,
            stream_processing_mode=stream_processing_mode, ttl=ttl, online=online, offline=offline,
            description=description, owner=owner, tags=tags, prevent_destroy=prevent_destroy, site=site,
            lifetime_start_time=lifetime_start_time, aggregation_leading_edge=aggregation_leading_edge,
        )

    return wrap


class FeatureService(_Definition):
    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureReference],
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        online_serving_enabled: bool = True,
        **tecton_options: Any,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("FeatureService", name, self.site)
        reject_options("FeatureService", name, self.site, tecton_options, SERVICE_OPTIONS)
        if not features:
            raise _fail("FeatureService", name, self.site, "features is empty",
                        "Pass features=[my_view] or features=[my_view[['feature_a']]].")
        refs: list[FeatureReference] = []
        for item in features:
            if isinstance(item, FeatureView):
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
    ) -> None:
        self.site = site
        self.function = function
        self.name = _require_name("BatchFeatureView", name or function.__name__, site)
        if not sources or not all(isinstance(s, DataSource) for s in sources):
            raise self.error("sources must be a non-empty list of BatchSource or StreamSource",
                             "Pass sources=[my_batch_source].")
        for source in (s.source if isinstance(s, UnfilteredSource) else s for s in sources):
            if isinstance(source, StreamSource) and source.batch_config is None:
                raise self.error(f"stream source {source.name!r} has no batch_config, so it has no history to read",
                                 "Give the StreamSource batch_config=FileConfig(...), or use @stream_feature_view.")
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise self.error("entities must be a non-empty list of Entity", "Pass entities=[user].")
        if mode != PANDAS_MODE:
            # Tecton's batch views take 'spark_sql', 'pyspark', 'snowflake_sql', 'snowpark' or 'pandas';
            # its 'python' mode (rows as dicts) exists for realtime views only, so there is none to port.
            fix = ("Use mode='pandas' (featurebus runs no Spark or warehouse SQL)." if mode != PYTHON_MODE
                   else "Use mode='pandas', the mode batch views support: the function receives and returns "
                        "DataFrames. As in Tecton, mode='python' (one dict per row) is for @realtime_feature_view.")
            raise self.error(f"mode {mode!r} is not supported for batch feature views", fix)
        if not features or not (all(isinstance(f, Aggregate) for f in features)
                                or all(isinstance(f, Attribute) for f in features)):
            raise self.error("features must be a non-empty list of Aggregate, or of Attribute (not both)",
                             "Pass features=[Attribute('city', String)] or features=[Aggregate(...)]; put "
                             "attributes and aggregations in separate views.")
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
            raise self.error(f"feature_start_time must be a datetime, got {feature_start_time!r}",
                             "Pass e.g. feature_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc).")
        self.feature_start_time = feature_start_time
        if not isinstance(incremental_backfills, bool):
            raise self.error("incremental_backfills must be True or False", "Pass incremental_backfills=True.")
        self.incremental_backfills = incremental_backfills
        trigger = batch_trigger or BatchTriggerType.SCHEDULED
        if not isinstance(trigger, BatchTriggerType):
            raise self.error(f"batch_trigger must be a BatchTriggerType, got {batch_trigger!r}",
                             "Pass batch_trigger=BatchTriggerType.MANUAL, or leave the default (SCHEDULED).")
        self.batch_trigger = trigger
        if lifetime_start_time is not None:
            raise self.error("lifetime windows are not supported for batch feature views yet",
                             "Use a TimeWindow (time_window=timedelta(...)), or a stream feature view.")
        if not isinstance(self.features[0], Attribute) and ttl is not None:
            raise self.error("ttl applies to Attribute features; an aggregation's time_window already bounds "
                             "the data it reads", "Remove ttl=, or make the features Attributes.")
        if isinstance(self.features[0], Attribute):
            if ttl is None:
                raise self.error("a view of Attribute features needs a ttl (how old a latest value may be)",
                                 "Pass ttl=timedelta(days=1).")
            if aggregation_interval is not None:
                raise self.error("Attribute features are the latest value before the request time: there is no "
                                 "aggregation_interval", "Remove aggregation_interval from this view.")
        parameters = list(inspect.signature(function).parameters.values())
        contexts = [p.name for p in parameters if isinstance(p.default, MaterializationContext)]
        self.context_parameter = contexts[0] if contexts else None
        inputs = [p for p in parameters if p.name not in contexts]
        if len(contexts) > 1 or len(inputs) != len(self.sources):
            raise self.error(f"the transformation takes {[p.name for p in inputs]} but the view has "
                             f"{len(self.sources)} source(s)",
                             "Give the function one argument per source, in sources order, plus optionally "
                             "context=materialization_context().")

    @property
    def feature_start_ms(self) -> int | None:
        start = self.feature_start_time
        if start is None:
            return None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

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
    **tecton_options: Any,
) -> Callable[[Callable[..., Any]], BatchFeatureView]:
    """Tecton's ``@batch_feature_view`` (see ``BatchFeatureView``)."""
    site = _caller_site()

    def wrap(function: Callable[..., Any]) -> BatchFeatureView:
        # Checked here, where the view's name (the function's, by default) is known.
        reject_options("BatchFeatureView", name or function.__name__, site, tecton_options, BATCH_VIEW_OPTIONS)
        return BatchFeatureView(
            function=function, sources=sources, entities=entities, mode=mode, features=features,
            timestamp_field=timestamp_field, name=name, aggregation_interval=aggregation_interval, ttl=ttl,
            online=online, offline=offline, batch_schedule=batch_schedule, feature_start_time=feature_start_time,
            incremental_backfills=incremental_backfills, batch_trigger=batch_trigger,
            lifetime_start_time=lifetime_start_time, description=description, owner=owner, tags=tags,
            prevent_destroy=prevent_destroy, site=site,
        )

    return wrap
