"""The closed sets a spec field can take, one ``StrEnum`` each.

A member *is* its string value (``WindowKind.TIME == "time"``), so the specs' JSON is the same
bytes as when these fields were plain strings and documents written then read back unchanged
(``featurebus.schemas.specs`` decodes them, naming the field and the allowed values when a
document holds something else). The SDK re-exports the ones users pass (``AggregationLeadingEdge``,
``BatchTriggerType``).
"""

from __future__ import annotations

import enum

__all__ = [
    "StreamEngineKind",
    "AggregationFunction",
    "AggregationLeadingEdge",
    "BatchConfigKind",
    "BatchTriggerType",
    "FileFormat",
    "RealtimeInputKind",
    "RealtimeMode",
    "TransformationMode",
    "ValueFormat",
    "WindowKind",
]


class AggregationFunction(enum.StrEnum):
    """The functions a spec can name (``AggregationSpec.function``)."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    FIRST_N = "first_n"
    LAST_N = "last_n"
    FIRST_DISTINCT_N = "first_distinct_n"
    LAST_DISTINCT_N = "last_distinct_n"
    VAR_POP = "var_pop"
    VAR_SAMP = "var_samp"
    STDDEV_POP = "stddev_pop"
    STDDEV_SAMP = "stddev_samp"
    APPROX_COUNT_DISTINCT = "approx_count_distinct"
    APPROX_PERCENTILE = "approx_percentile"


class WindowKind(enum.StrEnum):
    """Which events a value at ``T`` covers (``AggregationSpec.window_kind``); the bounds are
    ``featurebus.streams.windows.aggregation_windows``."""

    TIME = "time"  # [E + offset - window, E + offset)
    LIFETIME = "lifetime"  # [the view's lifetime start, E)
    SERIES = "series"  # one window per step of a TimeWindowSeries, one array element each


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
    stream with no lag would have processed at ``T``. ``UNSPECIFIED`` means the default (the
    compiler stores ``WALL_CLOCK_TIME`` in its place).
    """

    UNSPECIFIED = "unspecified"
    WALL_CLOCK_TIME = "wall_clock_time"
    LATEST_EVENT_TIME = "latest_event_time"


class BatchTriggerType(enum.StrEnum):
    """Tecton's batch materialization triggers (``BatchFeatureViewSpec.batch_trigger``): the jobs
    scheduler materializes only ``SCHEDULED`` views by itself."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    NO_BATCH_MATERIALIZATION = "no_batch_materialization"


class TransformationMode(enum.StrEnum):
    """How a stream or batch view's transformation is called: with a DataFrame, or per row."""

    PANDAS = "pandas"
    PYTHON = "python"


class RealtimeMode(enum.StrEnum):
    """How a realtime view computes: a transformation (one dict per source, or one DataFrame per
    source) or, without one, its ``Calculation`` expressions."""

    PYTHON = "python"
    PANDAS = "pandas"
    NO_TRANSFORMATION = "no_transformation"


class RealtimeInputKind(enum.StrEnum):
    """What one source of a realtime view is (``RealtimeInputSpec.kind``)."""

    REQUEST = "request"  # a RequestSource: fields of the request
    FEATURE_VIEW = "feature_view"  # selected features of another view


class ValueFormat(enum.StrEnum):
    """How a Kafka source's record values are encoded (``KafkaConfigSpec.value_format``)."""

    JSON = "json"
    AVRO = "avro"  # bare Avro binary, written with the source's avro_schema
    CONFLUENT_AVRO = "confluent_avro"  # Confluent's wire format: magic byte, schema id, Avro


class FileFormat(enum.StrEnum):
    """The format of a ``FileConfig``'s files (``FileConfigSpec.file_format``)."""

    PARQUET = "parquet"
    CSV = "csv"
    JSON = "json"


class BatchConfigKind(enum.StrEnum):
    """What a batch source written in Python returns (``CustomBatchConfigSpec.kind``)."""

    PANDAS = "pandas"  # a DataFrame
    PYARROW = "pyarrow"  # an Arrow table


class StreamEngineKind(enum.StrEnum):
    """Which engine computes a live workspace's stream feature views (``featurebus worker --engine``)."""

    NATIVE = "native"  # featurebus's own transactional worker (the default)
    FLINK = "flink"  # a PyFlink job (``featurebus.streams.runtime.flink``)
