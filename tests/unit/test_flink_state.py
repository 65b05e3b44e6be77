"""The Flink engine's adapters, without Flink: the store over a map state behaves as the engine's
other stores do, and the sink turns the engine's output into the native worker's records; the
install checks name what to install."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from featurebus.platform.flink import runtime as flink_runtime
from featurebus.platform.kv import MemoryStore
from featurebus.schemas.errors import FlinkUnavailableError
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine
from featurebus.streams.runtime.flink.state import FlinkMapStore, RowSink
from tests.support.specs import HOUR, spending_workspace


class DictMapState:
    """PyFlink's MapState surface over a dict (what the operator hands the store per key)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def remove(self, key: Any) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterable[tuple[Any, Any]]:
        return list(self.data.items())


def test_map_store_reads_writes_deletes_and_scans_in_key_order() -> None:
    store = FlinkMapStore(DictMapState())
    store.use("shard")
    store.write([(b"b", b"2"), (b"a", b"1"), (b"c", b"3")])
    store.write([(b"c", None)])
    assert store.get(b"a") == b"1" and store.get(b"c") is None
    assert store.get_many([b"b", b"z"]) == [b"2", None]
    assert list(store.scan(b"a", b"c")) == [(b"a", b"1"), (b"b", b"2")]


class KeyedDictMapState(DictMapState):
    """A map state scoped to the current key, as Flink scopes keyed state."""

    def __init__(self) -> None:
        self.per_key: dict[str, dict[bytes, bytes]] = {}
        self.key = ""

    @property  # type: ignore[override]
    def data(self) -> dict[bytes, bytes]:
        return self.per_key.setdefault(self.key, {})


def test_map_store_keeps_shards_apart_writes_through_and_reloads_from_the_state() -> None:
    state = KeyedDictMapState()
    store = FlinkMapStore(state)
    for shard, value in (("t\x000", b"zero"), ("t\x001", b"one")):
        state.key = shard
        store.use(shard)
        store.write([(b"k", value), (b"k2", value)])
    state.key = "t\x000"
    store.use("t\x000")
    assert store.get(b"k") == b"zero"
    store.write([(b"k2", None), (b"a", b"new")])
    assert list(store.scan(b"", b"\xff")) == [(b"a", b"new"), (b"k", b"zero")]
    # A new operator (a restore) starts from what reached the state, not from the old copy.
    assert state.per_key == {"t\x000": {b"k": b"zero", b"a": b"new"}, "t\x001": {b"k": b"one", b"k2": b"one"}}
    restored = FlinkMapStore(state)
    restored.use("t\x000")
    assert restored.get_many([b"a", b"k", b"k2"]) == [b"new", b"zero", None]


def _records(n: int) -> list[RawRecord]:
    base = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
    records = [
        RawRecord("transactions", 0, i, orjson.dumps({"user_id": f"u{i % 3}", "amount": i / 4, "ts": base + i * 1000}))
        for i in range(n)
    ]
    return [*records, RawRecord("transactions", 0, n, b"{broken")]


def test_engine_over_the_flink_adapters_publishes_what_it_publishes_natively() -> None:
    spec = spending_workspace()
    topics = {"user_spending": ("features.user_spending", 2)}
    native_sink = MemorySink()
    native = StreamEngine(spec, MemoryStore(), native_sink, topics.__getitem__)
    row_sink = RowSink("dead")
    store = FlinkMapStore(DictMapState())
    store.use("transactions\x000")
    flink = StreamEngine(spec, store, row_sink, topics.__getitem__)
    records = _records(40)
    for engine in (native, flink):
        engine.process(records[:15])
        engine.process(records[15:])
    rows = row_sink.drain()
    assert [(key, value, topic) for key, value, topic, headers in rows if topic != "dead"] == [
        (key, value, topic) for topic, _, key, value in native_sink.records
    ]
    [dead] = [row for row in rows if row[2] == "dead"]
    assert dead[1] == b"{broken" and dead[3] is not None
    assert dead[3]["featurebus.reason"] == native_sink.dead[0][1].encode()
    assert dead[3]["featurebus.offset"] == b"40"
    assert row_sink.drain() == []


def test_a_wrong_apache_flink_version_names_the_one_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.20.0")
    with pytest.raises(FlinkUnavailableError, match=r"apache-flink 1.20.0 is installed.*apache-flink==2.2.1"):
        flink_runtime.check_flink_installed()


def test_missing_apache_flink_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(FlinkUnavailableError, match=r"apache-flink is not installed.*featurebus\[flink\]"):
        flink_runtime.check_flink_installed()


def test_missing_java_fails_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FlinkUnavailableError, match=r"JVM.*install a JDK"):
        flink_runtime.check_flink_installed()
    with pytest.raises(FlinkUnavailableError, match="JVM"):
        flink_runtime.ensure_flink_jars()
