"""One behaviour for every ``KeyValueStore`` backend: the in-memory twin and RocksDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.exceptions import StoreFormatError
from featurebus.platform.kv import FORMAT_MARKER_KEY, KeyValueStore, MemoryStore, RocksStore

StoreFactory = Callable[[], KeyValueStore]


@pytest.fixture(params=["memory", "rocksdb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[KeyValueStore] = []

    def make() -> KeyValueStore:
        if request.param == "memory":
            store: KeyValueStore = MemoryStore()
        else:
            store = RocksStore(tmp_path / f"db{len(opened)}")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _data(store: KeyValueStore) -> list[tuple[bytes, bytes]]:
    """Everything but the format marker (which sorts first, under ``\\x00``)."""
    return [(k, bytes(v)) for k, v in store.scan(b"\x01", b"\xff" * 8)]


def test_get_missing_and_present(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.get(b"\x01a") is None
    store.write([(b"\x01a", b"1")])
    assert store.get(b"\x01a") == b"1"


def test_get_many_keeps_order_and_gaps(make_store: StoreFactory) -> None:
    store = make_store()
    store.write([(b"\x01a", b"1"), (b"\x01c", b"3")])
    assert store.get_many([b"\x01c", b"\x01b", b"\x01a"]) == [b"3", None, b"1"]
    assert store.get_many([]) == []


def test_write_puts_overwrites_and_deletes_in_one_batch(make_store: StoreFactory) -> None:
    store = make_store()
    store.write([(b"\x01a", b"1"), (b"\x01b", b"2"), (b"\x01c", b"3")])
    store.write([(b"\x01a", None), (b"\x01b", b"22"), (b"\x01d", b"4"), (b"\x01zz", None)])
    assert _data(store) == [(b"\x01b", b"22"), (b"\x01c", b"3"), (b"\x01d", b"4")]


def test_later_put_of_the_same_key_in_a_batch_wins(make_store: StoreFactory) -> None:
    store = make_store()
    store.write([(b"\x01a", b"1"), (b"\x01a", None), (b"\x01b", None), (b"\x01b", b"2")])
    assert _data(store) == [(b"\x01b", b"2")]


def test_write_accepts_a_generator(make_store: StoreFactory) -> None:
    store = make_store()
    store.write((bytes([1, i]), bytes([i])) for i in range(5))
    assert len(_data(store)) == 5


def test_scan_is_half_open_and_ordered(make_store: StoreFactory) -> None:
    store = make_store()
    keys = [b"\x01b", b"\x01a", b"\x01ab", b"\x01c", b"\x01b\x00", b"\x02"]
    store.write([(k, k) for k in keys])
    assert [k for k, _ in store.scan(b"\x01a", b"\x01c")] == [b"\x01a", b"\x01ab", b"\x01b", b"\x01b\x00"]
    assert [k for k, _ in store.scan(b"\x01ab", b"\x01b")] == [b"\x01ab"]
    assert list(store.scan(b"\x01b", b"\x01b")) == []
    assert list(store.scan(b"\x03", b"\x04")) == []
    assert [k for k, _ in store.scan(b"\x01c", b"\xff")] == [b"\x01c", b"\x02"]


def test_format_marker_is_present(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.get(FORMAT_MARKER_KEY) is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(st.binary(min_size=1, max_size=4), st.none() | st.binary(max_size=4)), max_size=8),
        max_size=6,
    ),
    bounds=st.tuples(st.binary(max_size=4), st.binary(max_size=4)),
)
def test_matches_a_dict_model(
    make_store: StoreFactory, batches: list[list[tuple[bytes, bytes | None]]], bounds: tuple[bytes, bytes]
) -> None:
    store = make_store()
    model: dict[bytes, bytes] = {}
    for batch in batches:
        batch = [(b"\x01" + k, v) for k, v in batch]
        store.write(batch)
        for key, value in batch:
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    start, end = b"\x01" + bounds[0], b"\x01" + bounds[1]
    expected = sorted((k, v) for k, v in model.items() if start <= k < end)
    assert [(k, bytes(v)) for k, v in store.scan(start, end)] == expected
    assert store.get_many(sorted(model)) == [model[k] for k in sorted(model)]


def test_rocksdb_reopens_with_its_data(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    store.write([(b"\x01a", b"1")])
    store.close()
    reopened = RocksStore(tmp_path / "db")
    try:
        assert reopened.get(b"\x01a") == b"1"
    finally:
        reopened.close()


def test_rocksdb_refuses_another_format_with_an_operator_action(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    store.write([(FORMAT_MARKER_KEY, b"key=99;value=99")])
    store.close()
    with pytest.raises(StoreFormatError, match="delete the directory"):
        RocksStore(tmp_path / "db")
    # The refusal released the database: the operator's fix (a fresh directory) just works.
    fresh = RocksStore(tmp_path / "fresh")
    fresh.close()
