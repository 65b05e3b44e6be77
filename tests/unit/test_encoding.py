from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurebus.exceptions import InvalidRequestError, StoreFormatError
from featurebus.schemas.encoding import (
    coerce_join_key,
    decode_entity_key,
    decode_partials,
    encode_entity_key,
    encode_entity_keys,
    encode_partials,
    split_store_key,
    split_tile_key,
    store_key,
    tile_key,
    tile_shard,
)

key_values = st.lists(st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=3)


@given(key_values, st.integers(-(2**62), 2**62), st.integers(0, 2**16 - 1))
def test_keys_round_trip(values: list[str | int], tile: int, shard: int) -> None:
    entity = encode_entity_key(values)
    assert decode_entity_key(entity) == (tuple(values), len(entity))
    assert split_tile_key(tile_key(entity, tile, shard)) == (entity, tile, shard)
    assert tile_shard(tile_key(entity, tile, shard)) == shard
    assert split_store_key(store_key("view", tile_key(entity, tile))) == ("view", tile_key(entity, tile))


@given(st.integers(-(2**62), 2**62), st.integers(-(2**62), 2**62))
def test_tiles_of_an_entity_sort_by_time(a: int, b: int) -> None:
    entity = encode_entity_key(["u1"])
    assert (tile_key(entity, a) < tile_key(entity, b)) == (a < b)
    # Every shard of a tile start falls inside the scan range [tile_key(start), tile_key(start + 1)).
    assert tile_key(entity, a) <= tile_key(entity, a, 2**16 - 1) < tile_key(entity, a + 1)


def test_integer_join_keys_sort_numerically_including_negatives() -> None:
    assert encode_entity_key([-5]) < encode_entity_key([3]) < encode_entity_key([10])


def test_partials_round_trip_and_versions_are_checked() -> None:
    assert decode_partials(encode_partials([3, 1.5, [2.0, 4]])) == [3, 1.5, [2.0, 4]]
    with pytest.raises(StoreFormatError, match="delete the online store"):
        decode_partials(b"\x09[]")
    with pytest.raises(StoreFormatError):
        decode_entity_key(b"\x07s")


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [("42", "int64", 42), (42, "int64", 42), (42, "string", "42"), ("abc", "string", "abc")],
)
def test_join_keys_are_coerced_to_their_declared_type(value: object, dtype: str, expected: object) -> None:
    assert coerce_join_key(value, dtype, "k") == expected


@pytest.mark.parametrize(("value", "dtype"), [("x", "int64"), (True, "int64"), (None, "string"), ({}, "string")])
def test_bad_join_keys_name_the_key(value: object, dtype: str) -> None:
    with pytest.raises(InvalidRequestError, match="'k'"):
        coerce_join_key(value, dtype, "k")


def test_decode_tiles_matches_decoding_one_by_one_and_checks_versions() -> None:
    from featurebus.schemas.encoding import decode_tiles

    entity = encode_entity_key(["u1"])
    items = [
        (store_key("v", tile_key(entity, start)), encode_partials([start, [1.5, 2], None]))
        for start in (-5, 0, 7, 2**40)
    ]
    assert decode_tiles(items) == [(split_tile_key(split_store_key(k)[1])[1], decode_partials(v)) for k, v in items]
    assert decode_tiles([]) == []
    with pytest.raises(StoreFormatError):
        decode_tiles([*items, (items[0][0], b"\x09[1]")])


@given(st.lists(st.tuples(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1)), max_size=20))
def test_batch_entity_keys_equal_one_by_one_keys(rows: list[tuple[str, int]]) -> None:
    columns = [[r[0] for r in rows], [r[1] for r in rows]]
    batch = encode_entity_keys(columns, ["string", "int64"], ["user_id", "n"])
    assert batch == [encode_entity_key([s, n]) for s, n in rows]
    # Values of another type are coerced as single keys are (HTTP clients send int64 as strings).
    assert encode_entity_keys([["7"], [3]], ["int64", "string"], ["a", "b"]) == [encode_entity_key([7, "3"])]
