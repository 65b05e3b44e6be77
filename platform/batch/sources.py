"""Reading batch sources: a ``FileConfig``'s files or a Python batch config, for a time range.

Every reader returns an Arrow table whose timestamp column is ``timestamp[ms, tz=UTC]`` and
holds only rows with ``start_ms <= timestamp < end_ms`` (``None``: unbounded on that side).
Schema problems name the source, the column and what to change. No Kafka, no offline store.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from featurebus.schemas.batch_context import FilterContext
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.kinds import BatchConfigKind, FileFormat
from featurebus.schemas.specs import BatchSourceSpec, CustomBatchConfigSpec, FieldSpec, FileConfigSpec, StreamSourceSpec
from featurebus.schemas.time import from_epoch_ms
from featurebus.streams.transform import load_function

__all__ = [
    "BatchSourceError",
    "declared_fields",
    "resolve_files",
    "read_file_config",
    "read_custom_config",
    "read_batch_source",
    "read_stream_history",
    "ms_to_datetime",
]

_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_EXTENSIONS = {
    FileFormat.PARQUET: (".parquet", ".parq"),
    FileFormat.CSV: (".csv",),
    FileFormat.JSON: (".json", ".jsonl", ".ndjson"),
}


class BatchSourceError(FeaturebusError):
    """A batch source's files or function cannot give the rows a view needs."""


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else from_epoch_ms(ms)


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        raise BatchSourceError(
            f"FileConfig uri {uri!r}: only local paths are read (no object stores); copy the "
            "files to a local folder and use its path, or file:///path"
        )
    return uri


def resolve_files(config: FileConfigSpec) -> list[Path]:
    """The files a FileConfig names: one file, every file of its format under a folder, or a glob."""
    path = _local_path(config.uri)
    if any(ch in path for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
    target = Path(path)
    if target.is_dir():
        extensions = _EXTENSIONS[config.file_format]
        return sorted(
            p
            for p in target.rglob("*")
            if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith((".", "_"))
        )
    return [target] if target.is_file() else []


def declared_fields(config: FileConfigSpec) -> list[FieldSpec] | None:
    """The columns of a Parquet FileConfig's first file, if there is one (plan-time checks)."""
    if config.file_format != FileFormat.PARQUET:
        return None
    try:
        files = resolve_files(config)
    except BatchSourceError:
        return None
    if not files:
        return None
    schema = pq.read_schema(files[0])
    return [FieldSpec(f.name, _dtype(f.type)) for f in schema]


def _dtype(arrow: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow) or pa.types.is_date(arrow):
        return "timestamp"
    if pa.types.is_integer(arrow):
        return "int32" if arrow.bit_width <= 32 else "int64"
    if pa.types.is_floating(arrow):
        return "float32" if arrow.bit_width == 32 else "float64"
    if pa.types.is_boolean(arrow):
        return "bool"
    return "string"


def _read_file(path: Path, file_format: FileFormat) -> pa.Table:
    if file_format == FileFormat.PARQUET:
        return pq.read_table(path)
    if file_format == FileFormat.CSV:
        return pcsv.read_csv(path)
    return pjson.read_json(path)


def _as_timestamp(column: pa.ChunkedArray, what: str, name: str) -> pa.ChunkedArray:
    """A timestamp column as UTC milliseconds: timestamps, dates, ISO strings or epoch milliseconds."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:  # naive times are UTC, as everywhere in featurebus (docs/design.md §4)
            column = pc.assume_timezone(column, "UTC")
        return column.cast(_TIMESTAMP)
    if pa.types.is_date(kind):
        return pc.assume_timezone(column.cast(pa.timestamp("ms")), "UTC")
    if pa.types.is_integer(kind):
        return column.cast(pa.int64()).cast(_TIMESTAMP)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            parsed = pd.to_datetime(pd.Series(column.to_pylist(), dtype=object), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise BatchSourceError(
                f"{what}: timestamp column {name!r} holds text that is not an ISO-8601 time "
                f"({exc}); write times as ISO-8601 (2024-05-01T12:00:00Z) or epoch "
                "milliseconds"
            ) from None
        return pa.chunked_array([pa.array(parsed.dt.as_unit("ms"), type=_TIMESTAMP, from_pandas=True)])
    raise BatchSourceError(
        f"{what}: timestamp column {name!r} has type {kind}; it must be a timestamp, an ISO-8601 "
        "string or epoch milliseconds"
    )


def _filter(table: pa.Table, what: str, timestamp_field: str, start_ms: int | None, end_ms: int | None) -> pa.Table:
    if timestamp_field not in table.column_names:
        raise BatchSourceError(
            f"{what}: the timestamp field {timestamp_field!r} is not a column "
            f"(columns: {', '.join(table.column_names)}); set timestamp_field= to one of them"
        )
    index = table.column_names.index(timestamp_field)
    table = table.set_column(index, timestamp_field, _as_timestamp(table.column(index), what, timestamp_field))
    if start_ms is None and end_ms is None:
        return table
    ms = table.column(index).cast(pa.int64())
    keep = pc.is_valid(ms)
    if start_ms is not None:
        keep = pc.and_(keep, pc.greater_equal(ms, start_ms))
    if end_ms is not None:
        keep = pc.and_(keep, pc.less(ms, end_ms))
    return table.filter(keep)


def read_file_config(
    what: str, config: FileConfigSpec, start_ms: int | None, end_ms: int | None, timestamp_field: str | None = None
) -> pa.Table:
    """Rows of a FileConfig's files in ``[start_ms, end_ms)`` by ``timestamp_field`` (default:
    the config's; no time filter at all when neither is set and the range is unbounded)."""
    files = resolve_files(config)
    if not files:
        raise BatchSourceError(
            f"{what}: FileConfig uri {config.uri!r} matches no {config.file_format} file; "
            "check the path (a file, a folder or a glob)"
        )
    tables = []
    for path in files:
        try:
            tables.append(_read_file(path, config.file_format))
        except (pa.ArrowInvalid, OSError) as exc:
            raise BatchSourceError(
                f"{what}: cannot read {path} as {config.file_format}: {exc}; fix the file or "
                "FileConfig(file_format=...)"
            ) from None
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    field = timestamp_field or config.timestamp_field
    if field is None:
        if start_ms is None and end_ms is None:
            return table
        raise BatchSourceError(
            f"{what}: FileConfig has no timestamp_field, so its rows cannot be filtered to the "
            "materialization range; pass FileConfig(timestamp_field=...), or read the source "
            "as source.unfiltered()"
        )
    return _filter(table, what, field, start_ms, end_ms)


def _run_custom(what: str, config: CustomBatchConfigSpec, start_ms: int | None, end_ms: int | None) -> Any:
    function = load_function(
        config.code,
        config.function_name,
        f"{what}: the batch config function",
        {"pa": pa, "FilterContext": FilterContext},
    )
    # data_delay (kept in the spec) tells a scheduler when a range is complete; it does not shift
    # the range the function is asked for.
    start, end = ms_to_datetime(start_ms), ms_to_datetime(end_ms)
    kwargs = {} if config.filter_parameter is None else {config.filter_parameter: FilterContext(start, end)}
    try:
        return function(**kwargs)
    except Exception as exc:
        raise BatchSourceError(f"{what}: the batch config function raised {type(exc).__name__}: {exc}") from exc


def read_custom_config(
    what: str, config: CustomBatchConfigSpec, start_ms: int | None, end_ms: int | None, timestamp_field: str | None
) -> pa.Table:
    """Rows a ``@pandas_batch_config`` / ``@pyarrow_batch_config`` function returns for the range.

    The function gets the range as its FilterContext; its rows are filtered again by
    ``timestamp_field`` when given, so a function that ignores the context still yields the range."""
    result = _run_custom(what, config, start_ms, end_ms)
    if config.kind == BatchConfigKind.PANDAS:
        if not isinstance(result, pd.DataFrame):
            raise BatchSourceError(
                f"{what}: a @pandas_batch_config function must return a pandas DataFrame, got {type(result).__name__}"
            )
        table = pa.Table.from_pandas(result, preserve_index=False)
    else:
        if not isinstance(result, pa.Table):
            raise BatchSourceError(
                f"{what}: a @pyarrow_batch_config function must return a pyarrow Table, got {type(result).__name__}"
            )
        table = result
    if timestamp_field is None or timestamp_field not in table.column_names:
        return table
    return _filter(table, what, timestamp_field, start_ms, end_ms)


def read_batch_source(
    source: BatchSourceSpec, start_ms: int | None, end_ms: int | None, timestamp_field: str | None = None
) -> pa.Table:
    """A batch source's rows in ``[start_ms, end_ms)`` (``None`` bounds: all of them)."""
    what = f"batch source {source.name!r}"
    if source.custom_config is not None:
        return read_custom_config(what, source.custom_config, start_ms, end_ms, timestamp_field)
    assert source.batch_config is not None  # one of the two is always set (compile)
    return read_file_config(what, source.batch_config, start_ms, end_ms)


def read_stream_history(source: StreamSourceSpec, start_ms: int | None, end_ms: int | None) -> pa.Table:
    """A stream source's ``batch_config`` files in the range, as the source's schema columns."""
    what = f"stream source {source.name!r} (batch_config)"
    if source.batch_config is None:
        raise BatchSourceError(f"{what}: the source has no batch_config; add batch_config=FileConfig(...)")
    stamp = source.batch_config.timestamp_field or source.kafka.timestamp_field
    table = read_file_config(what, source.batch_config, start_ms, end_ms, stamp)
    if stamp != source.kafka.timestamp_field:
        table = table.rename_columns([source.kafka.timestamp_field if c == stamp else c for c in table.column_names])
    return select_schema(what, table, source.schema)


def select_schema(what: str, table: pa.Table, schema: Sequence[FieldSpec]) -> pa.Table:
    """The schema's columns of ``table``, in schema order; a missing column names the fix."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise BatchSourceError(
            f"{what}: the files lack column {missing[0]!r} of the source's schema (they have "
            f"{', '.join(table.column_names)}); add it to the files or remove it from schema="
        )
    return table.select([f.name for f in schema])
