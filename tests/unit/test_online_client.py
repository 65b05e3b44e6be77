"""``get_online_features`` from the SDK: one real HTTP request to the serving app (uvicorn on
127.0.0.1, over an in-memory store), with the key and URL from the environment."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn

from featurebus import Aggregate, Entity, FeatureService, Field, KafkaConfig, StreamSource, stream_feature_view
from featurebus.exceptions import InvalidRequestError
from featurebus.online_client import FeatureVector, OnlineReadError, get_online_features
from featurebus.platform.kv import MemoryStore
from featurebus.serving.app import create_app
from featurebus.serving.service import VIEW_SERVICE_PREFIX, FeatureServer
from featurebus.types import Float64, String, Timestamp
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_http import READER, _keys
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load

# SDK objects named as the served workspace's (tests.support.specs): only their names travel.
user = Entity(name="user", join_keys=[Field("user_id", String)])
transactions = StreamSource(
    name="transactions",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="transactions", timestamp_field="ts"),
)


@stream_feature_view(
    source=transactions,
    entities=[user],
    mode="pandas",
    features=[Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("amount", Float64))],
)
def user_spending(transactions):  # type: ignore[no-untyped-def]
    return transactions


spending = FeatureService(name="spending", features=[user_spending])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    spec = spending_workspace()
    store = MemoryStore()
    load(store, spec, EVENTS)
    app = create_app(FeatureServer(lambda: {"test": spec}, store, Clock(BASE + HOUR)), _keys())
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the serving app did not start"
        time.sleep(0.02)
    monkeypatch.setenv("FEATUREBUS_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FEATUREBUS_API_KEY", READER)
    monkeypatch.setenv("FEATUREBUS_WORKSPACE", "test")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_service_answers_as_the_http_api_with_int64_decoded(served: str) -> None:
    vector = spending.get_online_features(join_keys={"user_id": "alice"})
    assert isinstance(vector, FeatureVector)
    # The HTTP answer is ["1", 30.0, 30.0, "3", 60.0, 20.0] (int64 as strings, Tecton's encoding).
    assert vector.to_dict() == {
        "user_spending.amount_count_1m_continuous": 1,
        "user_spending.amount_sum_1m_continuous": 30.0,
        "user_spending.amount_mean_1m_continuous": 30.0,
        "user_spending.amount_count_1h_continuous": 3,
        "user_spending.amount_sum_1h_continuous": 60.0,
        "user_spending.amount_mean_1h_continuous": 20.0,
    }
    frame = vector.to_pandas()
    assert len(frame) == 1 and frame["user_spending.amount_sum_1h_continuous"][0] == 60.0
    keyed = spending.get_online_features(join_keys={"user_id": "alice"}, include_join_keys_in_response=True)
    assert next(iter(keyed.to_dict().items())) == ("user_id", "alice")


def test_a_view_is_served_alone(served: str) -> None:
    vector = user_spending.get_online_features(join_keys={"user_id": "alice"})
    assert vector.to_dict()["user_spending.amount_count_1h_continuous"] == 3
    assert len(vector.values) == 6  # every feature of the served view


def test_errors_carry_the_servers_message(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OnlineReadError, match=r"404.*no feature view named 'nope'"):
        get_online_features(feature_view="nope", join_keys={"user_id": "alice"})
    monkeypatch.setenv("FEATUREBUS_API_KEY", "fbk_unknown")
    with pytest.raises(OnlineReadError, match="401"):
        spending.get_online_features(join_keys={"user_id": "alice"})
    monkeypatch.delenv("FEATUREBUS_API_KEY")
    with pytest.raises(InvalidRequestError, match="FEATUREBUS_API_KEY"):
        spending.get_online_features(join_keys={"user_id": "alice"})


def test_an_unreachable_server_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATUREBUS_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("FEATUREBUS_API_KEY", READER)
    with pytest.raises(OnlineReadError, match="featurebus up"):
        spending.get_online_features(join_keys={"user_id": "alice"}, request_data={"x": 1})


def test_the_view_service_prefix_is_the_training_sets() -> None:
    from featurebus.platform.training.ranges import view_service

    _, name = view_service(spending_workspace(), "user_spending")
    assert name == VIEW_SERVICE_PREFIX + "user_spending"


def test_an_applied_workspaces_objects_read_in_their_own_workspace(
    served: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from featurebus.workspace import Workspace

    monkeypatch.setenv("FEATUREBUS_WORKSPACE", "elsewhere")  # the workspace object's name wins
    workspace = Workspace(spending_workspace(), tmp_path)
    assert (
        workspace.get_feature_service("spending")
        .get_online_features(join_keys={"user_id": "alice"})
        .to_dict()["user_spending.amount_sum_1h_continuous"]
        == 60.0
    )
    assert (
        workspace.get_feature_view("user_spending").get_online_features(join_keys={"user_id": "alice"}).values[0] == 1
    )
