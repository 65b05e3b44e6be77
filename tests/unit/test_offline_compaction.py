"""Compaction of the offline store: planning (pure) and merging real Parquet files."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurebus.platform.offline.compaction import compact_source, compact_workspace, plan_merges
from featurebus.platform.offline.store import (
    PartFile,
    all_parts,
    list_parts,
    live_parts,
    max_offsets,
    open_store,
    source_dir,
    write_partition,
)
from featurebus.platform.training import training_sets as training
from featurebus.schemas.specs import FieldSpec, KafkaConfigSpec, StreamSourceSpec
from tests.support.specs import spending_workspace

SOURCE = StreamSourceSpec(
    "orders",
    (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
    KafkaConfigSpec(("orders.v1",), "ts"),
)


def _part(first: int, last: int, date: str = "2024-01-01", topic: str = "t", partition: int = 0) -> PartFile:
    return PartFile(
        Path(f"/x/date={date}/part-{topic}-{partition}-{first}-{last}.parquet"), date, topic, partition, first, last
    )


def test_live_parts_hide_files_inside_another_files_range() -> None:
    merged, a, b, c = _part(0, 9), _part(0, 4), _part(5, 9), _part(10, 12)
    other_date, other_partition = _part(3, 3, date="2024-01-02"), _part(2, 2, partition=1)
    live, superseded = live_parts([a, merged, b, c, other_date, other_partition])
    assert set(live) == {merged, c, other_date, other_partition}
    assert set(superseded) == {a, b}


def test_plan_merges_runs_of_consecutive_small_files_only() -> None:
    parts = [_part(0, 1), _part(2, 3), _part(4, 9), _part(10, 11), _part(12, 12), _part(13, 13, date="2024-01-02")]
    sizes = {p.path: 10 for p in parts} | {parts[2].path: 1_000}  # the third is big
    merges = plan_merges(parts, sizes, small_bytes=100, target_bytes=10_000)
    assert [(m.name, [p.first_offset for p in m.inputs]) for m in merges] == [
        ("part-t-0-0-3.parquet", [0, 2]),
        ("part-t-0-10-12.parquet", [10, 12]),
    ]


def test_plan_merges_cuts_runs_at_the_target_size_and_skips_lone_files() -> None:
    parts = [_part(i, i) for i in range(5)]
    merges = plan_merges(parts, {p.path: 40 for p in parts}, small_bytes=100, target_bytes=100)
    assert [[p.first_offset for p in m.inputs] for m in merges] == [[0, 1], [2, 3]]  # 4 alone: nothing to merge


@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 200), st.sampled_from(["d1", "d2"])), max_size=30),
    st.integers(50, 400),
)
def test_planned_merges_never_span_a_file_they_do_not_absorb(
    files: list[tuple[int, int, str]],
    target: int,
) -> None:
    parts, offset = [], 0
    for width, _, date in files:
        parts.append(_part(offset, offset + width - 1, date=date))
        offset += width
    sizes = {p.path: size for p, (_, size, _) in zip(parts, files, strict=True)}
    merges = plan_merges(parts, sizes, small_bytes=100, target_bytes=target)
    absorbed = [p for m in merges for p in m.inputs]
    assert len(absorbed) == len(set(absorbed))  # a file goes into one merge at most
    for merge in merges:
        assert len(merge.inputs) >= 2 and all(sizes[p.path] < 100 for p in merge.inputs)
        assert sum(sizes[p.path] for p in merge.inputs) <= max(target, max(sizes[p.path] for p in merge.inputs))
        first, last = merge.inputs[0].first_offset, max(p.last_offset for p in merge.inputs)
        inside = [p for p in parts if p.date == merge.inputs[0].date and first <= p.first_offset <= last]
        assert sorted(inside, key=lambda p: p.first_offset) == list(merge.inputs)
        # after the merge, the merged file hides exactly its inputs
        merged = _part(first, last, date=merge.inputs[0].date)
        _, superseded = live_parts([*parts, merged])
        assert set(superseded) == set(merge.inputs)


def _write_small_files(root: Path, flushes: int, per_flush: int = 3) -> int:
    open_store(root)
    offset = 0
    for _ in range(flushes):
        times = [f"2024-03-{10 + (offset + i) % 2:02d}T0{i % 10}:00:00Z" for i in range(per_flush)]
        frame = pd.DataFrame(
            {
                "user_id": [f"u{offset + i}" for i in range(per_flush)],
                "amount": [float(offset + i) for i in range(per_flush)],
                "ts": pd.to_datetime(times, utc=True).as_unit("ms"),
            }
        )
        write_partition(root, "ws", SOURCE, "orders.v1", 0, frame, list(range(offset, offset + per_flush)))
        offset += per_flush
    return offset


def _offsets(root: Path) -> list[int]:
    parts = list_parts(root, "ws", "orders")
    return sorted(o for p in parts for o in pq.read_table(p.path, columns=["_offset"]).column("_offset").to_pylist())


def test_compaction_merges_files_once_and_is_idempotent(tmp_path: Path) -> None:
    total = _write_small_files(tmp_path, flushes=20)
    before = len(all_parts(tmp_path, "ws", "orders"))
    offsets_before = max_offsets(tmp_path, "ws", "orders")
    result = compact_source(source_dir(tmp_path, "ws", "orders"), grace_s=0)
    assert result.merged_files == 2 and result.input_files == before  # one merged file per date
    assert result.deleted_files == before
    parts = all_parts(tmp_path, "ws", "orders")
    assert len(parts) == 2
    assert _offsets(tmp_path) == list(range(total))
    assert max_offsets(tmp_path, "ws", "orders") == offsets_before  # the materializer resumes where it was
    for part in parts:  # each merged file is in offset order, as readers assume
        column = pq.read_table(part.path, columns=["_offset"]).column("_offset").to_pylist()
        assert column == sorted(column)
    again = compact_source(source_dir(tmp_path, "ws", "orders"), grace_s=0)
    assert (again.merged_files, again.deleted_files) == (0, 0)


def test_inputs_stay_hidden_until_the_grace_period_ends(tmp_path: Path) -> None:
    total = _write_small_files(tmp_path, flushes=6)
    folder = source_dir(tmp_path, "ws", "orders")
    inputs = len(all_parts(tmp_path, "ws", "orders"))
    result = compact_source(folder, grace_s=3600)
    assert result.merged_files == 2 and result.deleted_files == 0
    assert len(all_parts(tmp_path, "ws", "orders")) == inputs + 2  # inputs still on disk for readers mid-read
    assert _offsets(tmp_path) == list(range(total))  # but hidden from new readers
    for part in all_parts(tmp_path, "ws", "orders"):
        os.utime(part.path, (0, 0))  # make the merged files old
    assert compact_source(folder, grace_s=3600).deleted_files == inputs


def test_a_stray_temporary_file_is_removed_and_invisible(tmp_path: Path) -> None:
    total = _write_small_files(tmp_path, flushes=4)
    stray = next(source_dir(tmp_path, "ws", "orders").glob("date=*")) / "part-orders.v1-0-0-99.parquet.compacting"
    stray.write_bytes(b"half a file")
    assert _offsets(tmp_path) == list(range(total))
    compact_source(source_dir(tmp_path, "ws", "orders"), grace_s=0)
    assert not stray.exists()
    assert _offsets(tmp_path) == list(range(total))


def test_cancel_between_merges(tmp_path: Path) -> None:
    total = _write_small_files(tmp_path, flushes=6)
    result = compact_workspace(tmp_path, "ws", grace_s=0, cancelled=lambda: True)
    assert result.cancelled and result.merged_files == 0
    assert _offsets(tmp_path) == list(range(total))


def test_progress_reaches_one(tmp_path: Path) -> None:
    _write_small_files(tmp_path, flushes=6)
    seen: list[float] = []
    compact_workspace(tmp_path, "ws", grace_s=0, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert compact_workspace(tmp_path, "missing").merged_files == 0


def test_a_training_read_racing_a_compaction_reads_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that deletes the files a training-set read has just listed (grace 0) makes
    that read fail on a missing file; the read is run again over the merged file and returns
    exactly what it returns with no compaction at all."""
    spec = spending_workspace(topic="orders.v1", name="ws")
    source = spec.stream_sources[0]
    open_store(tmp_path)
    users = [f"u{i % 3}" for i in range(60)]
    for flush in range(20):  # 20 small files, 3 events each, over one day
        rows = range(flush * 3, flush * 3 + 3)
        frame = pd.DataFrame(
            {
                "user_id": [users[i] for i in rows],
                "amount": [float(i) for i in rows],
                "ts": pd.to_datetime([1_710_000_000_000 + i * 60_000 for i in rows], unit="ms", utc=True),
            }
        )
        write_partition(tmp_path, "ws", source, "orders.v1", 0, frame, list(rows))
    spine = pd.DataFrame(
        {
            "user_id": ["u0", "u1", "u2"],
            "ts": pd.to_datetime([1_710_000_000_000 + 61 * 60_000] * 3, unit="ms", utc=True),
        }
    )
    expected = training.get_features_for_events(spec, "spending", spine, tmp_path)

    real_list_parts = training.list_parts
    raced: list[int] = []

    def list_then_compact(root: Path, workspace: str, name: str) -> list[PartFile]:
        listed = real_list_parts(root, workspace, name)
        if not raced:  # the first listing goes stale at once: its files are merged and deleted
            raced.append(compact_source(source_dir(root, workspace, name), grace_s=0).deleted_files)
        return listed

    monkeypatch.setattr(training, "list_parts", list_then_compact)
    result = training.get_features_for_events(spec, "spending", spine, tmp_path)
    assert raced and raced[0] == 20 and len(all_parts(tmp_path, "ws", "transactions")) == 1
    pd.testing.assert_frame_equal(result, expected)
