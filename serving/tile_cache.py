"""Decoded tiles of the entities that have many, kept between requests until a write touches them.

A window is merged from every tile it covers, so an entity with many tiles (a merchant with a
day of 5-minute tiles: up to 288) costs a long store scan and a long decode on every lookup.
The serving benchmark's merchants carry ~130 tiles each, and reading them made up 80% of a
100-row batch. This cache keeps such entities' tiles decoded; the online materializer calls
``invalidate`` with every entity it writes, after the write, so an answer never comes from
tiles older than the store's.

Race-free without holding a lock across the store read: a reader notes ``generation`` before it
scans and ``put`` drops its entry if any invalidation happened since (the write it might have
missed). Entities with few tiles are not cached: scanning them is as cheap as the bookkeeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["CachedTiles", "TileCache"]

CachedTiles = tuple[list[int], list[list[Any]]]  # tile starts (ascending), partials per tile


class TileCache:
    def __init__(self, max_entities: int = 20_000, min_tiles: int = 16) -> None:
        if max_entities < 1 or min_tiles < 1:
            raise ValueError("max_entities and min_tiles must be positive")
        self.max_entities = max_entities
        self.min_tiles = min_tiles
        self._entries: dict[bytes, CachedTiles] = {}  # insertion order: the oldest go first
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, entity_prefix: bytes) -> CachedTiles | None:
        return self._entries.get(entity_prefix)

    def put(self, entity_prefix: bytes, tiles: CachedTiles, generation: int) -> bool:
        """Keep ``tiles`` read after ``generation`` was current; False (not kept) if an
        invalidation happened since, or the entity has too few tiles to be worth it."""
        if len(tiles[0]) < self.min_tiles:
            return False
        with self._lock:
            if self._generation != generation:
                return False
            self._entries[entity_prefix] = tiles
            while len(self._entries) > self.max_entities:
                del self._entries[next(iter(self._entries))]
        return True

    def invalidate(self, entity_prefixes: Iterable[bytes]) -> None:
        """Forget these entities; call after their new tiles are in the store."""
        with self._lock:
            self._generation += 1
            for prefix in entity_prefixes:
                self._entries.pop(prefix, None)

    def __len__(self) -> int:
        return len(self._entries)
