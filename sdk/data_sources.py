"""Data sources: Kafka streams and push sources (``StreamSource``), files and custom functions
(``BatchSource``), and their configs, as Tecton 1.x names them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from featurebus.batch_config import CustomBatchConfig
from featurebus.definition_base import (
    DefinitionSite,
    _caller_site,
    _Definition,
    _fail,
    _require_name,
    reject_options,
)
from featurebus.options import (
    FILE_OPTIONS,
    KAFKA_OPTIONS,
    PUSH_OPTIONS,
    SOURCE_OPTIONS,
)
from featurebus.schemas.kinds import FileFormat, ValueFormat
from featurebus.schemas.time_range import SourceRangeSpec, TimeReference, empty_range_reason
from featurebus.time_constants import TectonTimeConstant, TimeBound, time_bound_spec
from featurebus.types import Field

__all__ = [
    "VALUE_FORMATS",
    "FILE_FORMATS",
    "BatchSource",
    "DataSource",
    "FileConfig",
    "KafkaConfig",
    "PushConfig",
    "RangedSource",
    "StreamSource",
    "UnfilteredSource",
    "plain_source",
]


VALUE_FORMATS = tuple(ValueFormat)


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
            raise _fail(
                "KafkaConfig",
                str(topics),
                self.site,
                "topics must be a comma-separated string",
                "Pass topics='transactions'.",
            )
        reject_options("KafkaConfig", topics, self.site, tecton_options, KAFKA_OPTIONS)
        self.topics = tuple(t.strip() for t in topics.split(",") if t.strip())
        self.timestamp_field = timestamp_field
        self.kafka_bootstrap_servers = kafka_bootstrap_servers
        if value_format not in VALUE_FORMATS:
            raise _fail(
                "KafkaConfig",
                topics,
                self.site,
                f"value_format {value_format!r} is not supported",
                "Use value_format='json', 'avro' or 'confluent_avro'.",
            )
        self.value_format = value_format
        self.avro_schema = self._avro_schema(value_format, avro_schema)
        if not isinstance(watermark_delay_threshold, timedelta) or watermark_delay_threshold < timedelta(0):
            raise _fail(
                "KafkaConfig",
                topics,
                self.site,
                "watermark_delay_threshold must be a timedelta >= 0",
                "Pass e.g. watermark_delay_threshold=timedelta(minutes=5).",
            )
        self.watermark_delay_ms = int(watermark_delay_threshold / timedelta(milliseconds=1))

    def _avro_schema(self, value_format: str, schema: str | dict[str, Any] | None) -> str | None:
        """The schema as canonical-enough JSON text (what the spec stores), checked by fastavro."""
        topics = ",".join(self.topics)
        if value_format == ValueFormat.JSON:
            if schema is not None:
                raise _fail(
                    "KafkaConfig",
                    topics,
                    self.site,
                    "avro_schema is set but value_format is 'json'",
                    "Pass value_format='avro' or 'confluent_avro', or remove avro_schema.",
                )
            return None
        if schema is None:
            raise _fail(
                "KafkaConfig",
                topics,
                self.site,
                f"value_format {value_format!r} needs avro_schema",
                "Pass avro_schema= the writer's record schema (a JSON string or dict).",
            )
        from featurebus.streams.avro import avro_schema_text

        try:
            return avro_schema_text(schema)
        except ValueError as exc:
            raise _fail(
                "KafkaConfig",
                topics,
                self.site,
                f"avro_schema is not a usable Avro record schema: {exc}",
                "Pass the writer's schema: {'type': 'record', 'name': ..., 'fields': [...]}.",
            ) from None


FILE_FORMATS = tuple(FileFormat)


class FileConfig:
    """Files (Parquet, CSV or JSON lines) that hold a source's history, as in Tecton: ``uri`` is a
    local file, folder (every file of the format below it) or glob, ``file://`` accepted. Read by
    ``featurebus.platform.batch.sources`` for batch feature views and stream views' history."""

    def __init__(
        self, uri: str, file_format: str = "parquet", timestamp_field: str | None = None, **tecton_options: Any
    ) -> None:
        self.site = _caller_site()
        if not isinstance(uri, str) or not uri:
            raise _fail(
                "FileConfig",
                str(uri),
                self.site,
                "uri must be a non-empty string",
                "Pass uri='s3://bucket/path/' or a local folder.",
            )
        reject_options("FileConfig", uri, self.site, tecton_options, FILE_OPTIONS)
        if file_format not in FILE_FORMATS:
            raise _fail(
                "FileConfig",
                uri,
                self.site,
                f"file_format {file_format!r} is not supported",
                "Use file_format='parquet', 'csv' or 'json'.",
            )
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
                raise _fail(
                    "PushConfig",
                    option,
                    self.site,
                    f"{option} is not supported yet",
                    f"Remove {option}=; push records that already match the source's schema.",
                )
        self.log_offline = log_offline
        self.timestamp_field = timestamp_field


class DataSource(_Definition):
    """What stream and batch sources share (Tecton's base class of both)."""

    def unfiltered(self) -> DataSource:
        """Tecton's way to read a source without the materialization time-range filter.

        Only batch feature views filter their sources by a range (a stream source's too, its
        ``batch_config`` history); stream views read the whole topic, so there it changes nothing."""
        return self

    def select_range(
        self,
        start_time: TimeBound = TectonTimeConstant.MATERIALIZATION_START_TIME,
        end_time: TimeBound = TectonTimeConstant.MATERIALIZATION_END_TIME,
    ) -> RangedSource:
        """Tecton's ``select_range``: a batch feature view reads this source's rows in
        ``[start_time, end_time)``, evaluated for each materialization window; a stream feature
        view reads its history (``batch_config``) so, per backfill window, never its stream.
        Bounds are datetimes, ``TectonTimeConstant``s, or ``MATERIALIZATION_START/END_TIME +/- timedelta``."""
        source = plain_source(self)
        assert isinstance(source, BatchSource | StreamSource)  # every other DataSource wraps one
        return _select_range(source, start_time, end_time, _caller_site())


def _select_range(
    source: BatchSource | StreamSource, start_time: object, end_time: object, site: DefinitionSite
) -> RangedSource:
    kind = type(source).__name__
    bounds = []
    for what, value in (("start_time", start_time), ("end_time", end_time)):
        bound = time_bound_spec(value)
        if bound is None:
            raise _fail(
                kind,
                source.name,
                site,
                f"select_range {what} must be a datetime, a TectonTimeConstant, or "
                f"MATERIALIZATION_START_TIME / MATERIALIZATION_END_TIME +/- a timedelta of whole "
                f"milliseconds; got {value!r}",
                f"Pass e.g. {what}=TectonTimeConstant.MATERIALIZATION_START_TIME - timedelta(days=7).",
            )
        bounds.append(bound)
    bounded = any(b.reference not in (TimeReference.UNBOUNDED_PAST, TimeReference.UNBOUNDED_FUTURE) for b in bounds)
    if (
        bounded
        and isinstance(source, BatchSource)
        and isinstance(source.batch_config, FileConfig)
        and source.batch_config.timestamp_field is None
    ):
        raise _fail(
            kind,
            source.name,
            site,
            "select_range filters rows by time, but the source's FileConfig has no timestamp_field",
            "Pass FileConfig(..., timestamp_field='<the event time column>').",
        )
    reason = empty_range_reason(bounds[0], bounds[1])
    if reason is not None:
        raise _fail(
            kind,
            source.name,
            site,
            f"select_range(start_time={start_time}, end_time={end_time}) selects no "
            f"row in any materialization window: {reason}",
            "Make end_time later than start_time, e.g. start_time=TectonTimeConstant."
            "MATERIALIZATION_START_TIME - timedelta(days=7), end_time=TectonTimeConstant."
            "MATERIALIZATION_END_TIME.",
        )
    return RangedSource(
        source,
        SourceRangeSpec(source.name, bounds[0], bounds[1]),
        site,
        f"start_time={start_time}, end_time={end_time}",
    )


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
            raise _fail(
                "StreamSource",
                name,
                self.site,
                "stream_config must be a KafkaConfig or a PushConfig",
                "Pass stream_config=KafkaConfig(topics=..., timestamp_field=...) or PushConfig().",
            )
        if batch_config is not None and not isinstance(batch_config, FileConfig):
            raise _fail(
                "StreamSource",
                name,
                self.site,
                f"batch_config must be a FileConfig, got {batch_config!r}",
                "Pass batch_config=FileConfig(uri=..., file_format='parquet'), or remove it.",
            )
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise _fail(
                "StreamSource",
                name,
                self.site,
                "schema must be a non-empty list of Field",
                "Pass schema=[Field('user_id', String), ...].",
            )
        names = [f.name for f in schema]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _fail(
                "StreamSource",
                name,
                self.site,
                f"the schema lists {repeated[0]!r} more than once",
                "Keep one Field per column.",
            )
        timestamp_field = stream_config.timestamp_field
        if timestamp_field is None:  # a PushConfig without one: the schema's only Timestamp field
            stamps = [f.name for f in schema if f.dtype.name == "timestamp"]
            if len(stamps) != 1:
                raise _fail(
                    "StreamSource",
                    name,
                    self.site,
                    f"the schema has {len(stamps)} Timestamp fields",
                    "Pass PushConfig(timestamp_field=...) to say which one is the event time.",
                )
            timestamp_field = stamps[0]
        if timestamp_field not in names:
            raise _fail(
                "StreamSource",
                name,
                self.site,
                f"timestamp_field {timestamp_field!r} is not in the schema",
                f"Add Field({timestamp_field!r}, Timestamp) to schema.",
            )
        stamp_type = schema[names.index(timestamp_field)].dtype.name
        if stamp_type != "timestamp":
            raise _fail(
                "StreamSource",
                name,
                self.site,
                f"timestamp_field {timestamp_field!r} has type {stamp_type}",
                f"Declare Field({timestamp_field!r}, Timestamp).",
            )
        if isinstance(stream_config, KafkaConfig) and stream_config.avro_schema is not None:
            from featurebus.streams.avro import avro_field_names

            missing = [n for n in names if n not in avro_field_names(stream_config.avro_schema)]
            if missing:
                raise _fail(
                    "StreamSource",
                    name,
                    self.site,
                    f"field {missing[0]!r} of the schema is not a field of the KafkaConfig's avro_schema",
                    "Remove it from schema=, or use the Avro schema the producers write with.",
                )
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
            raise _fail(
                "BatchSource",
                name,
                self.site,
                f"batch_config must be a FileConfig or a function decorated "
                f"with @pandas_batch_config / @pyarrow_batch_config, got {batch_config!r}",
                "Pass batch_config=FileConfig(uri=..., file_format='parquet', timestamp_field=...).",
            )
        self.batch_config = batch_config
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def unfiltered(self) -> DataSource:
        return UnfilteredSource(self)

    def __repr__(self) -> str:
        return f"BatchSource({self.name!r})"


class RangedSource(DataSource):
    """``source.select_range(start_time, end_time)``: a batch feature view reads the source's rows
    in that range, evaluated per materialization window (``featurebus.schemas.time_range``), in
    materialization jobs, training sets and ad hoc reads alike; a stream feature view so reads
    its batch history (``featurebus.streams.cutover``), and all of its stream."""

    def __init__(
        self, source: BatchSource | StreamSource, selected: SourceRangeSpec, site: DefinitionSite, given: str = ""
    ) -> None:
        self.source = source
        self.name = source.name
        self.range = selected
        self.site = site  # where select_range was called: errors about the range point there
        self._given = given  # the arguments as written, for messages

    def unfiltered(self) -> DataSource:
        return UnfilteredSource(self.source)

    def __repr__(self) -> str:
        return f"{self.source!r}.select_range({self._given})"


def plain_source(source: DataSource) -> DataSource:
    """The source itself, whether given plain, ``.unfiltered()`` or ``.select_range(...)``."""
    return source.source if isinstance(source, UnfilteredSource | RangedSource) else source
