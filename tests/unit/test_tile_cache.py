"""The serving tile cache: never keeps tiles read before a write it was told about, and a server
using it answers exactly as one reading the store every time, before and after writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import store_prefix
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.serving.tile_cache import CachedTiles, TileCache
from featurebus.streams.tiles import CompiledView
from tests.support.oracle import Event
from tests.support.specs import MINUTE, spending_workspace
from tests.unit.test_serving_service import BASE, VIEW, Clock, load

TILES = CachedTiles([1] * 20, [[1]] * 20, {})


def test_put_is_refused_after_an_invalidation_since_the_read() -> None:
    cache = TileCache(min_tiles=1)
    before = cache.generation
    cache.invalidate([b"other"])  # a write landed between the reader's look and its put
    assert not cache.put(b"e", TILES, before)
    assert cache.get(b"e") is None
    assert cache.put(b"e", TILES, cache.generation)
    assert cache.get(b"e") == TILES
    cache.invalidate([b"e"])
    assert cache.get(b"e") is None


def test_entities_being_written_are_misses_and_cannot_be_put() -> None:
    cache = TileCache(min_tiles=1)
    assert cache.put(b"e", TILES, cache.generation)
    cache.begin_write({b"e"})
    assert cache.get(b"e") is None
    read_during_write = cache.generation
    assert not cache.put(b"e", TILES, read_during_write)  # may hold the tiles from before the write
    cache.end_write({b"e"})
    assert not cache.put(b"e", TILES, read_during_write)
    assert cache.put(b"e", TILES, cache.generation)
    assert cache.get(b"e") == TILES


def test_few_tiles_are_not_kept_and_the_oldest_entities_go_first() -> None:
    cache = TileCache(max_entities=2, min_tiles=3)
    assert not cache.put(b"small", CachedTiles([1], [[1]], {}), cache.generation)
    for name in (b"a", b"b", b"c"):
        assert cache.put(name, TILES, cache.generation)
    assert cache.get(b"a") is None and cache.get(b"b") == TILES and cache.get(b"c") == TILES
    assert len(cache) == 2


@settings(max_examples=40, deadline=None)
@given(
    first=st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 240), st.floats(-1e3, 1e3)), max_size=30),
    later=st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 240), st.floats(-1e3, 1e3)), max_size=10),
    interval=st.sampled_from([None, 10 * MINUTE]),
    times=st.lists(st.integers(0, 300), min_size=1, max_size=4),
)
def test_a_cached_server_answers_as_an_uncached_one(
    first: list[tuple[str, int, float]], later: list[tuple[str, int, float]], interval: int | None, times: list[int]
) -> None:
    spec = spending_workspace(interval_ms=interval)
    store = MemoryStore()
    clock = Clock(BASE)
    cache = TileCache(min_tiles=1)
    cached = FeatureServer(lambda: {"test": spec}, store, clock, tile_cache=cache)
    plain = FeatureServer(lambda: {"test": spec}, store, clock)
    view = CompiledView.compile(spec.view(VIEW), ["string"])

    def events(items: list[tuple[str, int, float]]) -> list[Event]:
        return [Event((u,), BASE + m * MINUTE // 2, v) for u, m, v in items]

    def check() -> None:
        for minutes in times:
            clock.t_ms = BASE + minutes * MINUTE // 2
            for user in ("u1", "u2", "nobody"):
                assert cached.get_features("test", "spending", {"user_id": user}) == plain.get_features(
                    "test", "spending", {"user_id": user}
                )

    load(store, spec, events(first))
    check()
    # What the online materializer does: write (here: tiles merged anew), then invalidate.
    load(store, spec, events(first + later))
    cache.invalidate(store_prefix(online_view_name("test", VIEW), view.entity_key([u])) for u in ("u1", "u2"))
    check()
