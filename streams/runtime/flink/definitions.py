"""Definitions follow a running Flink job: what restarts it, and how a shard catches up after.

The job runner (``follow.py``) restarts the job from a savepoint when an apply changes what it
computes (``job_definitions``). The restarted job's operator then aligns each source partition's
shard with the new definitions the first time it touches that shard (its first batch, or its
expiry timer, at most ``EXPIRY_INTERVAL_MS`` after the restart), before any new record:

1. views no longer defined on the shard's topic (removed, switched offline, moved to another
   source) have their state deleted from the shard: removing a view drops its state;
2. views whose materialization fingerprint differs from the one the shard was built with (changed
   by the apply) or that the shard never built (new, or switched online) are recomputed from the
   source log up to the shard's applied offset, exactly as the native worker does
   (``streams.runtime.rebuild``: the same ``recompute_views`` replay through a scratch engine and
   the same ``install_rebuilt`` diff: new values, then tombstones for records that no longer exist;
   a view new to the shard is diffed against the shard's records on its feature topic, left
   there by an earlier life of the view);
3. the shard records the fingerprints it is now built with (in the operator's keyed state).

All of it happens inside one element or timer call of the operator, so its state changes and the
records it publishes belong to the same checkpoint as the batch that follows: a failure before
that checkpoint restores the shard with its old fingerprints, and the next attempt recomputes
again (publishing the same records). Pure of Flink: tested over a plain map.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from featurebus.platform.kv import KeyValueStore, RocksStore
from featurebus.schemas.encoding import split_store_key, split_tile_key, store_prefix
from featurebus.schemas.materialization import CommitMetadata, online_fingerprints
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.streams.lifetime import high_watermark_shard
from featurebus.streams.runtime.engine import FeatureSink, RawRecord, StreamEngine
from featurebus.streams.runtime.rebuild import install_rebuilt, recompute_views
from featurebus.streams.runtime.shard_state import key_range_end

__all__ = [
    "ShardAlignment",
    "align_shard",
    "decode_fingerprints",
    "encode_fingerprints",
    "job_definitions",
    "views_in_state",
]

log = logging.getLogger(__name__)

# Every view's state keys start with the key format's mark (``schemas.encoding.store_prefix``);
# progress records start with b"\x00" and are left alone.
_VIEW_KEYS_START = store_prefix("")[:1]
_VIEW_KEYS_END = key_range_end(_VIEW_KEYS_START)

# topic, partition, end offset -> the partition's committed records below it, in batches
SourceReader = Callable[[str, int, int], Iterable[Sequence[RawRecord]]]


def job_definitions(spec: WorkspaceSpec) -> bytes:
    """What the Flink job computes under ``spec``, canonically: the materialization fingerprints
    of the online views per source topic, and the Kafka settings of their sources (the watermark
    delay and the value format decide how new records are read). An apply that changes this
    restarts the job; one that changes only descriptions, owners, tags or offline-only views
    does not (the native worker recomputes nothing for those either)."""
    online = [view for view in spec.stream_feature_views if view.online]
    topics = sorted({t for view in online for t in spec.source(view.source).kafka.topics})
    sources = sorted({view.source for view in online})
    return orjson.dumps(
        {
            "views": {topic: online_fingerprints(spec, topic) for topic in topics},
            "sources": {name: dataclasses.asdict(spec.source(name).kafka) for name in sources},
        },
        option=orjson.OPT_SORT_KEYS,
    )


def encode_fingerprints(fingerprints: dict[str, str]) -> str:
    return orjson.dumps(fingerprints, option=orjson.OPT_SORT_KEYS).decode()


def decode_fingerprints(raw: str | None) -> dict[str, str] | None:
    """None: the shard was built before fingerprints were kept (taken as current, as natively)."""
    if raw is None:
        return None
    return {str(view): str(fp) for view, fp in orjson.loads(raw).items()}


def _shard_records(
    records: dict[bytes, bytes], engine: StreamEngine, topic: str, partition: int, view: str
) -> dict[bytes, bytes]:
    """The records of ``view``'s feature topic that belong to this source partition's shard (the
    Flink sink spreads a view's records over its feature topic's partitions by key)."""
    shard = next(s for name, _, _, s in engine.shard_locations(topic, partition) if name == view)
    kept = {}
    for key, value in records.items():
        mark = high_watermark_shard(key)
        if (split_tile_key(key)[2] if mark is None else mark) == shard:
            kept[key] = value
    return kept


def views_in_state(store: KeyValueStore) -> dict[str, list[bytes]]:
    """``view -> its state keys`` in ``store`` (one shard's map)."""
    found: dict[str, list[bytes]] = {}
    for key, _ in store.scan(_VIEW_KEYS_START, _VIEW_KEYS_END):
        found.setdefault(split_store_key(key)[0], []).append(key)
    return found


@dataclass(frozen=True)
class ShardAlignment:
    fingerprints: dict[str, str]  # what the shard is built with now
    dropped: tuple[str, ...]  # views whose state was deleted
    rebuilt: tuple[str, ...]  # views recomputed from the source log
    replayed: int  # source records read for that
    published: int  # feature records that changed (values and tombstones)


def align_shard(
    spec: WorkspaceSpec,
    engine: StreamEngine,
    store: KeyValueStore,
    sink: FeatureSink,
    topic: str,
    partition: int,
    built_with: dict[str, str] | None,
    read_source: SourceReader,
    read_feature_topic: Callable[[str], dict[bytes, bytes]],
    feature_topic_of: Callable[[str], tuple[str, int]],
) -> ShardAlignment:
    """Bring the shard of ``topic[partition]`` (``store``: that shard's map, ``engine`` running
    ``spec`` over it) in line with ``spec``; ``built_with``: the fingerprints it was built with;
    ``read_feature_topic(view)``: the latest records of the view's whole feature topic."""
    current = online_fingerprints(spec, topic)
    dropped = sorted(view for view in views_in_state(store).keys() - current.keys())
    if dropped:
        keys = views_in_state(store)
        store.write([(key, None) for view in dropped for key in keys[view]])
    progress = engine.progress(topic, partition)
    if progress.offset < 0 or built_with is None:
        # Nothing applied yet (every view starts from the log's beginning anyway), or state from
        # before fingerprints were kept: taken as built by the current definitions, as natively.
        return ShardAlignment(current, tuple(dropped), (), 0, 0)
    stale = CommitMetadata(progress.watermark, built_with).stale_views(current)
    if not stale:
        return ShardAlignment(current, tuple(dropped), (), 0, 0)
    new_here = [view for view in stale if view not in built_with]
    if new_here:
        # A view new to this shard may have records of an earlier life on its feature topic (it
        # was removed, its state dropped, and now it is back): they become the "old" state the
        # recomputation is diffed against, so those that no longer exist get their tombstones
        # (the native worker still holds them in its local state and diffs against that).
        earlier = {view: _shard_records(read_feature_topic(view), engine, topic, partition, view) for view in new_here}
        engine.replace_view_shards(topic, partition, earlier, progress)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="featurebus-flink-rebuild-") as scratch_dir:
        scratch = RocksStore(Path(scratch_dir))
        try:
            rebuilt, replayed = recompute_views(
                spec,
                stale,
                topic,
                partition,
                read_source(topic, partition, progress.offset + 1),
                scratch,
                feature_topic_of,
            )
        finally:
            scratch.close()
    published = install_rebuilt(engine, sink, topic, partition, rebuilt, progress)
    log.warning(
        "%s[%d]: recomputed %s from %d source records in %.1f s (%d feature records changed)",
        topic,
        partition,
        ", ".join(stale),
        replayed,
        time.monotonic() - started,
        published,
    )
    return ShardAlignment(current, tuple(dropped), tuple(stale), replayed, published)
