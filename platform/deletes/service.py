"""``delete_keys``: remove entities' values online, offline and (if asked) from source topics.

1. online: a tombstone on the view's feature topic for every record (tile, lifetime prefix) of
   those entities, in the record's own partition: each serving replica's online materializer
   deletes the key from its RocksDB when it reads the tombstone, and compaction later drops the
   records from the topic itself. Then a delete request on ``deletes_topic`` (stream views), so
   every stream worker drops its cached tiles of those entities (``platform.deletes.requests``);
2. offline: the Parquet files holding their rows are rewritten without them (``offline.py``),
   after waiting briefly for the offline materializer to reach the source topics' ends (records
   it writes later could hold deleted rows: the receipt lists any partition still behind);
3. with ``include_sources``: tombstones on compacted source topics (``sources.py``).
Each step is idempotent: a delete that failed or was killed midway is completed by running it
again. The receipt lists what each step changed and what it could not change.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurebus.platform.deletes.bus import live_records, write_tombstones
from featurebus.platform.deletes.keys import DeleteTarget, delete_target, entity_keys
from featurebus.platform.deletes.offline import delete_batch_view_rows, delete_source_rows
from featurebus.platform.deletes.receipt import DeleteReceipt, FileRewrite, NotDeleted, TopicTombstones
from featurebus.platform.deletes.requests import DeleteRequest, publish_request
from featurebus.platform.deletes.sources import delete_source_records
from featurebus.platform.kafka.admin import topic_end_offsets
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.offline.store import max_offsets
from featurebus.schemas.encoding import JoinKeyValue
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, StreamSourceSpec, WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["DeleteOptions", "delete_keys"]

OFFLINE_WAIT_S = 15.0  # how long a delete waits for the offline materializer to catch up
_TILE_KEY_TAIL = 10  # u64 tile start + u16 shard after the entity key (schemas/encoding.py)


@dataclass(frozen=True)
class DeleteOptions:
    online: bool = True
    offline: bool = True
    include_sources: bool = False


def delete_keys(
    bootstrap: str,
    offline_root: Path,
    spec: WorkspaceSpec,
    view_name: str,
    rows: Sequence[Mapping[str, Any]],
    options: DeleteOptions,
    request_id: str | None = None,
) -> DeleteReceipt:
    if not spec.live:
        raise InvalidRequestError(
            f"workspace {spec.name!r} is a development workspace: it is never materialized and holds no values "
            "to delete; delete the keys in the live workspace its data comes from"
        )
    if not (options.online or options.offline or options.include_sources):
        raise InvalidRequestError("nothing to delete: online, offline and include_sources are all false")
    target = delete_target(spec, view_name)
    keys = entity_keys(target, rows)
    key_values = set(keys.values())
    request_id = request_id or uuid.uuid4().hex
    view = target.view
    topics: list[TopicTombstones] = []
    files: list[FileRewrite] = []
    not_deleted: list[NotDeleted] = []
    if options.online and view.online:
        topics.extend(_delete_online(bootstrap, spec, target, set(keys), request_id))
    if options.offline:
        rewrites, notes = _delete_offline(bootstrap, offline_root, spec, target, key_values)
        files.extend(rewrites)
        not_deleted.extend(notes)
    if options.include_sources:
        for source_name in _stream_sources(spec, view):
            written, notes = delete_source_records(
                bootstrap, spec.source(source_name), target.join_keys, target.dtypes, key_values
            )
            topics.extend(written)
            not_deleted.extend(notes)
    else:
        not_deleted.extend(
            NotDeleted(
                f"source topics {list(spec.source(name).kafka.topics)}",
                "include_sources=False: they still hold these entities' records, and a recomputation from the "
                "source log (a definition change, a rebuilt offline store) would bring the values back",
            )
            for name in _stream_sources(spec, view)
        )
    return DeleteReceipt(
        workspace=spec.name,
        view=view.name,
        entities=len(keys),
        online=options.online,
        offline=options.offline,
        include_sources=options.include_sources,
        topics=tuple(topics),
        files=tuple(files),
        not_deleted=tuple(not_deleted),
        request_id=request_id,
    )


def _delete_online(
    bootstrap: str, spec: WorkspaceSpec, target: DeleteTarget, keys: set[bytes], request_id: str
) -> list[TopicTombstones]:
    """Tombstones over the entities' feature records; then the request the stream workers follow."""
    topic = feature_topic(spec.name, target.view.name)
    found = live_records(bootstrap, topic, lambda batch: [key[:-_TILE_KEY_TAIL] in keys for key, _ in batch])
    written = write_tombstones(bootstrap, topic, found, "feature") if found else []
    if not target.is_batch:  # batch views' tiles come from jobs, not from a worker's state
        publish_request(
            bootstrap, spec.name, DeleteRequest(request_id, target.view.name, tuple(sorted(keys)), now_ms())
        )
    return written


def _delete_offline(
    bootstrap: str, root: Path, spec: WorkspaceSpec, target: DeleteTarget, keys: set[tuple[JoinKeyValue, ...]]
) -> tuple[list[FileRewrite], list[NotDeleted]]:
    view = target.view
    if isinstance(view, BatchFeatureViewSpec):
        rewrites = delete_batch_view_rows(root, spec.name, view.name, view.timestamp_field, target.join_keys, keys)
        return rewrites, _batch_source_notes(spec, view)
    source = spec.source(view.source)
    history = _history_notes(view, source)
    if not source.log_offline:
        return [], history
    behind = _await_offline(bootstrap, root, spec.name, source)
    rewrites, notes = delete_source_rows(root, spec.name, source, target.join_keys, keys)
    notes.extend(
        NotDeleted(
            f"{topic}[{partition}] offsets {held + 1}..{end - 1}",
            f"the offline materializer had not written these records yet (it holds up to offset {held}); "
            "those of the deleted entities among them will be written after this delete: run it again "
            "once the offline store caught up",
        )
        for (topic, partition), (held, end) in sorted(behind.items())
    )
    return rewrites, [*notes, *history]


def _history_notes(view: StreamFeatureViewSpec, source: StreamSourceSpec) -> list[NotDeleted]:
    """A stream view with batch history reads its history before the cut-over from the source's
    batch_config files (streams/cutover.py), which featurebus never writes."""
    if not view.backfill_from_batch or source.batch_config is None:
        return []
    return [
        NotDeleted(
            f"stream source {source.name!r} batch_config ({source.batch_config.uri})",
            "its files belong to you: featurebus reads them and does not change them. Remove the entities' rows "
            "there too, or training sets and a later backfill of this view's history bring them back",
        )
    ]


def _await_offline(
    bootstrap: str, root: Path, workspace: str, source: StreamSourceSpec
) -> dict[tuple[str, int], tuple[int, int]]:
    """Wait (up to ``OFFLINE_WAIT_S``) for the offline store to hold the source's records up to the
    topics' current ends, so a record materialized right after the rewrite cannot bring a deleted
    row back; returns the partitions still behind: ``(topic, partition) -> (held, end offset)``.
    (A partition whose last offsets are transaction markers never looks caught up: it is reported
    after the wait, which only costs the wait.)"""
    ends = {
        (topic, p): high
        for topic in source.kafka.topics
        for p, (_, high) in topic_end_offsets(bootstrap, topic).items()
    }
    deadline = time.monotonic() + OFFLINE_WAIT_S
    while True:
        held = max_offsets(root, workspace, source.name)
        behind = {key: (held.get(key, -1), end) for key, end in ends.items() if held.get(key, -1) < end - 1}
        if not behind or time.monotonic() >= deadline:
            return behind
        time.sleep(0.5)


def _stream_sources(spec: WorkspaceSpec, view: Any) -> list[str]:
    if isinstance(view, BatchFeatureViewSpec):
        names = {s.name for s in spec.stream_sources}
        return [s for s in view.sources if s in names]
    return [view.source]


def _batch_source_notes(spec: WorkspaceSpec, view: BatchFeatureViewSpec) -> list[NotDeleted]:
    """A batch view recomputes from its batch sources' files, which featurebus reads, never writes."""
    batch = {s.name for s in spec.batch_sources}
    return [
        NotDeleted(
            f"batch source {name!r}",
            "its files belong to you: featurebus reads them and does not change them. Remove the entities' rows "
            "there too, or a later materialization of this view brings them back",
        )
        for name in view.sources
        if name in batch
    ]
