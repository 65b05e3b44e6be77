"""Publishing a batch view's tiles on its compacted feature topic, where serving reads them.

Record key = ``tile_key(entity, tile start, BATCH_SHARD)``, value = ``encode_partials`` — the
stream engine's encoding, so the online materializer and serving need nothing new. Keys depend
only on (entity, tile start): re-publishing a range overwrites the same keys (compaction keeps
the latest), which makes a re-run idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from featurebus.platform.batch.compute import BATCH_SHARD
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.kafka.topics import feature_topic
from featurebus.schemas.encoding import encode_partials, tile_key
from featurebus.streams.tiles import TileUpdate

__all__ = ["publish_tiles"]

_POLL_EVERY = 10_000


def publish_tiles(
    bootstrap: str,
    workspace: str,
    view: str,
    tiles: Sequence[TileUpdate],
    removed: Sequence[tuple[bytes, int]] = (),
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Write ``tiles`` to the view's feature topic (created if missing), and tombstones for the
    ``removed`` (entity key, tile start) pairs: tiles an earlier run of the range wrote that this
    run no longer has (the source's rows changed). Returns how many tiles were written."""
    topic = feature_topic(workspace, view)
    ensure_topics(bootstrap, [TopicConfig(topic, 1, compacted=True)])
    written = 0
    with reliable_producer(bootstrap) as producer:
        for entity_key, start_ms in removed:
            producer.produce(topic, None, tile_key(entity_key, start_ms, BATCH_SHARD))
        for tile in tiles:
            producer.produce(
                topic, encode_partials(tile.partials), tile_key(tile.entity_key, tile.tile_start_ms, BATCH_SHARD)
            )
            written += 1
            if written % _POLL_EVERY == 0:
                producer.poll(0)
                if cancelled():
                    break
    return written
