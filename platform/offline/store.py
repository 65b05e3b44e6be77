"""The offline store: source records as plain Parquet files, one folder per source and UTC date.

Layout (readable by pandas, polars and DuckDB without featurebus)::

    <root>/FORMAT                                   "1": the layout version, checked on open
    <root>/sources/<workspace>/<source>/date=YYYY-MM-DD/part-<topic>-<partition>-<first>-<last>.parquet

Columns are the source schema (timestamps as ``timestamp[ms, tz=UTC]``) plus ``_topic``,
``_partition`` and ``_offset``, so every row names the Kafka record it came from, and
``_timestamp`` (int64 ms, null in files written before it was kept), the record's Kafka
timestamp, which training sets need to apply the engine's arrival rule (``streams/arrival.py``). ``<first>`` and
``<last>`` are the smallest and largest offset in the file, which makes "how far has this partition
been written" a directory listing (``max_offsets``) instead of a scan.

Writes are atomic per Kafka partition flush. One flush usually yields one file, but records whose
event times fall on different dates go to different folders, and their offsets interleave; a crash
after only some of those files were renamed would leave a gap *below* the highest offset on disk,
and resuming after that offset would lose it forever. So a flush first writes every file as
``*.tmp``, then a small ``_pending-<topic>-<partition>.json`` manifest naming them, then renames;
``recover_partition`` rolls a found manifest forward (all its files are complete) and deletes stray
``*.tmp`` files (their flush never reached the manifest, so nothing of it is visible).
Compaction (``featurebus.platform.offline.compaction``) later merges a date folder's small files
of one partition into one whose offset range covers theirs; ``list_parts`` hides files covered by
another, so readers going through it never count a record twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurebus.platform.files.atomic import atomic_write, fsync_path
from featurebus.schemas.errors import DefinitionError, NotFoundError, StoreFormatError
from featurebus.schemas.specs import FieldSpec, StreamSourceSpec
from featurebus.schemas.time import from_epoch_ms
from featurebus.schemas.types import Array, Map, Struct, parse_dtype

__all__ = [
    "FORMAT_VERSION",
    "PartFile",
    "open_store",
    "arrow_type",
    "source_schema",
    "source_dir",
    "source_glob",
    "list_parts",
    "live_parts",
    "all_parts",
    "part_name",
    "max_offsets",
    "write_partition",
    "recover_partition",
]

FORMAT_VERSION = 1
_DAY_MS = 86_400_000
# Kafka topic names are [a-zA-Z0-9._-]: the three numbers are split off from the right.
_PART_NAME = re.compile(r"^part-(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}


@dataclass(frozen=True)
class PartFile:
    path: Path
    date: str  # YYYY-MM-DD, the UTC date of every event in the file
    topic: str
    partition: int
    first_offset: int
    last_offset: int


def open_store(root: Path, create: bool = True) -> Path:
    """Check (or with ``create``, initialise) the store at ``root``; returns ``root``."""
    marker = root / "FORMAT"
    if not marker.exists():
        if not create:
            raise NotFoundError(
                f"no offline store at {root} (no FORMAT file); run the offline materializer "
                "(`featurebus materialize`) for the workspace first"
            )
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, f"{FORMAT_VERSION}\n".encode())
        return root
    found = marker.read_text().strip()
    if found != str(FORMAT_VERSION):
        raise StoreFormatError(
            f"the offline store at {root} has format version {found!r}, this featurebus reads "
            f"{FORMAT_VERSION}: open it with the featurebus version that wrote it, or move the folder "
            "aside and re-run the offline materializer to rebuild it from the source topics"
        )
    return root


def arrow_type(dtype: str) -> pa.DataType:
    """The Parquet column type of a spec dtype (``array``, ``map`` and ``struct`` nest)."""
    if dtype in _SCALARS:
        return _SCALARS[dtype]
    try:
        parsed = parse_dtype(dtype)
    except ValueError:
        raise DefinitionError(f"the offline store cannot hold columns of type {dtype!r}") from None
    if isinstance(parsed, Array):
        return pa.list_(arrow_type(parsed.element_type.name))
    if isinstance(parsed, Map):
        return pa.map_(arrow_type(parsed.key_type.name), arrow_type(parsed.value_type.name))
    if isinstance(parsed, Struct):
        return pa.struct([pa.field(f.name, arrow_type(f.dtype.name)) for f in parsed.fields])
    raise DefinitionError(f"the offline store cannot hold columns of type {dtype!r}")


def source_schema(fields: Sequence[FieldSpec]) -> pa.Schema:
    """The schema of every part file of a source with these fields."""
    return pa.schema(
        [pa.field(f.name, arrow_type(f.dtype)) for f in fields]
        + [
            pa.field("_topic", pa.string()),
            pa.field("_partition", pa.int32()),
            pa.field("_offset", pa.int64()),
            pa.field("_timestamp", pa.int64()),
        ]
    )


def source_dir(root: Path, workspace: str, source: str) -> Path:
    return root / "sources" / workspace / source


def source_glob(root: Path, workspace: str, source: str) -> str:
    """A glob of every part file of a source, e.g. for ``duckdb.read_parquet`` or ``pl.scan_parquet``."""
    return str(source_dir(root, workspace, source) / "date=*" / "part-*.parquet")


def list_parts(root: Path, workspace: str, source: str) -> list[PartFile]:
    """The source's part files readers use: every record exactly once, also mid-compaction."""
    return live_parts(all_parts(root, workspace, source))[0]


def live_parts(parts: Sequence[PartFile]) -> tuple[list[PartFile], list[PartFile]]:
    """``(live, superseded)``: a file whose offset range lies within another file's of the same
    date, topic and partition is superseded, its records are in the other one.

    Flushes write disjoint offset ranges, so only compaction nests them: it renames the merged
    file into place (one atomic step) before it deletes the inputs, and this rule hides the inputs
    from that step on. A reader therefore sees either the inputs or the merged file, never both,
    whenever a compaction is interrupted (see ``featurebus.platform.offline.compaction``).
    """
    live: list[PartFile] = []
    superseded: list[PartFile] = []
    ordered = sorted(parts, key=lambda p: (p.date, p.topic, p.partition, p.first_offset, -p.last_offset))
    cover: PartFile | None = None
    for part in ordered:
        same_group = cover is not None and (cover.date, cover.topic, cover.partition) == (
            part.date,
            part.topic,
            part.partition,
        )
        if cover is not None and same_group and part.last_offset <= cover.last_offset:
            superseded.append(part)
            continue
        live.append(part)
        cover = part
    return live, superseded


def all_parts(root: Path, workspace: str, source: str) -> list[PartFile]:
    """Every part file on disk, superseded ones included (compaction cleans those up)."""
    parts = []
    for path in source_dir(root, workspace, source).glob("date=*/part-*.parquet"):
        match = _PART_NAME.match(path.name)
        if match is None:
            continue  # not ours (someone dropped a file here); readers of the glob will see it though
        parts.append(
            PartFile(
                path,
                path.parent.name[len("date=") :],
                match["topic"],
                int(match["partition"]),
                int(match["first"]),
                int(match["last"]),
            )
        )
    return sorted(parts, key=lambda p: (p.date, p.topic, p.partition, p.first_offset))


def part_name(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    return f"part-{topic}-{partition}-{first_offset}-{last_offset}.parquet"


def max_offsets(root: Path, workspace: str, source: str) -> dict[tuple[str, int], int]:
    """The highest offset on disk per ``(topic, partition)``, from file names only."""
    result: dict[tuple[str, int], int] = {}
    for part in list_parts(root, workspace, source):
        key = (part.topic, part.partition)
        result[key] = max(result.get(key, -1), part.last_offset)
    return result


def write_partition(
    root: Path,
    workspace: str,
    source: StreamSourceSpec,
    topic: str,
    partition: int,
    frame: pd.DataFrame,
    offsets: np.ndarray | Sequence[int],
    record_times_ms: np.ndarray | Sequence[int | None] | None = None,
) -> list[Path]:
    """Write one flush of one Kafka partition: decoded rows ``frame``, their record offsets and
    Kafka timestamps (None: unknown).

    One file per UTC date of the source's timestamp field, all visible or none (see module doc).
    The names depend only on the offsets, so writing the same records again replaces the files.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if len(frame) != len(offsets):
        raise ValueError(f"{len(frame)} rows but {len(offsets)} offsets")
    if len(frame) == 0:
        return []
    schema = source_schema(source.schema)
    table = pa.Table.from_pandas(
        frame.loc[:, [f.name for f in source.schema]].assign(
            _topic=topic,
            _partition=np.int32(partition),
            _offset=offsets,
            _timestamp=pd.array(
                [None] * len(offsets) if record_times_ms is None else list(record_times_ms), dtype="Int64"
            ),
        ),
        schema=schema,
        preserve_index=False,
    )
    ts_field = source.kafka.timestamp_field
    ts_ms = table.column(ts_field).cast(pa.int64()).to_numpy(zero_copy_only=False)
    days = np.floor_divide(ts_ms, _DAY_MS)
    directory = source_dir(root, workspace, source.name)
    moves: list[tuple[Path, Path]] = []
    for day in np.unique(days):
        chunk = table.filter(pa.array(days == day))
        chunk_offsets = offsets[days == day]
        date = from_epoch_ms(int(day) * _DAY_MS).strftime("%Y-%m-%d")
        final = (
            directory / f"date={date}" / part_name(topic, partition, int(chunk_offsets.min()), int(chunk_offsets.max()))
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(chunk, tmp, compression="zstd")
        fsync_path(tmp)
        moves.append((tmp, final))
    manifest = _manifest_path(directory, topic, partition)
    # Paths relative to the source folder, so a store copied elsewhere still recovers.
    relative = [[str(t.relative_to(directory)), str(f.relative_to(directory))] for t, f in moves]
    atomic_write(manifest, orjson.dumps(relative))
    _roll_forward(manifest)
    return [final for _, final in moves]


def recover_partition(root: Path, workspace: str, source: str, topic: str, partition: int) -> None:
    """Finish or undo a flush of ``(topic, partition)`` that a crash interrupted.

    Call it before ``max_offsets`` when taking over a partition; only the partition's owner may.
    """
    directory = source_dir(root, workspace, source)
    manifest = _manifest_path(directory, topic, partition)
    if manifest.exists():
        _roll_forward(manifest)
    for stray in directory.glob(f"date=*/part-{topic}-{partition}-*.parquet.tmp"):
        match = _PART_NAME.match(stray.name[: -len(".tmp")])
        if match is not None and match["topic"] == topic and int(match["partition"]) == partition:
            stray.unlink()


def _manifest_path(directory: Path, topic: str, partition: int) -> Path:
    # Leading "_": pyarrow and DuckDB dataset readers skip it, and it is outside the part glob.
    return directory / f"_pending-{topic}-{partition}.json"


def _roll_forward(manifest: Path) -> None:
    for tmp_name, final_name in orjson.loads(manifest.read_bytes()):
        tmp = manifest.parent / tmp_name
        if tmp.exists():  # already renamed before a crash otherwise
            os.replace(tmp, manifest.parent / final_name)
    manifest.unlink()
