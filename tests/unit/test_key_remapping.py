"""Key remapping (Tecton's ``with_name`` / ``with_join_key_map``): one view joined twice, served
online under the mapped join keys and names, trained from the spine's mapped columns, online equal
to offline; bad references fail plan with the reference's file:line and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from featurebus import FeatureService
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError, InvalidRequestError
from featurebus.platform.kv import MemoryStore
from featurebus.platform.offline.store import open_store, write_partition
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.service import FeatureServer
from tests.support import remap_repo
from tests.support.remap_repo import SPEC
from tests.unit.test_realtime_serving import BASE, EVENTS, MINUTE, NOW, Clock, load

# alice: 3 events (60.0) in the hour before NOW; bob: 1 event, an hour before: outside it.


def _server() -> FeatureServer:
    store = MemoryStore()
    load(store, SPEC, EVENTS)
    return FeatureServer(lambda: {SPEC.name: SPEC}, store, Clock(NOW))


def _named(result: dict[str, Any]) -> dict[str, Any]:
    names = [m["name"] for m in result["metadata"]["features"]]
    return dict(zip(names, result["result"]["features"], strict=True))


def test_a_view_joined_twice_is_served_under_its_names_and_mapped_keys() -> None:
    result = _server().get_features(
        "remap", "transfers", {"sender_id": "alice", "recipient_id": "carol", "user_id": "alice"}
    )
    assert _named(result) == {
        "sender.amount_count_1h_continuous": "3",
        "sender.amount_sum_1h_continuous": 60.0,
        "sender.amount_mean_1h_continuous": 20.0,
        "recipient.amount_count_1h_continuous": "0",
        "user_spending.amount_count_1h_continuous": "3",
    }
    swapped = _server().get_features(
        "remap", "transfers", {"sender_id": "carol", "recipient_id": "alice", "user_id": "carol"}
    )
    assert _named(swapped)["recipient.amount_count_1h_continuous"] == "3"
    assert _named(swapped)["sender.amount_count_1h_continuous"] == "0"


def test_metadata_lists_the_remapped_join_keys() -> None:
    meta = _server().metadata("remap", "transfers")
    keys = [k["name"] for k in meta["inputJoinKeys"]]
    assert keys == ["sender_id", "recipient_id", "user_id"]
    names = [f["name"] for f in meta["featureValues"]]
    assert names[0] == "sender.amount_count_1h_continuous" and "recipient.amount_count_1h_continuous" in names


def test_a_request_without_a_mapped_key_names_it() -> None:
    with pytest.raises(InvalidRequestError, match="recipient_id"):
        _server().get_features("remap", "transfers", {"sender_id": "alice", "user_id": "alice"})


def test_realtime_views_read_the_view_twice() -> None:
    result = _server().get_features(
        "remap",
        "transfers_rt",
        {"sender_id": "alice", "recipient_id": "bob"},
        request_context_map={"amount": 8.0},
    )
    assert _named(result) == {
        "flow.net": -60.0,  # recipient bob: 0 in the hour; sender alice: 60
        "pair.events_between": "3",
        "pair.amount_share": 2.0,
        "sender.amount_count_1h_continuous": "3",
    }


def _offline(tmp: Path, spine: pd.DataFrame, service: str) -> pd.DataFrame:
    root = tmp / "offline"
    open_store(root)
    frame = pd.DataFrame(
        {
            "user_id": [e[0] for e in EVENTS],
            "amount": [e[2] for e in EVENTS],
            "ts": pd.to_datetime([e[1] for e in EVENTS], unit="ms", utc=True),
        }
    )
    write_partition(root, SPEC.name, SPEC.source("transactions"), "transactions", 0, frame, np.arange(len(EVENTS)))
    return get_features_for_events(SPEC, service, spine, root)


def _spine(times: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sender_id": ["alice", "carol", "bob", "alice"],
            "recipient_id": ["carol", "alice", "alice", "bob"],
            "user_id": ["bob", "alice", "carol", "alice"],
            "amount": [8.0, 1.0, 3.0, 0.0],
            "ts": pd.to_datetime(times, unit="ms", utc=True),
        }
    )


def test_training_columns_follow_tecton_naming_and_equal_serving(tmp_path: Path) -> None:
    times = [NOW, NOW, BASE + 30 * MINUTE, BASE + 55 * MINUTE]
    spine = _spine(times)
    offline = _offline(tmp_path, spine, "transfers")
    assert list(offline.columns)[len(spine.columns) :] == [
        "sender__amount_count_1h_continuous",
        "sender__amount_sum_1h_continuous",
        "sender__amount_mean_1h_continuous",
        "recipient__amount_count_1h_continuous",
        "user_spending__amount_count_1h_continuous",
    ]
    assert offline["sender__amount_count_1h_continuous"].tolist() == [3, 0, 1, 2]
    assert offline["recipient__amount_count_1h_continuous"].tolist() == [0, 3, 1, 1]
    assert offline["user_spending__amount_count_1h_continuous"].tolist() == [0, 3, 0, 2]
    for i, t_ms in enumerate(times):
        store = MemoryStore()
        load(store, SPEC, [e for e in EVENTS if e[1] < t_ms])
        server = FeatureServer(lambda: {SPEC.name: SPEC}, store, Clock(t_ms))
        row = spine.iloc[i]
        online = _named(
            server.get_features(
                "remap",
                "transfers",
                {"sender_id": row.sender_id, "recipient_id": row.recipient_id, "user_id": row.user_id},
            )
        )
        for name, value in online.items():
            column = name.replace(".", "__")
            expected = offline[column].iloc[i]
            if pd.isna(expected):
                assert value is None, (column, i)
            elif isinstance(value, str):
                assert value == str(int(expected)), (column, i)
            else:
                assert value == pytest.approx(float(expected)), (column, i)


def test_training_realtime_views_over_a_view_joined_twice(tmp_path: Path) -> None:
    spine = _spine([NOW, NOW, NOW, NOW])
    offline = _offline(tmp_path, spine, "transfers_rt")
    assert offline["flow__net"].tolist() == [-60.0, 60.0, 60.0, -60.0]
    assert offline["pair__events_between"].tolist() == [3, 3, 3, 3]
    assert offline["sender__amount_count_1h_continuous"].tolist() == [3, 0, 0, 3]


def test_the_spine_must_carry_the_mapped_columns(tmp_path: Path) -> None:
    spine = _spine([NOW] * 4).drop(columns=["recipient_id"])
    with pytest.raises(InvalidRequestError, match=r"\['recipient_id'\].*with_join_key_map"):
        _offline(tmp_path, spine, "transfers")


def _compile(*extra: Any) -> WorkspaceSpec:
    return compile_workspace("remap", [*remap_repo.OBJECTS, *extra])


def test_a_map_naming_a_key_the_view_lacks_fails_plan_with_file_line_and_fix() -> None:
    line = _line_after()
    bad = FeatureService(name="bad", features=[remap_repo.user_spending.with_join_key_map({"account_id": "x"})])
    with pytest.raises(DefinitionError) as caught:
        _compile(bad)
    message = str(caught.value)
    assert f"test_key_remapping.py:{line}" in message
    assert "'account_id', which is not a join key of 'user_spending' (its join keys: user_id)" in message
    assert "with_join_key_map({'user_id': 'sender_id'})" in message


def test_two_references_producing_the_same_columns_fail_plan() -> None:
    line = _line_after()
    twice = FeatureService(
        name="twice",
        features=[
            remap_repo.user_spending.with_join_key_map({"user_id": "sender_id"}),
            remap_repo.user_spending.with_join_key_map({"user_id": "recipient_id"}),
        ],
    )
    with pytest.raises(DefinitionError) as caught:
        _compile(twice)
    message = str(caught.value)
    assert "both produce the feature 'user_spending.amount_count_1h_continuous'" in message
    assert f"test_key_remapping.py:{line + 3}" in message  # the second reference's line
    assert ".with_name(" in message


def test_bad_arguments_fail_where_they_are_written() -> None:
    with pytest.raises(DefinitionError, match=r"with_name\('not a name'\) is not a valid name"):
        remap_repo.user_spending.with_name("not a name")
    with pytest.raises(DefinitionError, match="must be a non-empty dict"):
        remap_repo.user_spending.with_join_key_map({})
    with pytest.raises(DefinitionError, match="'user', which is not a join key"):
        _compile(FeatureService(name="x", features=[remap_repo.user_spending.with_join_key_map({"user": "a"})]))


def test_a_view_listed_twice_in_a_realtime_view_needs_a_name() -> None:
    from featurebus import Calculation, RealtimeFeatureView

    with pytest.raises(DefinitionError, match=r"both named \['user_spending'\].*with_name"):
        RealtimeFeatureView(
            name="dup",
            sources=[
                remap_repo.user_spending.with_join_key_map({"user_id": "sender_id"}),
                remap_repo.user_spending,
            ],
            features=[Calculation(name="c", expr="1")],
        )


def test_specs_round_trip_with_references() -> None:
    again = WorkspaceSpec.from_json(SPEC.to_json())
    assert again == SPEC
    assert re.search(rb'"join_key_map":\[\["user_id","sender_id"\]\]', SPEC.to_json())


def _line_after() -> int:
    import sys

    return sys._getframe(1).f_lineno + 1


def test_feature_tables_and_realtime_views_take_references() -> None:
    from featurebus.schemas.specs import FeatureSelectionSpec
    from tests.support import table_repo

    table = table_repo.user_scores
    service = FeatureService(
        name="referee",
        features=[table.with_name("referee").with_join_key_map({"user_id": "referee_id"})[["score"]], table],
    )
    spec = table_repo.table_workspace("tables", service)
    assert spec.service("referee").selections[0] == FeatureSelectionSpec(
        "user_scores", ("score",), "referee", (("user_id", "referee_id"),)
    )
    renamed = FeatureService(name="renamed", features=[remap_repo.flow.with_name("money_flow")])
    assert _compile(renamed).service("renamed").selections[0].namespace == "money_flow"
    with pytest.raises(DefinitionError, match="with_join_key_map on realtime feature view 'flow'"):
        _compile(FeatureService(name="bad", features=[remap_repo.flow.with_join_key_map({"user_id": "x"})]))


def test_a_renamed_realtime_view_is_served_and_trained_under_its_name(tmp_path: Path) -> None:
    spec = _compile(FeatureService(name="renamed", features=[remap_repo.flow.with_name("money_flow")]))
    store = MemoryStore()
    load(store, spec, EVENTS)
    server = FeatureServer(lambda: {spec.name: spec}, store, Clock(NOW))
    answer = server.get_features(
        "remap", "renamed", {"sender_id": "bob", "recipient_id": "alice"}, request_context_map={"amount": 1.0}
    )
    assert _named(answer) == {"money_flow.net": 60.0}
    root = tmp_path / "offline"
    open_store(root)
    spine = _spine([NOW] * 4)
    assert "money_flow__net" in get_features_for_events(spec, "renamed", spine, root).columns


def test_one_name_for_two_different_references_fails_plan() -> None:
    other_sender = remap_repo.user_spending.with_name("sender").with_join_key_map({"user_id": "payer_id"})
    clash = FeatureService(name="clash", features=[remap_repo.flow, other_sender[["amount_count_1h_continuous"]]])
    with pytest.raises(DefinitionError, match=r"FeatureService 'clash' \(.*test_key_remapping.py:\d+\): .*'sender'"):
        _compile(clash)
