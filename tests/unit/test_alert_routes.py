"""The control plane's monitoring routes over in-memory stores and a real evaluator history
server: who may read and acknowledge alerts, the freshness per view, the filtered history."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from featurebus.platform.control.monitoring import Monitoring
from featurebus.platform.monitoring.acks import MemoryAlertAcks
from featurebus.platform.monitoring.alerts import step
from featurebus.platform.monitoring.history import MetricHistory
from featurebus.platform.monitoring.monitor_http import MonitorServer
from featurebus.platform.monitoring.scrape import parse_samples
from featurebus.platform.monitoring.state_store import MemoryAlertStateStore
from featurebus.platform.monitoring.workspace_rules import workspace_rules
from featurebus.platform.registry import apply_workspace
from featurebus.schemas.specs import ViewMonitoringSpec
from featurebus.serving.control.app import create_control_app
from tests.support.control import ControlFixture, control_fixture
from tests.support.specs import spending_workspace

RULE = "a.user_spending.freshness"


@pytest.fixture
def fixture() -> Iterator[tuple[ControlFixture, TestClient]]:
    control = control_fixture()
    spec = spending_workspace(name="a")
    [view] = spec.stream_feature_views
    view = dataclasses.replace(view, monitoring=ViewMonitoringSpec(True, 60_000, ("oncall@example.com",)))
    applied = apply_workspace(control.registry, dataclasses.replace(spec, stream_feature_views=(view,)))
    [rule] = [r for r in workspace_rules(applied) if r.name == RULE]
    states = MemoryAlertStateStore()
    states.put(step(rule, None, 95.0, 1_700_000_000_000))  # firing since then
    history = MetricHistory()
    now_ms = int(time.time() * 1000)
    history.record(
        "serving",
        parse_samples(
            'featurebus_feature_freshness_seconds{workspace="a",feature_view="user_spending"} 95\n'
            'featurebus_feature_partition_freshness_seconds{workspace="a",feature_view="user_spending",partition="0"} 95\n'
            'featurebus_feature_partition_freshness_seconds{workspace="a",feature_view="user_spending",partition="1"} 3\n'
            'featurebus_feature_freshness_seconds{workspace="b",feature_view="user_spending"} 1\n'
        ),
        now_ms,
    )
    server = MonitorServer(history, 0).start()
    monitoring = Monitoring(
        control.registry, control.plane.guard, lambda: states, MemoryAlertAcks, f"http://127.0.0.1:{server.port}"
    )
    try:
        with TestClient(create_control_app(control.plane, monitoring=monitoring)) as client:
            yield control, client
    finally:
        server.close()


def test_viewers_read_the_alerts_and_strangers_do_not(fixture: tuple[ControlFixture, TestClient]) -> None:
    control, client = fixture
    answer = client.get("/workspaces/a/alerts", headers=control.auth("p-viewer"))
    assert answer.status_code == 200
    alerts = {a["rule"]: a for a in answer.json()["alerts"]}
    assert set(alerts) == {RULE, "a.user_spending.data_quality"}  # the view is offline, data quality on
    assert alerts["a.user_spending.data_quality"]["state"] == "ok"
    alert = alerts[RULE]
    assert alert["rule"] == RULE and alert["state"] == "firing" and alert["value"] == 95.0
    assert alert["threshold"] == 60.0 and alert["since_ms"] == 1_700_000_000_000 and alert["acked"] is False
    assert client.get("/v1/workspaces/a/alerts", headers=control.auth("p-viewer")).json() == answer.json()
    assert client.get("/workspaces/a/alerts", headers=control.auth("p-none")).status_code == 403
    assert client.get("/workspaces/a/alerts").status_code == 401


def test_operators_acknowledge_a_firing_alert(fixture: tuple[ControlFixture, TestClient]) -> None:
    control, client = fixture
    url = f"/workspaces/a/alerts/{RULE}/ack"
    assert client.post(url, headers=control.auth("p-consumer")).status_code == 403
    acked = client.post(url, headers=control.auth("p-operator"))
    assert acked.status_code == 200 and acked.json()["acked_by"] == "p-operator"
    [alert] = [
        a
        for a in client.get("/workspaces/a/alerts", headers=control.auth("p-viewer")).json()["alerts"]
        if a["rule"] == RULE
    ]
    assert alert["acked"] is True
    unknown = client.post("/workspaces/a/alerts/a.nothing/ack", headers=control.auth("p-operator"))
    assert unknown.status_code == 404 and "no alert rule" in unknown.json()["message"]


def test_freshness_per_view_and_partition(fixture: tuple[ControlFixture, TestClient]) -> None:
    control, client = fixture
    [view] = client.get("/workspaces/a/freshness", headers=control.auth("p-viewer")).json()["views"]
    assert view == {
        "feature_view": "user_spending",
        "freshness_seconds": 95.0,
        "partitions": {"0": 95.0, "1": 3.0},
        "threshold_seconds": 60.0,
        "monitored": True,
    }


def test_history_shows_only_the_callers_workspaces(fixture: tuple[ControlFixture, TestClient]) -> None:
    control, client = fixture
    params = {"metric": "featurebus_feature_freshness_seconds"}
    mine = client.get("/metrics/history", params=params, headers=control.auth("p-viewer")).json()["series"]
    assert {s["labels"]["workspace"] for s in mine} == {"a"}
    answer = client.get("/metrics/history", params=params, headers=control.auth("admin")).json()
    assert {s["labels"]["workspace"] for s in answer["series"]} == {"a", "b"}
    [[_, total]] = answer["points"]  # one scrape: the sum of both series, for a chart
    assert total == 96.0
    metrics = client.get("/metrics", headers=control.auth("admin"))
    assert metrics.status_code == 200
    assert 'featurebus_control_requests_total{method="GET",route="/metrics/history",status="200"}' in metrics.text


def test_an_alert_that_fired_and_cleared_is_resolved_and_one_that_never_fired_is_ok() -> None:
    [rule] = [
        r
        for r in workspace_rules(
            dataclasses.replace(
                spending_workspace(name="a"),
                stream_feature_views=tuple(
                    dataclasses.replace(v, monitoring=ViewMonitoringSpec(True, 60_000))
                    for v in spending_workspace(name="a").stream_feature_views
                ),
            )
        )
        if r.kind.value == "freshness"
    ]
    quiet = step(rule, None, 5.0, 1_000)
    fired = step(rule, quiet, 95.0, 2_000)
    cleared = step(rule, fired, 5.0, 3_000)
    assert Monitoring._document(rule, quiet, None)["state"] == "ok"
    assert Monitoring._document(rule, fired, None)["state"] == "firing"
    document = Monitoring._document(rule, cleared, None)
    assert document["state"] == "resolved" and document["resolved"] == "1970-01-01T00:00:03.000000Z"
    assert step(rule, cleared, 95.0, 4_000).resolved_ms is None  # firing again: no longer resolved
