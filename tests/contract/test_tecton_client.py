"""The real ``tecton-client`` package, unchanged, against a live featurebus server on loopback:
users migrating from Tecton point their existing client at featurebus."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from tecton_client import MetadataOptions, RequestOptions, TectonClient
from tecton_client.exceptions import BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError

from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kv import MemoryStore
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.app import create_app
from featurebus.serving.main import wait_until_ready
from featurebus.serving.service import FeatureServer
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_http import OTHER, READER, _keys
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load


def described(spec: WorkspaceSpec) -> WorkspaceSpec:
    view = dataclasses.replace(spec.stream_feature_views[0], description="What each user spent")
    return dataclasses.replace(spec, stream_feature_views=(view,))


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    spec = described(spending_workspace())
    store = MemoryStore()
    load(store, spec, EVENTS)
    app = create_app(FeatureServer(lambda: {"test": spec}, store, Clock(BASE + HOUR)), _keys())
    port = free_port_pair()[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, timeout_s=20)
    yield url
    server.should_exit = True
    thread.join(10)


def test_get_features_and_get_features_dict(server_url: str) -> None:
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    response = client.get_features(
        feature_service_name="spending", join_key_map={"user_id": "alice"}, metadata_options=MetadataOptions.all()
    )
    assert response.result.features == ["1", 30.0, 30.0, "3", 60.0, 20.0]  # int64 as strings, on the wire
    values = response.get_features_dict()  # the client turns int64 strings back into ints
    assert values["user_spending.amount_count_1m_continuous"] == 1
    assert values["user_spending.amount_mean_1h_continuous"] == 20.0
    assert {f["status"] for f in response.metadata["features"]} == {"PRESENT"}


def test_a_missing_entity_is_missing_data_not_an_error(server_url: str) -> None:
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    response = client.get_features(
        feature_service_name="spending",
        join_key_map={"user_id": "nobody"},
        metadata_options=MetadataOptions(include_names=True, include_data_types=True),
    )
    assert response.get_features_dict()["user_spending.amount_count_1h_continuous"] == 0
    assert response.get_features_dict()["user_spending.amount_sum_1h_continuous"] is None


def test_feature_service_metadata(server_url: str) -> None:
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    metadata = client.get_feature_service_metadata(feature_service_name="spending")
    assert [k["name"] for k in metadata.input_join_keys] == ["user_id"]
    assert len(metadata.feature_values) == 6


def test_errors_arrive_as_the_clients_own_exceptions_with_our_message(server_url: str) -> None:
    with pytest.raises(UnauthorizedError):
        TectonClient(url=server_url, api_key="fbk_unknown", default_workspace_name="test").get_features(
            feature_service_name="spending", join_key_map={"user_id": "alice"}
        )
    with pytest.raises(ForbiddenError):
        TectonClient(url=server_url, api_key=OTHER, default_workspace_name="test").get_features(
            feature_service_name="spending", join_key_map={"user_id": "alice"}
        )
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    with pytest.raises(NotFoundError, match="no feature service named 'nope'"):
        client.get_features(feature_service_name="nope", join_key_map={"user_id": "alice"})
    with pytest.raises(BadRequestError, match="user_id"):
        client.get_features(feature_service_name="spending", join_key_map={"account": "a"})


def test_every_metadata_option_request_option_and_partial_results_as_the_client_sends_them(server_url: str) -> None:
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    response = client.get_features(
        feature_service_name="spending",
        join_key_map={"user_id": "alice"},
        metadata_options=MetadataOptions.all(),
        request_options=RequestOptions(
            read_from_cache=False,
            write_to_cache=False,
            latency_budget_ms=100,
            ignore_extra_request_context_fields=True,
            coerce_null_counts_to_zero=True,
        ),
        allow_partial_results=True,
    )
    features = response.metadata["features"]
    assert [f["name"] for f in features][:2] == [
        "user_spending.amount_count_1m_continuous",
        "user_spending.amount_sum_1m_continuous",
    ]
    assert all(f["description"] == "What each user spent" and f["tags"] == {} for f in features)
    assert all(f["dataType"]["type"] in ("int64", "float64") and f["effectiveTime"].endswith("Z") for f in features)
    slo = response.slo_info  # parsed by the client from metadata.sloInfo
    assert slo is not None and slo.slo_eligible is True and slo.slo_ineligibility_reasons is None
    assert 0 < slo.store_max_latency <= slo.server_time_seconds == slo.slo_server_time_seconds < 1


def test_without_metadata_options_there_are_names_but_no_slo_info(server_url: str) -> None:
    client = TectonClient(url=server_url, api_key=READER, default_workspace_name="test")
    response = client.get_features(feature_service_name="spending", join_key_map={"user_id": "bob"})
    assert response.slo_info is None
    assert set(response.metadata["features"][0]) == {"name"}
