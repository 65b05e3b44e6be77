"""Reading the stream engine's local state in tests (state keys are view | u16 shard | tile key)."""

from __future__ import annotations

from featurebus.platform.kv import KeyValueStore
from featurebus.schemas.encoding import decode_partials, split_tile_key, store_prefix


def engine_tiles(store: KeyValueStore, view: str, entity_key: bytes) -> list[tuple[int, list[object]]]:
    """Every shard's tiles of an entity in the worker's state, as ``(tile start, partials)``."""
    prefix = store_prefix(view)
    result = []
    for key, value in store.scan(prefix, prefix + b"\xff" * 16):
        entity, start, _ = split_tile_key(key[len(prefix) + 2 :])
        if entity == entity_key:
            result.append((start, decode_partials(value)))
    return result
