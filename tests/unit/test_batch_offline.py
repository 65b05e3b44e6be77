"""The batch views' offline files (platform/batch/offline.py): the manifest is what readers
trust, files written before it existed are adopted, leftovers of a killed writer are invisible
and removed by the next write, and a reader racing a writer reads one manifest's rows."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurebus.exceptions import FeaturebusError
from featurebus.platform.batch import offline
from featurebus.platform.batch.offline import MANIFEST, list_view_parts, read_rows, replace_range, view_dir

DAY = 86_400_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z


def _rows(stamps: list[int], amount: float) -> pa.Table:
    return pa.table(
        {
            "user_id": ["a"] * len(stamps),
            "amount": [amount] * len(stamps),
            "ts": pa.array(stamps, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )


def _read(root: Path, lo: int = T0, hi: int = T0 + 10 * DAY) -> list[tuple[int, float]]:
    table = read_rows(root, "w", "v", "ts", lo, hi)
    assert table is not None
    return sorted(zip(table.column("ts").cast(pa.int64()).to_pylist(), table.column("amount").to_pylist(), strict=True))


def test_a_replacement_is_listed_in_the_manifest_and_leaves_no_other_file(tmp_path: Path) -> None:
    replace_range(tmp_path, "w", "v", "ts", T0, T0 + 3 * DAY, _rows([T0 + 1, T0 + DAY + 5, T0 + 2 * DAY + 9], 1.0))
    replace_range(tmp_path, "w", "v", "ts", T0 + DAY, T0 + DAY + 10, _rows([T0 + DAY + 5], 2.0))
    assert _read(tmp_path) == [(T0 + 1, 1.0), (T0 + DAY + 5, 2.0), (T0 + 2 * DAY + 9, 1.0)]
    directory = view_dir(tmp_path, "w", "v")
    listed = {p.path for p in list_view_parts(tmp_path, "w", "v")}
    assert set(directory.glob("date=*/*.parquet")) == listed
    assert orjson.loads((directory / MANIFEST).read_bytes())["version"] == 2


def test_files_a_killed_writer_left_are_invisible_and_removed_by_the_next_write(tmp_path: Path) -> None:
    replace_range(tmp_path, "w", "v", "ts", T0, T0 + DAY, _rows([T0 + 1], 1.0))
    directory = view_dir(tmp_path, "w", "v")
    folder = next(directory.glob("date=*"))
    pq.write_table(_rows([T0 + 1], 9.0), folder / f"part-{T0}-{T0 + DAY}-00ff00ff00ff00ff.parquet")  # renamed, unlisted
    (folder / "_part-1-2-99.tmp").write_bytes(b"half a file")
    (directory / "_manifest-99.tmp").write_bytes(b"{")
    (directory / "_writing").touch()  # a killed writer leaves its marker: the next write scans every folder
    assert _read(tmp_path) == [(T0 + 1, 1.0)]
    replace_range(tmp_path, "w", "v", "ts", T0 + 2 * DAY, T0 + 3 * DAY, _rows([], 0.0))
    assert _read(tmp_path) == [(T0 + 1, 1.0)]
    assert not list(directory.rglob("*.tmp")) and not (directory / "_writing").exists()
    assert set(directory.glob("date=*/*.parquet")) == {p.path for p in list_view_parts(tmp_path, "w", "v")}


def test_files_written_before_manifests_are_adopted(tmp_path: Path) -> None:
    folder = view_dir(tmp_path, "w", "v") / "date=2024-05-01"
    folder.mkdir(parents=True)
    pq.write_table(_rows([T0 + 1, T0 + 7], 1.0), folder / f"part-{T0}-{T0 + DAY}.parquet")
    assert _read(tmp_path) == [(T0 + 1, 1.0), (T0 + 7, 1.0)]
    replace_range(tmp_path, "w", "v", "ts", T0 + 5, T0 + 10, _rows([T0 + 7], 3.0))
    assert _read(tmp_path) == [(T0 + 1, 1.0), (T0 + 7, 3.0)]
    assert not (folder / f"part-{T0}-{T0 + DAY}.parquet").exists()


def test_a_reader_racing_a_writer_reads_the_newer_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replace_range(tmp_path, "w", "v", "ts", T0, T0 + DAY, _rows([T0 + 1], 1.0))
    real = offline._read_once
    calls: list[int] = []

    def racing(*args: object) -> pa.Table:
        if not calls:  # the writer replaces the range between the reader's listing and its reads
            calls.append(1)
            replace_range(tmp_path, "w", "v", "ts", T0, T0 + DAY, _rows([T0 + 1], 2.0))
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(offline, "_read_once", racing)
    assert _read(tmp_path) == [(T0 + 1, 2.0)]


def test_a_missing_live_file_is_an_error_not_an_empty_read(tmp_path: Path) -> None:
    replace_range(tmp_path, "w", "v", "ts", T0, T0 + DAY, _rows([T0 + 1], 1.0))
    list_view_parts(tmp_path, "w", "v")[0].path.unlink()
    with pytest.raises(FileNotFoundError):
        _read(tmp_path)


def test_a_manifest_of_another_format_names_the_fix(tmp_path: Path) -> None:
    replace_range(tmp_path, "w", "v", "ts", T0, T0 + DAY, _rows([T0 + 1], 1.0))
    (view_dir(tmp_path, "w", "v") / MANIFEST).write_bytes(orjson.dumps({"format": 99, "version": 1, "parts": []}))
    with pytest.raises(FeaturebusError, match="upgrade featurebus, or delete"):
        list_view_parts(tmp_path, "w", "v")


def test_never_materialized_reads_none(tmp_path: Path) -> None:
    assert read_rows(tmp_path, "w", "v", "ts", T0, T0 + DAY) is None


def test_a_first_write_killed_before_its_manifest_leaves_nothing_visible(tmp_path: Path) -> None:
    folder = view_dir(tmp_path, "w", "v") / "date=2024-05-01"
    folder.mkdir(parents=True)
    pq.write_table(_rows([T0 + 1], 1.0), folder / f"part-{T0}-{T0 + DAY}-0123456789abcdef.parquet")
    (folder.parent / "_writing").touch()
    assert read_rows(tmp_path, "w", "v", "ts", T0, T0 + DAY) is None  # never materialized, as far as readers know
    replace_range(tmp_path, "w", "v", "ts", T0 + 2 * DAY, T0 + 3 * DAY, _rows([T0 + 2 * DAY], 2.0))
    assert _read(tmp_path) == [(T0 + 2 * DAY, 2.0)]
    assert not folder.exists()  # the orphan and its folder are gone
