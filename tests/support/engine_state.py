"""Reading the stream engine's local state in tests (state keys are view | u16 shard | tile key)."""

from __future__ import annotations

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import decode_partials, split_tile_key, store_prefix
from featurebus.streams.lifetime import HIGH_WATERMARK_PREFIX


def engine_tiles(store: KeyValueStore, view: str, entity_key: bytes) -> list[tuple[int, list[object], int]]:
    """Every shard's tiles of an entity in the worker's state (lifetime prefixes included), as
    ``(tile start, partials, shard)``, in start order."""
    prefix = store_prefix(view)
    result = []
    for key, value in store.scan(prefix, prefix + b"\xff" * 16):
        record_key = key[len(prefix) + 2 :]
        if record_key.startswith(HIGH_WATERMARK_PREFIX):
            continue
        entity, start, shard = split_tile_key(record_key)
        if entity == entity_key:
            result.append((start, decode_partials(value), shard))
    return sorted(result, key=lambda tile: tile[0])
