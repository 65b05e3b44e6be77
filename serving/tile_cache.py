"""Decoded tiles of the entities that have many, kept between requests until a write touches them.

A window is merged from every tile it covers, so an entity with many tiles (a merchant with a
day of 5-minute tiles: up to 288) costs a long store scan and a long decode on every lookup.
The serving benchmark's merchants carry ~130 tiles each, and reading them made up 80% of a
100-row batch. This cache keeps such entities' tiles decoded; the online materializer calls
``begin_write`` with every entity it is about to write and ``end_write`` once the write is in
the store, so an answer never comes from tiles older than the store's, and once a write is
visible in the store (read-after-write ingestion waits for that) no cached entry predates it.

Race-free without holding a lock across the store read: a reader notes ``generation`` before it
scans, and ``put`` drops its entry if a write began or ended since (it may have read before the
write). While a write is under way its entities are misses. Entities with few tiles are not
cached: scanning them is as cheap as the bookkeeping.

A cached entity also keeps the values of the windows served from it (``window_values``): its tiles
do not change while it is cached, so a window over the same tiles has the same value, and the
exact float sums a window costs (``streams.exact_sum``: ``fsum`` over up to 288 tiles' double-
doubles) are taken once per entity, window and write instead of once per request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["CachedTiles", "TileCache", "MAX_WINDOW_VALUES"]

MAX_WINDOW_VALUES = 256  # per entity; past it the oldest windows' values (earlier request times) go


class CachedTiles(NamedTuple):
    starts: list[int]  # ascending
    partials: list[list[Any]]  # per tile, per aggregation of the view
    # (aggregation index in the view, first tile, end tile) -> that window's value
    window_values: dict[tuple[int, int, int], Any]


class TileCache:
    def __init__(self, max_entities: int = 20_000, min_tiles: int = 16) -> None:
        if max_entities < 1 or min_tiles < 1:
            raise ValueError("max_entities and min_tiles must be positive")
        self.max_entities = max_entities
        self.min_tiles = min_tiles
        self._entries: dict[bytes, CachedTiles] = {}  # insertion order: the oldest go first
        self._writing: frozenset[bytes] = frozenset()  # replaced, never mutated: read without the lock
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, entity_prefix: bytes) -> CachedTiles | None:
        if entity_prefix in self._writing:
            return None
        return self._entries.get(entity_prefix)

    def put(self, entity_prefix: bytes, tiles: CachedTiles, generation: int) -> bool:
        """Keep ``tiles`` read after ``generation`` was current; False (not kept) if a write
        began or ended since, is under way for the entity, or it has too few tiles to be worth it."""
        if len(tiles[0]) < self.min_tiles:
            return False
        with self._lock:
            if self._generation != generation or entity_prefix in self._writing:
                return False
            self._entries[entity_prefix] = tiles
            while len(self._entries) > self.max_entities:
                del self._entries[next(iter(self._entries))]
        return True

    def begin_write(self, entity_prefixes: set[bytes]) -> None:
        """Before the store write of these entities' tiles: forget them, refuse them until
        ``end_write``."""
        with self._lock:
            self._generation += 1
            self._writing = self._writing | entity_prefixes
            for prefix in entity_prefixes:
                self._entries.pop(prefix, None)

    def end_write(self, entity_prefixes: set[bytes]) -> None:
        """After the write is in the store."""
        with self._lock:
            self._generation += 1
            self._writing = self._writing - entity_prefixes

    def invalidate(self, entity_prefixes: Iterable[bytes]) -> None:
        """Both at once, for a write that is already in the store."""
        prefixes = set(entity_prefixes)
        self.begin_write(prefixes)
        self.end_write(prefixes)

    def __len__(self) -> int:
        return len(self._entries)
