"""Reading batch sources (platform/batch/sources.py): FileConfig over Parquet, CSV and JSON files,
folders, globs and file:// URIs; Python batch configs with a FilterContext; errors that name
the source, the column and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from featurebus import FilterContext, pandas_batch_config, pyarrow_batch_config
from featurebus.exceptions import DefinitionError
from featurebus.platform.batch.sources import (
    BatchSourceError,
    declared_fields,
    read_batch_source,
    read_file_config,
    read_stream_history,
    resolve_files,
)
from featurebus.schemas.specs import (
    BatchSourceSpec,
    CustomBatchConfigSpec,
    FieldSpec,
    FileConfigSpec,
    KafkaConfigSpec,
    StreamSourceSpec,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
T0_MS = 1714521600000
HOUR_MS = 3_600_000


def _frame(hours: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{h % 3}" for h in hours],
            "amount": [float(h) for h in hours],
            "ts": [T0 + timedelta(hours=h) for h in hours],
        }
    )


def _ms(table: pa.Table, column: str = "ts") -> list[int]:
    return sorted(table.column(column).cast(pa.int64()).to_pylist())


@pytest.mark.parametrize("file_format", ["parquet", "csv", "json"])
def test_each_format_is_read_and_filtered_to_the_half_open_range(tmp_path: Path, file_format: str) -> None:
    frame = _frame(list(range(10)))
    path = tmp_path / f"data.{file_format}"
    if file_format == "parquet":
        frame.to_parquet(path)
    elif file_format == "csv":
        frame.assign(ts=frame.ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(path, index=False)
    else:
        frame.assign(ts=frame.ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_json(path, orient="records", lines=True)
    config = FileConfigSpec(str(path), file_format, "ts")
    table = read_file_config("s", config, T0_MS + 2 * HOUR_MS, T0_MS + 5 * HOUR_MS)
    assert _ms(table) == [T0_MS + h * HOUR_MS for h in (2, 3, 4)]
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")


def test_folders_globs_and_file_uris_name_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    _frame([1, 2]).to_parquet(tmp_path / "a" / "one.parquet")
    _frame([3]).to_parquet(tmp_path / "two.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "_SUCCESS").write_text("")
    folder = resolve_files(FileConfigSpec(str(tmp_path), "parquet", "ts"))
    assert [p.name for p in folder] == ["one.parquet", "two.parquet"]
    assert resolve_files(FileConfigSpec(f"file://{tmp_path}", "parquet", "ts")) == folder
    assert [p.name for p in resolve_files(FileConfigSpec(str(tmp_path / "**" / "*.parquet"), "parquet", "ts"))] == [
        "one.parquet",
        "two.parquet",
    ]
    table = read_file_config("s", FileConfigSpec(str(tmp_path), "parquet", "ts"), None, None)
    assert table.num_rows == 3


def test_epoch_millisecond_and_naive_timestamps_are_utc(tmp_path: Path) -> None:
    pd.DataFrame({"ts": [T0_MS, T0_MS + 1]}).to_parquet(tmp_path / "ms.parquet")
    assert _ms(
        read_file_config("s", FileConfigSpec(str(tmp_path / "ms.parquet"), "parquet", "ts"), T0_MS + 1, None)
    ) == [T0_MS + 1]
    pd.DataFrame({"ts": [datetime(2024, 5, 1)]}).to_parquet(tmp_path / "naive.parquet")
    assert _ms(read_file_config("s", FileConfigSpec(str(tmp_path / "naive.parquet"), "parquet", "ts"), None, None)) == [
        T0_MS
    ]


def test_errors_name_the_source_the_column_and_the_fix(tmp_path: Path) -> None:
    _frame([1]).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(BatchSourceError, match=r"batch source 'tx'.*'when' is not a column.*set timestamp_field="):
        read_batch_source(BatchSourceSpec("tx", FileConfigSpec(str(tmp_path), "parquet", "when")), 0, 1)
    with pytest.raises(BatchSourceError, match=r"matches no parquet file; check the path"):
        read_batch_source(BatchSourceSpec("tx", FileConfigSpec(str(tmp_path / "missing"), "parquet", "ts")), 0, 1)
    with pytest.raises(BatchSourceError, match=r"no timestamp_field.*source.unfiltered\(\)"):
        read_batch_source(BatchSourceSpec("tx", FileConfigSpec(str(tmp_path), "parquet", None)), 0, 1)
    with pytest.raises(BatchSourceError, match=r"only local paths"):
        resolve_files(FileConfigSpec("s3://bucket/x", "parquet", "ts"))
    pd.DataFrame({"ts": ["yesterday"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BatchSourceError, match=r"'ts' holds text that is not an ISO-8601 time"):
        read_file_config("s", FileConfigSpec(str(tmp_path / "bad.csv"), "csv", "ts"), 0, 1)


def test_stream_history_keeps_the_schema_columns_and_names_a_missing_one(tmp_path: Path) -> None:
    _frame([1, 2]).assign(extra=1).to_parquet(tmp_path / "h.parquet")
    schema = (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp"))
    source = StreamSourceSpec(
        "tx", schema, KafkaConfigSpec(("tx",), "ts"), batch_config=FileConfigSpec(str(tmp_path), "parquet", None)
    )
    assert read_stream_history(source, None, None).column_names == ["user_id", "amount", "ts"]
    wider = StreamSourceSpec(
        "tx",
        (*schema, FieldSpec("city", "string")),
        KafkaConfigSpec(("tx",), "ts"),
        batch_config=FileConfigSpec(str(tmp_path), "parquet", None),
    )
    with pytest.raises(BatchSourceError, match=r"stream source 'tx'.*lack column 'city'.*remove it from schema="):
        read_stream_history(wider, None, None)


def test_declared_fields_come_from_the_first_parquet_file(tmp_path: Path) -> None:
    assert declared_fields(FileConfigSpec(str(tmp_path), "parquet", "ts")) is None
    _frame([1]).to_parquet(tmp_path / "d.parquet")
    assert declared_fields(FileConfigSpec(str(tmp_path), "parquet", "ts")) == [
        FieldSpec("user_id", "string"),
        FieldSpec("amount", "float64"),
        FieldSpec("ts", "timestamp"),
    ]


PANDAS_CODE = """def events(filter_context):
    hours = range(10)
    frame = pd.DataFrame({"ts": [pd.Timestamp("2024-05-01", tz="UTC") + pd.Timedelta(hours=h) for h in hours]})
    if filter_context.start_time is not None:
        frame = frame[frame.ts >= filter_context.start_time]
    return frame
"""

ARROW_CODE = """def events():
    return pa.table({"ts": pa.array([1714521600000 + h * 3600000 for h in range(10)], type=pa.int64())})
"""


def test_python_batch_configs_get_the_range_and_are_filtered_again() -> None:
    pandas_source = BatchSourceSpec(
        "p", None, custom_config=CustomBatchConfigSpec("pandas", "events", PANDAS_CODE, "filter_context", True)
    )
    table = read_batch_source(pandas_source, T0_MS + 8 * HOUR_MS, T0_MS + 9 * HOUR_MS, "ts")
    assert _ms(table) == [T0_MS + 8 * HOUR_MS]
    # A function ignoring the range (no filter_context) is filtered by the view's timestamp field.
    arrow_source = BatchSourceSpec("a", None, custom_config=CustomBatchConfigSpec("pyarrow", "events", ARROW_CODE))
    assert _ms(read_batch_source(arrow_source, T0_MS, T0_MS + 2 * HOUR_MS, "ts")) == [T0_MS, T0_MS + HOUR_MS]
    wrong = BatchSourceSpec("w", None, custom_config=CustomBatchConfigSpec("pandas", "events", ARROW_CODE))
    with pytest.raises(
        BatchSourceError, match=r"batch source 'w': a @pandas_batch_config function must return a pandas"
    ):
        read_batch_source(wrong, None, None, "ts")


def test_batch_config_decorators_check_their_function() -> None:
    @pandas_batch_config(supports_time_filtering=True)
    def ranged(filter_context: FilterContext) -> pd.DataFrame:
        return pd.DataFrame()

    assert ranged.filter_parameter == "filter_context" and ranged.kind == "pandas"

    def no_context() -> pa.Table:
        return pa.table({})

    with pytest.raises(DefinitionError, match=r"supports_time_filtering=True but the function takes no filter_context"):
        pyarrow_batch_config(supports_time_filtering=True)(no_context)
    with pytest.raises(DefinitionError, match=r"secrets= is not supported.*os.environ"):
        pandas_batch_config(secrets={"token": "x"})
    with pytest.raises(DefinitionError, match=r"does not support spark_config="):
        pandas_batch_config(spark_config={"a": 1})
