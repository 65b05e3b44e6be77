"""A service serving a subset of a view's features, in any order, through single and batch
lookups: the serving path merges only the served aggregations with window bounds computed once
per request, and must agree with the full view computed by ``compute_values``."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import decode_tiles, store_prefix, tile_key
from featurebus.schemas.specs import FeatureSelectionSpec, FeatureServiceSpec
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer
from featurebus.streams.tiles import CompiledView, compute_values
from tests.support.oracle import Event, close
from tests.support.specs import MINUTE, spending_workspace
from tests.unit.test_serving_service import BASE, VIEW, Clock, load


def _expected(store: MemoryStore, view: CompiledView, user: str, t_ms: int) -> list[object]:
    prefix = store_prefix(online_view_name("test", VIEW), view.entity_key([user]))
    tiles = decode_tiles(store.scan(prefix, prefix + b"\xff"))
    return compute_values(view, tiles, t_ms)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.integers(min_value=0, max_value=240).map(lambda m: m * MINUTE // 2),
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        ),
        max_size=40,
    ),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offset=st.integers(min_value=0, max_value=260).map(lambda m: m * MINUTE // 2 + m % 7),
    picks=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=6, unique=True),
)
def test_selected_features_in_any_order_match_compute_values(
    events: list[tuple[str, int, float]], interval: int | None, query_offset: int, picks: list[int]
) -> None:
    spec = spending_workspace(interval_ms=interval)
    names = tuple(spec.view(VIEW).aggregations[i].name for i in picks)
    spec = dataclasses.replace(
        spec, feature_services=(FeatureServiceSpec("some", (FeatureSelectionSpec(VIEW, names),)),)
    )
    store = MemoryStore()
    load(store, spec, [Event((user,), BASE + offset, amount) for user, offset, amount in events])
    t_ms = BASE + query_offset
    server = FeatureServer(lambda: {"test": spec}, store, Clock(t_ms))
    view = CompiledView.compile(spec.view(VIEW), ["string"])
    users = ["u1", "u2", "u3", "nobody"]
    batch = server.get_features_batch("test", "some", [{"user_id": u} for u in users])["result"]
    for user, row in zip(users, batch, strict=True):
        single = server.get_features("test", "some", {"user_id": user})["result"]["features"]
        assert single == row["features"]
        full = _expected(store, view, user, t_ms)
        for pick, value in zip(picks, single, strict=True):
            expected = full[pick]
            if spec.view(VIEW).aggregations[pick].output_dtype == "int64":
                assert value == str(expected)
            else:
                assert close(value, expected), (pick, value, expected)


def test_tiles_outside_every_window_are_not_read_as_data() -> None:
    spec = spending_workspace()
    store = MemoryStore()
    load(store, spec, [Event(("u1",), BASE, 5.0)])
    server = FeatureServer(lambda: {"test": spec}, store, Clock(BASE + 2 * 60 * MINUTE))
    answer = server.get_features("test", "spending", {"user_id": "u1"}, {"includeServingStatus": True})
    assert answer["result"]["features"] == ["0", None, None, "0", None, None]
    assert {m["status"] for m in answer["metadata"]["features"]} == {"MISSING_DATA"}
    assert tile_key(b"", 0) < tile_key(b"", 1)  # the scanned suffixes sort as the tile starts do
