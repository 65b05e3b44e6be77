"""The ordered key-value boundary under the worker state and the online store.

Two backends behind one small Protocol: RocksDB (through rocksdict) for real use and a dict for
unit tests; ``tests/contract/test_kv_contract.py`` runs the same suite over both. A store holds a
format marker and refuses to open data written under another format version.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, cast

from featurebus.schemas.encoding import KEY_FORMAT_VERSION, READABLE_VALUE_FORMATS, VALUE_FORMAT_VERSION
from featurebus.schemas.errors import StoreFormatError

__all__ = ["KeyValueStore", "MemoryStore", "RocksStore", "FORMAT_MARKER_KEY", "open_store"]

# Sorts before every data key (those start with the key format byte, >= 0x01).
FORMAT_MARKER_KEY = b"\x00featurebus.format"
_FORMAT = f"key={KEY_FORMAT_VERSION};value={VALUE_FORMAT_VERSION}".encode()
# Stores written by an older value format this featurebus still reads: opened, marker upgraded.
_UPGRADABLE = frozenset(f"key={KEY_FORMAT_VERSION};value={v}".encode() for v in READABLE_VALUE_FORMATS)


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def get_many(self, keys: list[bytes]) -> list[bytes | None]: ...

    def write(self, puts: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply puts (``None`` deletes) atomically: all of them or none."""
        ...

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < end`` in key order."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """In-memory twin: a dict plus a sorted key list for range scans."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self.write([(FORMAT_MARKER_KEY, _FORMAT)])

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]

    def write(self, puts: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in list(puts):
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end)
        for key in self._keys[lo:hi]:
            yield key, self._data[key]

    def close(self) -> None:
        self._data.clear()
        self._keys.clear()


class RocksStore:
    """RocksDB through rocksdict; one process owns a directory at a time."""

    def __init__(self, path: Path) -> None:
        from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

        self._write_batch = WriteBatch
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Most lookups of the stream engine miss (a new tile): a bloom filter answers those without
        # reading SST blocks (measured: 2.5x faster multi-get misses at 1M keys).
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        table.set_block_cache(Cache(64 << 20))
        options.set_block_based_table_factory(table)
        self._db = Rdict(str(path), options=options)
        marker = self._db.get(FORMAT_MARKER_KEY)
        if marker is None or (marker != _FORMAT and marker in _UPGRADABLE):
            self._db[FORMAT_MARKER_KEY] = _FORMAT
        elif marker != _FORMAT:
            self._db.close()
            raise StoreFormatError(
                f"store at {path} has format {marker.decode(errors='replace')!r}, this featurebus "
                f"writes {_FORMAT.decode()!r}: delete the directory and let it rebuild from the "
                "feature topics"
            )

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._db.get(keys)  # type: ignore[arg-type]  # rocksdict multi-get takes a list
        return cast(list[bytes | None], values)

    def write(self, puts: Iterable[tuple[bytes, bytes | None]]) -> None:
        batch = self._write_batch(raw_mode=True)
        for key, value in puts:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(start)
        while it.valid():
            key = it.key()
            if key >= end:
                break
            yield key, it.value()
            it.next()

    def close(self) -> None:
        self._db.close()


def open_store(path: Path | None) -> KeyValueStore:
    """RocksDB at ``path``, or the in-memory twin when ``path`` is None."""
    return MemoryStore() if path is None else RocksStore(path)
