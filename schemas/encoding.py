"""Versioned byte encodings shared by the feature topics, the worker state and the online store.

Entity key  = FORMAT | per join key: tag (b"s" str, b"i" int) + value bytes (str: u32 length + utf-8;
              int: signed 64-bit big-endian, sign bit flipped so byte order is numeric order).
Tile key    = entity key | u64 big-endian of (tile_start_ms + 2**63) | u16 shard  -> tiles of an
              entity sort by time, so a window is one contiguous key range. The shard is the
              source partition the tile's events came from: each partition's owner publishes its
              own partial tiles, and readers merge the shards of a tile start (scale-out).
              The two lowest starts are reserved for an entity's per-shard lifetime prefixes, and
              keys ``HIGH_WATERMARK_PREFIX | u16 shard`` (never an entity key) for a shard's high
              watermark: see ``featurebus.streams.lifetime``.
Tile value  = FORMAT | orjson list of partials (one per aggregation, in the view's order). Sketch
              partials (approx_count_distinct, approx_percentile) are JSON lists that carry their
              own kind and version tag, ``["hll", 1, ...]`` (see ``featurebus.streams.sketches``).
Store key   = FORMAT | u16 length + view name | tile key.

Changing any layout means bumping ``KEY_FORMAT_VERSION`` / ``VALUE_FORMAT_VERSION``; stores
check the marker on open (see ``featurebus.platform.kv``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any, Literal, overload

import orjson

from featurebus.schemas.errors import InvalidRequestError, StoreFormatError

__all__ = [
    "KEY_FORMAT_VERSION",
    "VALUE_FORMAT_VERSION",
    "READABLE_VALUE_FORMATS",
    "readable_value",
    "encode_entity_key",
    "encode_entity_keys",
    "decode_entity_key",
    "coerce_join_key",
    "tile_key",
    "split_tile_key",
    "tile_shard",
    "encode_partials",
    "decode_partials",
    "decode_tiles",
    "store_key",
    "store_prefix",
    "split_store_key",
]

KEY_FORMAT_VERSION = 2  # 2: tile keys end with the source shard
# 2: float sum and mean partials carry a double-double sum ([hi, lo] / [hi, count, lo]) and
# variance partials a double-double mean ([count, mean hi, M2, mean lo]): see streams.exact_sum.
# Version 1 values stay readable (the aggregators read their shorter partials with lo = 0), so
# feature topics and stores written before need no rebuild; only version 2 is written.
VALUE_FORMAT_VERSION = 2
READABLE_VALUE_FORMATS = (1, 2)
_KEY_MARK = bytes([KEY_FORMAT_VERSION])
_VALUE_MARK = bytes([VALUE_FORMAT_VERSION])
_READABLE_VALUE_MARKS = frozenset(bytes([v]) for v in READABLE_VALUE_FORMATS)
_SIGN = 1 << 63
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")

JoinKeyValue = str | int


def coerce_join_key(value: Any, dtype: str, name: str) -> JoinKeyValue:
    """Normalise a join key value to its declared type (HTTP clients send int64 as strings)."""
    if dtype in ("int64", "int32"):
        if isinstance(value, bool):
            raise InvalidRequestError(f"join key {name!r} must be an integer, got a boolean")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"join key {name!r} must be an integer, got {value!r}") from None
    if dtype == "string":
        if value is None or isinstance(value, (dict, list)):
            raise InvalidRequestError(f"join key {name!r} must be a string, got {value!r}")
        return str(value)
    raise InvalidRequestError(f"join key {name!r} has unsupported type {dtype!r}")


def encode_entity_key(values: Sequence[JoinKeyValue]) -> bytes:
    parts = [_KEY_MARK]
    for value in values:
        if isinstance(value, int):
            parts.append(b"i" + _U64.pack((value + _SIGN) & 0xFFFFFFFFFFFFFFFF))
        else:
            raw = value.encode("utf-8")
            parts.append(b"s" + _U32.pack(len(raw)) + raw)
    return b"".join(parts)


def encode_entity_keys(columns: Sequence[Sequence[Any]], dtypes: Sequence[str], names: Sequence[str]) -> list[bytes]:
    """``encode_entity_key`` of many rows given column by column (the stream engine's batch path):
    values already of their declared type are encoded without a per-value call, the rest go
    through ``coerce_join_key`` (and its errors)."""
    parts_by_column = []
    for column, dtype, name in zip(columns, dtypes, names, strict=True):
        if dtype in ("int64", "int32"):
            ints = [v if type(v) is int else int(coerce_join_key(v, dtype, name)) for v in column]
            parts_by_column.append([b"i" + ((v + _SIGN) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big") for v in ints])
        else:
            raw = [(v if type(v) is str else str(coerce_join_key(v, dtype, name))).encode("utf-8") for v in column]
            parts_by_column.append([b"s" + len(r).to_bytes(4, "big") + r for r in raw])
    if len(parts_by_column) == 1:
        return [_KEY_MARK + part for part in parts_by_column[0]]
    return [_KEY_MARK + b"".join(parts) for parts in zip(*parts_by_column, strict=True)]


def decode_entity_key(data: bytes) -> tuple[tuple[JoinKeyValue, ...], int]:
    """Decode an entity key at the start of ``data``; returns the values and bytes consumed."""
    _check_mark(data[:1], KEY_FORMAT_VERSION, "key")
    values: list[JoinKeyValue] = []
    pos = 1
    while pos < len(data) and data[pos : pos + 1] in (b"i", b"s"):
        tag = data[pos : pos + 1]
        pos += 1
        if tag == b"i":
            values.append(_U64.unpack_from(data, pos)[0] - _SIGN)
            pos += 8
        else:
            (length,) = _U32.unpack_from(data, pos)
            pos += 4
            values.append(data[pos : pos + length].decode("utf-8"))
            pos += length
    return tuple(values), pos


def tile_key(entity_key: bytes, tile_start_ms: int, shard: int = 0) -> bytes:
    """The key of one shard's partial tile; ``shard=0`` also bounds a range scan by start."""
    return entity_key + _U64.pack(tile_start_ms + _SIGN) + _U16.pack(shard)


def split_tile_key(key: bytes) -> tuple[bytes, int, int]:
    """``(entity key, tile start, shard)`` of a tile key."""
    return key[:-10], _U64.unpack(key[-10:-2])[0] - _SIGN, _U16.unpack(key[-2:])[0]


def tile_shard(key: bytes) -> int:
    return int(_U16.unpack(key[-2:])[0])


def encode_partials(partials: Sequence[Any]) -> bytes:
    # orjson writes a tuple as the same JSON array as a list: no copy for the engine's tuples.
    return _VALUE_MARK + orjson.dumps(partials if type(partials) in (list, tuple) else list(partials))


def readable_value(data: bytes) -> bool:
    """Whether a tile value carries a format this featurebus reads (``READABLE_VALUE_FORMATS``)."""
    return data[:1] in _READABLE_VALUE_MARKS


def decode_partials(data: bytes) -> list[Any]:
    if data[:1] not in _READABLE_VALUE_MARKS:
        _check_mark(data[:1], VALUE_FORMAT_VERSION, "value")
    result: list[Any] = orjson.loads(data[1:])
    return result


@overload
def decode_tiles(
    items: Iterable[tuple[bytes, bytes]], shards: Literal[False] = False
) -> list[tuple[int, list[Any]]]: ...


@overload
def decode_tiles(items: Iterable[tuple[bytes, bytes]], shards: Literal[True]) -> list[tuple[int, list[Any], int]]: ...


def decode_tiles(
    items: Iterable[tuple[bytes, bytes]], shards: bool = False
) -> list[tuple[int, list[Any]]] | list[tuple[int, list[Any], int]]:
    """``(tile start, partials)`` of many ``(tile key, tile value)`` pairs at once: one JSON parse
    and one struct pass for all of them (the serving hot path reads hundreds per lookup).

    ``shards=True`` gives ``(tile start, partials, shard)``: lifetime prefixes are per shard, so
    a lifetime view's reader needs them; every other view's merges a tile's shards blindly and
    skips this extra pass."""
    keys, values = [], []
    for key, value in items:
        keys.append(key)
        values.append(value)
    if not keys:
        return []
    if any(value[:1] not in _READABLE_VALUE_MARKS for value in values):
        bad = next(value for value in values if value[:1] not in _READABLE_VALUE_MARKS)
        _check_mark(bad[:1], VALUE_FORMAT_VERSION, "value")
    partials: list[list[Any]] = orjson.loads(b"[" + b",".join(value[1:] for value in values) + b"]")
    starts = [start - _SIGN for (start,) in _U64.iter_unpack(b"".join(key[-10:-2] for key in keys))]
    if shards:
        shard_ids = [shard for (shard,) in _U16.iter_unpack(b"".join(key[-2:] for key in keys))]
        return list(zip(starts, partials, shard_ids, strict=True))
    return list(zip(starts, partials, strict=True))


def store_prefix(view: str, entity_key: bytes = b"") -> bytes:
    raw = view.encode("utf-8")
    return _KEY_MARK + _U16.pack(len(raw)) + raw + entity_key


def store_key(view: str, tile_key_bytes: bytes) -> bytes:
    return store_prefix(view) + tile_key_bytes


def split_store_key(key: bytes) -> tuple[str, bytes]:
    """``(view, tile key)`` of a store key."""
    _check_mark(key[:1], KEY_FORMAT_VERSION, "key")
    (length,) = _U16.unpack_from(key, 1)
    return key[3 : 3 + length].decode("utf-8"), key[3 + length :]


def _check_mark(mark: bytes, expected: int, what: str) -> None:
    if mark != bytes([expected]):
        found = mark[0] if mark else None
        raise StoreFormatError(
            f"{what} format version {found!r} is not {expected}: the data was written by another "
            "featurebus version; delete the online store directory and let it rebuild from the "
            "feature topics"
        )
