"""Replaying the stream engine's arrival rule (``streams/arrival.py``) over an offline-store scan.

A training set must leave out exactly the events the engine did not count: those ahead of their
record's Kafka timestamp, and those behind their partition's watermark by more than the delay.
The verdict on a record depends on the records before it in its partition (offset order), and
``events.read_events`` scans the records of ``[lo, hi)`` in that order, chunk by chunk; so the
replay carries each partition's watermark from chunk to chunk. Records outside the range matter
only if they arrived earlier with a time at or after ``hi`` (they raise the watermark); records
before ``lo`` cannot make a record of the range late (that needs a time more than the delay
after it), so they are never read. The few records at or after ``hi`` come from one light query
of four columns (``later_records``) and are merged in by offset.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featurebus.platform.offline.duckdb_session import connect
from featurebus.platform.offline.store import PartFile
from featurebus.streams.arrival import NO_WATERMARK, judge_partition

__all__ = ["ARRIVAL_COLUMNS", "ArrivalReplay", "later_records", "stamp_select"]

# Columns the scan adds for the replay: the record's address, event time (ms) and Kafka time.
ARRIVAL_COLUMNS = ("_topic", "_partition", "_offset", "__event_ms", "__stamp_ms")
NEVER_AHEAD = 2**62  # the reference time of records stored without a Kafka timestamp
_Key = tuple[str, int]


def stamp_select(has_stamps: bool) -> str:
    return "_timestamp" if has_stamps else "CAST(NULL AS BIGINT)"


def later_records(parts: list[PartFile], ts_sql: str, hi_ms: int) -> dict[_Key, tuple[np.ndarray, ...]]:
    """``(offsets, event times, Kafka times)`` per partition of the records with time >= ``hi_ms``."""
    if not parts:
        return {}
    file_list = ", ".join("'" + str(p.path).replace("'", "''") + "'" for p in parts)

    def query(stamps: bool) -> str:
        return (
            f"SELECT _topic, _partition, _offset, {ts_sql} AS t, {stamp_select(stamps)} AS stamp "
            f"FROM read_parquet([{file_list}], union_by_name = true) WHERE {ts_sql} >= {hi_ms} "
            "ORDER BY _topic, _partition, _offset"
        )

    with connect() as con:
        try:
            table = con.sql(query(True)).to_arrow_table()
        except duckdb.BinderException:  # no file keeps Kafka timestamps yet
            table = con.sql(query(False)).to_arrow_table()
    if not table.num_rows:
        return {}
    frame = pd.DataFrame(
        {
            "topic": table.column("_topic").to_pylist(),
            "partition": table.column("_partition").to_numpy(),
            "offset": table.column("_offset").to_numpy(),
            "t": table.column("t").to_numpy(),
            "stamp": pc.fill_null(table.column("stamp"), NEVER_AHEAD).to_numpy(),
        }
    )
    result: dict[_Key, tuple[np.ndarray, ...]] = {}
    for (topic, partition), group in frame.groupby(["topic", "partition"], sort=False):
        result[(str(topic), int(str(partition)))] = (
            group["offset"].to_numpy(),
            group["t"].to_numpy(),
            group["stamp"].to_numpy(),
        )
    return result


class ArrivalReplay:
    """Which rows of each scanned chunk the engine counted, chunk after chunk in scan order."""

    def __init__(self, delay_ms: int, later: dict[_Key, tuple[np.ndarray, ...]]) -> None:
        self._delay_ms = delay_ms
        self._later = later
        self._taken: dict[_Key, int] = {}  # how many of a partition's later records are merged in
        self._watermarks: dict[_Key, int] = {}

    def counted_batches(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The scanned batches (holding ``ARRIVAL_COLUMNS``) with only the rows that count, and
        without those columns: filtered in Arrow, before any row becomes a Python object."""
        for batch in batches:
            counted = self.counted(batch)
            kept = batch.select([name for name in batch.schema.names if name not in ARRIVAL_COLUMNS])
            yield kept if counted.all() else kept.filter(pa.array(counted))

    def counted(self, batch: pa.RecordBatch) -> np.ndarray:
        """A mask of the batch's rows that count."""
        encoded = pc.dictionary_encode(batch.column("_topic"))
        topics = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = encoded.dictionary.to_pylist()
        partitions = batch.column("_partition").to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = batch.column("_offset").to_numpy(zero_copy_only=False)
        times = batch.column("__event_ms").to_numpy(zero_copy_only=False).astype(np.int64)
        stamps = pc.fill_null(batch.column("__stamp_ms"), NEVER_AHEAD).to_numpy(zero_copy_only=False).astype(np.int64)
        keep = np.ones(batch.num_rows, dtype=bool)
        # The scan is in (topic, partition, offset) order: a partition is one run of rows.
        changes = np.flatnonzero((partitions[1:] != partitions[:-1]) | (topics[1:] != topics[:-1])) + 1
        bounds = [0, *changes.tolist(), batch.num_rows]
        for start, stop in itertools.pairwise(bounds):
            if start == stop:
                continue
            key = (str(names[int(topics[start])]), int(partitions[start]))
            keep[start:stop] = self._judge(key, offsets[start:stop], times[start:stop], stamps[start:stop])
        return keep

    def _judge(self, key: _Key, offsets: np.ndarray, times: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        watermark = self._watermarks.get(key, NO_WATERMARK)
        later = self._later.get(key)
        taken = self._taken.get(key, 0)
        if later is not None:
            upto = int(np.searchsorted(later[0], offsets[-1], side="right"))
            if upto > taken:  # later records that arrived among these: merge them in by offset
                merged_offsets = np.concatenate([offsets, later[0][taken:upto]])
                order = np.argsort(merged_offsets, kind="stable")
                verdict = judge_partition(
                    np.concatenate([times, later[1][taken:upto]])[order],
                    np.concatenate([stamps, later[2][taken:upto]])[order],
                    watermark,
                    self._delay_ms,
                )
                self._taken[key], self._watermarks[key] = upto, verdict.watermark
                dropped = np.empty(len(order), dtype=bool)
                dropped[order] = verdict.ahead | verdict.late
                return ~dropped[: len(offsets)]
        verdict = judge_partition(times, stamps, watermark, self._delay_ms)
        self._watermarks[key] = verdict.watermark
        counted: np.ndarray = ~(verdict.ahead | verdict.late)
        return counted
