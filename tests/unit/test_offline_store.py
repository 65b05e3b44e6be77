"""The offline store's on-disk layout: plain Parquet anyone can read, atomic and idempotent writes."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from featurebus.exceptions import StoreFormatError
from featurebus.platform.offline import store
from featurebus.platform.offline.store import (
    list_parts,
    max_offsets,
    open_store,
    recover_partition,
    source_glob,
    write_partition,
)
from featurebus.schemas.specs import FieldSpec, KafkaConfigSpec, StreamSourceSpec

SOURCE = StreamSourceSpec(
    "orders",
    (
        FieldSpec("user_id", "string"),
        FieldSpec("amount", "float64"),
        FieldSpec("tags", "array<string>"),
        FieldSpec("ts", "timestamp"),
    ),
    KafkaConfigSpec(("orders.v1",), "ts"),
)


def _frame(times: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(times))],
            "amount": [float(i) for i in range(len(times))],
            "tags": [["x"] for _ in times],
            "ts": pd.to_datetime(times, utc=True, format="ISO8601").as_unit("ms"),
        }
    )


def test_layout_is_plain_parquet_split_by_date(tmp_path: Path) -> None:
    open_store(tmp_path)
    # Offsets interleave across the two dates, as late events do.
    frame = _frame(["2024-03-10T23:59:59.999Z", "2024-03-11T00:00:00Z", "2024-03-10T12:00:00Z"])
    write_partition(tmp_path, "ws", SOURCE, "orders.v1", 3, frame, [7, 8, 9])
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert names == [
        "sources/ws/orders/date=2024-03-10/part-orders.v1-3-7-9.parquet",
        "sources/ws/orders/date=2024-03-11/part-orders.v1-3-8-8.parquet",
    ]
    assert (tmp_path / "FORMAT").read_text().strip() == "1"
    # DuckDB and pyarrow need nothing from featurebus to read it.
    with duckdb.connect() as con:
        rows = con.sql(
            f"SELECT user_id, _topic, _partition, _offset, date FROM read_parquet('{source_glob(tmp_path, 'ws', 'orders')}', "
            "hive_partitioning = true) ORDER BY _offset"
        ).fetchall()
    assert [r[3] for r in rows] == [7, 8, 9]
    assert rows[0][:3] == ("u0", "orders.v1", 3)
    table = ds.dataset(tmp_path / "sources/ws/orders", format="parquet", partitioning="hive").to_table()
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("_partition").type == pa.int32()
    assert table.schema.field("_offset").type == pa.int64()
    assert table.schema.field("tags").type == pa.list_(pa.string())


def test_max_offsets_from_names_and_idempotent_rewrites(tmp_path: Path) -> None:
    open_store(tmp_path)
    write_partition(tmp_path, "ws", SOURCE, "orders.v1", 0, _frame(["2024-03-10T01:00:00Z"] * 2), [0, 1])
    write_partition(tmp_path, "ws", SOURCE, "orders.v1", 0, _frame(["2024-03-10T02:00:00Z"] * 2), [2, 5])
    write_partition(tmp_path, "ws", SOURCE, "orders.v1", 1, _frame(["2024-03-10T02:00:00Z"]), [4])
    # The same records again: the same names, replaced, no duplicates.
    write_partition(tmp_path, "ws", SOURCE, "orders.v1", 0, _frame(["2024-03-10T02:00:00Z"] * 2), [2, 5])
    assert len(list_parts(tmp_path, "ws", "orders")) == 3
    assert max_offsets(tmp_path, "ws", "orders") == {("orders.v1", 0): 5, ("orders.v1", 1): 4}
    assert max_offsets(tmp_path, "ws", "other") == {}


def test_format_marker_is_checked(tmp_path: Path) -> None:
    open_store(tmp_path)
    open_store(tmp_path)  # reopening a current store is fine
    (tmp_path / "FORMAT").write_text("2\n")
    with pytest.raises(StoreFormatError, match="move the folder aside and re-run the offline materializer"):
        open_store(tmp_path)


def test_a_flush_interrupted_after_the_manifest_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(tmp_path)
    frame = _frame(["2024-03-10T23:00:00Z", "2024-03-11T01:00:00Z", "2024-03-10T23:30:00Z"])
    real_replace = os.replace
    renamed_parts: list[str] = []

    def crash_after_first_part(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith(".parquet"):
            if renamed_parts:
                raise KeyboardInterrupt("simulated crash")
            renamed_parts.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_first_part)
    with pytest.raises(KeyboardInterrupt):
        write_partition(tmp_path, "ws", SOURCE, "orders.v1", 0, frame, [10, 11, 12])
    monkeypatch.setattr(os, "replace", real_replace)
    # Half visible: resuming after offset 12 now would lose offset 11 for good.
    assert max_offsets(tmp_path, "ws", "orders") == {("orders.v1", 0): 12}
    recover_partition(tmp_path, "ws", "orders", "orders.v1", 0)
    assert sorted(p.last_offset for p in list_parts(tmp_path, "ws", "orders")) == [11, 12]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("_pending-*"))


def test_a_flush_interrupted_before_the_manifest_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(tmp_path)

    def crash(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(store, "atomic_write", crash)
    with pytest.raises(KeyboardInterrupt):
        write_partition(tmp_path, "ws", SOURCE, "orders.v1", 0, _frame(["2024-03-10T23:00:00Z"]), [3])
    monkeypatch.undo()
    # Another partition's temporary file is not this partition's to delete.
    other = tmp_path / "sources/ws/orders/date=2024-03-10/part-orders.v1-1-0-0.parquet.tmp"
    other.write_bytes(b"")
    recover_partition(tmp_path, "ws", "orders", "orders.v1", 0)
    assert [p.name for p in tmp_path.rglob("*.tmp")] == [other.name]
    assert max_offsets(tmp_path, "ws", "orders") == {}
