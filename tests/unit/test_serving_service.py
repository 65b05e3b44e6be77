"""FeatureServer over an in-memory store with tiles written directly and a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.exceptions import InvalidRequestError, NotFoundError
from featurebus.platform.kv import MemoryStore
from featurebus.schemas.encoding import encode_partials, store_key, tile_key
from featurebus.schemas.specs import EntitySpec, FieldSpec, WorkspaceSpec
from featurebus.serving.online_materializer import online_view_name
from featurebus.serving.service import FeatureServer, format_time_ms
from featurebus.streams import tiles as tiles_module
from featurebus.streams.tiles import CompiledView, batch_tiles
from tests.support.oracle import Event, close, feature_value
from tests.support.specs import HOUR, MINUTE, spending_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)
VIEW = "user_spending"
ALL_OPTIONS = {"includeDataTypes": True, "includeServingStatus": True, "includeEffectiveTimes": True}


class Clock:
    def __init__(self, t_ms: int) -> None:
        self.t_ms = t_ms

    def __call__(self) -> int:
        return self.t_ms


def load(store: MemoryStore, spec: WorkspaceSpec, events: Sequence[Event]) -> None:
    """Write the tiles the stream worker would publish for ``events`` into the online store."""
    if not events:
        return
    view = CompiledView.compile(spec.view(VIEW), ["string"])
    rows = pd.DataFrame(
        {"user_id": [e.entity[0] for e in events], "amount": [e.value for e in events]},
    )
    rows["amount"] = rows["amount"].astype("float64")
    ts_ms = np.array([e.ts_ms for e in events], dtype=np.int64)
    name = online_view_name(spec.name, VIEW)
    store.write(
        (store_key(name, tile_key(u.entity_key, u.tile_start_ms)), encode_partials(u.partials))
        for u in batch_tiles(view, rows, ts_ms)
    )


def server_for(spec: WorkspaceSpec, events: Sequence[Event], t_ms: int) -> tuple[FeatureServer, Clock]:
    store = MemoryStore()
    load(store, spec, events)
    clock = Clock(t_ms)
    specs = {spec.name: spec}
    return FeatureServer(lambda: specs, store, clock), clock


EVENTS = [
    Event(("alice",), BASE + 10 * MINUTE, 10.0),
    Event(("alice",), BASE + 50 * MINUTE, 20.0),
    Event(("alice",), BASE + 59 * MINUTE + 30_000, 30.0),
    Event(("bob",), BASE + 5 * MINUTE, 7.5),
]


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2"]),
            st.integers(min_value=0, max_value=240).map(lambda m: m * MINUTE // 2),  # ties on boundaries
            st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
        ),
        max_size=40,
    ),
    interval=st.sampled_from([None, 10 * MINUTE]),
    query_offset=st.integers(min_value=0, max_value=260).map(lambda m: m * MINUTE // 2 + m % 7),
)
def test_values_match_the_brute_force_oracle(
    events: list[tuple[str, int, float | None]], interval: int | None, query_offset: int
) -> None:
    spec = spending_workspace(interval_ms=interval)
    history = [Event((user,), BASE + offset, amount) for user, offset, amount in events]
    t_ms = BASE + query_offset
    server, _ = server_for(spec, history, t_ms)
    aggregations = spec.view(VIEW).aggregations
    for user in ("u1", "u2", "nobody"):
        served = server.get_features("test", "spending", {"user_id": user})["result"]["features"]
        for agg, value in zip(aggregations, served, strict=True):
            expected = feature_value(history, (user,), t_ms, agg.function, agg.window_ms, interval)
            if agg.output_dtype == "int64":
                assert value == str(expected), agg.name
            else:
                assert close(value, expected), (agg.name, value, expected)


def test_response_shape_types_and_statuses() -> None:
    spec = spending_workspace()
    t_ms = BASE + HOUR
    server, _ = server_for(spec, EVENTS, t_ms)
    response = server.get_features("test", "spending", {"user_id": "alice"}, ALL_OPTIONS)
    # 1 m window: only the 30.0 event; 1 h window: all three.
    assert response["result"]["features"] == ["1", 30.0, 30.0, "3", 60.0, 20.0]
    meta = response["metadata"]["features"]
    assert [m["name"] for m in meta] == [f"{VIEW}.{a.name}" for a in spec.view(VIEW).aggregations]
    assert [m["dataType"] for m in meta] == [{"type": t} for t in ("int64", "float64", "float64") * 2]
    assert {m["status"] for m in meta} == {"PRESENT"}
    assert {m["effectiveTime"] for m in meta} == {format_time_ms(t_ms)}

    bob = server.get_features("test", "spending", {"user_id": "bob"}, ALL_OPTIONS)
    assert bob["result"]["features"] == ["0", None, None, "1", 7.5, 7.5]
    assert [m["status"] for m in bob["metadata"]["features"]] == ["MISSING_DATA"] * 3 + ["PRESENT"] * 3


def test_metadata_is_only_names_unless_asked() -> None:
    server, _ = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    meta = server.get_features("test", "spending", {"user_id": "alice"})["metadata"]["features"]
    assert all(set(m) == {"name"} for m in meta)
    snake = server.get_features("test", "spending", {"user_id": "alice"}, {"include_serving_status": True})
    assert all(set(m) == {"name", "status"} for m in snake["metadata"]["features"])


def test_interval_mode_effective_time_is_the_last_complete_interval() -> None:
    interval = 10 * MINUTE
    spec = spending_workspace(interval_ms=interval)
    t_ms = BASE + HOUR + 7 * MINUTE + 123  # E = BASE + 1 h
    server, _ = server_for(spec, [*EVENTS, Event(("alice",), BASE + HOUR + MINUTE, 99.0)], t_ms)
    response = server.get_features("test", "spending", {"user_id": "alice"}, ALL_OPTIONS)
    assert {m["effectiveTime"] for m in response["metadata"]["features"]} == {format_time_ms(BASE + HOUR)}
    assert format_time_ms(BASE + HOUR).endswith(":00:00.000Z")
    # The event after E is not counted yet (incomplete interval); the three before it are (1 h window).
    assert response["result"]["features"][:3] == ["3", 60.0, 20.0]


def test_the_clock_is_read_per_request() -> None:
    server, clock = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    assert server.get_features("test", "spending", {"user_id": "alice"})["result"]["features"][0] == "1"
    clock.t_ms = BASE + 3 * HOUR
    assert server.get_features("test", "spending", {"user_id": "alice"})["result"]["features"][3] == "0"


def test_missing_join_key_names_it_and_the_required_keys() -> None:
    server, _ = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    with pytest.raises(InvalidRequestError, match=r"missing join key 'user_id'.*requires: user_id"):
        server.get_features("test", "spending", {"userid": "alice"})


def test_unknown_service_and_workspace_list_the_known_ones() -> None:
    server, _ = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    with pytest.raises(NotFoundError, match=r"'nope'.*known: spending"):
        server.get_features("test", "nope", {"user_id": "alice"})
    with pytest.raises(NotFoundError, match=r"workspace named 'prod'.*known: test"):
        server.get_features("prod", "spending", {"user_id": "alice"})


def test_batch_answers_each_row_at_one_time() -> None:
    server, _ = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    response = server.get_features_batch(
        "test", "spending", [{"user_id": "alice"}, {"user_id": "bob"}], {"includeServingStatus": True}
    )
    rows = response["result"]
    assert [row["features"][3] for row in rows] == ["3", "1"]
    assert rows[1]["metadata"]["features"][0] == {"status": "MISSING_DATA"}
    assert len(response["metadata"]["features"]) == 6


def test_metadata_lists_join_keys_and_features() -> None:
    server, _ = server_for(spending_workspace(), EVENTS, BASE + HOUR)
    meta = server.metadata("test", "spending")
    assert meta["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]
    assert meta["featureValues"][0] == {"name": f"{VIEW}.amount_count_1m_continuous", "dataType": {"type": "int64"}}


def test_int64_join_keys_accept_strings() -> None:
    base = spending_workspace()
    spec = dataclasses.replace(base, entities=(EntitySpec("user", (FieldSpec("user_id", "int64"),)),))
    store = MemoryStore()
    view = CompiledView.compile(spec.view(VIEW), ["int64"])
    name = online_view_name("test", VIEW)
    store.write([(store_key(name, tile_key(view.entity_key([42]), BASE)), encode_partials([1, 5.0, [5.0, 1]] * 2))])
    specs = {"test": spec}
    server = FeatureServer(lambda: specs, store, Clock(BASE + 30_000))
    assert server.get_features("test", "spending", {"user_id": "42"})["result"]["features"][0] == "1"
    with pytest.raises(InvalidRequestError, match="must be an integer"):
        server.get_features("test", "spending", {"user_id": "forty-two"})


def test_workspaces_with_the_same_view_names_do_not_mix() -> None:
    prod, staging = spending_workspace(name="prod"), spending_workspace(name="staging")
    store = MemoryStore()
    load(store, prod, EVENTS)
    specs = {"prod": prod, "staging": staging}
    server = FeatureServer(lambda: specs, store, Clock(BASE + HOUR))
    assert server.get_features("prod", "spending", {"user_id": "alice"})["result"]["features"][3] == "3"
    assert server.get_features("staging", "spending", {"user_id": "alice"})["result"]["features"][3] == "0"


def test_plans_compile_once_per_spec_object(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    original = tiles_module.CompiledView.compile.__func__  # type: ignore[attr-defined]

    def counting(cls: type[CompiledView], spec: object, dtypes: Sequence[str]) -> CompiledView:
        compiled.append(getattr(spec, "name", "?"))
        return original(cls, spec, dtypes)  # type: ignore[no-any-return]

    monkeypatch.setattr(tiles_module.CompiledView, "compile", classmethod(counting))
    specs = {"test": spending_workspace()}
    server = FeatureServer(lambda: specs, MemoryStore(), Clock(BASE))
    for _ in range(5):
        server.get_features("test", "spending", {"user_id": "alice"})
    assert compiled == [VIEW]
    specs["test"] = dataclasses.replace(specs["test"], version=2)  # what a registry update does
    server.get_features("test", "spending", {"user_id": "alice"})
    assert compiled == [VIEW, VIEW]


def test_arrays_of_int64_are_served_as_tecton_serves_them() -> None:
    """first/last(n) of an int64 column: an array whose elements are strings, typed
    ``{"type": "array", "elementType": {"type": "int64"}}``; ``last`` of floats stays a number."""
    from featurebus.schemas.specs import AggregationSpec

    base = spending_workspace()
    view = dataclasses.replace(
        base.view(VIEW),
        aggregations=(
            AggregationSpec("amount_last_2_1h_continuous", "last_n", "amount", "int64", HOUR, "array<int64>", n=2),
            AggregationSpec("amount_last_1h_continuous", "last", "amount", "float64", HOUR, "float64"),
        ),
    )
    names = tuple(a.name for a in view.aggregations)
    spec = dataclasses.replace(
        base,
        stream_feature_views=(view,),
        feature_services=(
            dataclasses.replace(
                base.feature_services[0],
                selections=(dataclasses.replace(base.feature_services[0].selections[0], features=names),),
            ),
        ),
    )
    store = MemoryStore()
    name = online_view_name(spec.name, VIEW)
    compiled = CompiledView.compile(view, ["string"])
    entity = compiled.entity_key(["u1"])
    store.write(
        [
            (
                store_key(name, tile_key(entity, BASE + 5)),
                encode_partials([[[BASE + 5, 2**60], [BASE + 5, 7]], [[BASE + 5, 1.5]]]),
            )
        ]
    )
    specs = {spec.name: spec}
    server = FeatureServer(lambda: specs, store, Clock(BASE + MINUTE))
    answer = server.get_features(spec.name, "spending", {"user_id": "u1"}, ALL_OPTIONS)
    assert answer["result"]["features"] == [[str(2**60), "7"], 1.5]
    assert answer["metadata"]["features"][0]["dataType"] == {"type": "array", "elementType": {"type": "int64"}}
