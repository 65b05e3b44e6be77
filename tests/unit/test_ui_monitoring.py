"""The web UI's alerts, workspaces and serving pages over the real monitoring routes (the same
construction as test_alert_routes.py: in-memory stores, a real evaluator history server), fed the
real serving exporter's text: the pages read exactly the routes' shapes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

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
from featurebus.serving.control.ui.monitoring_shapes import (
    Series,
    ShapeError,
    alert_rows,
    counter_rate,
    freshness_rows,
    history_series,
)
from featurebus.serving.request_metrics import RequestStats
from tests.support.control import ControlFixture, control_fixture
from tests.support.specs import spending_workspace

RULE = "a.user_spending.freshness"
GET_FEATURES = "/api/v1/feature-service/get-features"


def _serve(stats: RequestStats, count: int, endpoint: str, service: str, status: str = "200") -> None:
    for _ in range(count):
        stats.requests.observe((endpoint, "a", service, status), 0.004)


@pytest.fixture
def ui() -> Iterator[tuple[ControlFixture, TestClient]]:
    control = control_fixture()
    spec = spending_workspace(name="a")
    [view] = spec.stream_feature_views
    view = dataclasses.replace(view, monitoring=ViewMonitoringSpec(True, 60_000, ("oncall@example.com",)))
    applied = apply_workspace(control.registry, dataclasses.replace(spec, stream_feature_views=(view,)))
    [rule] = [r for r in workspace_rules(applied) if r.name == RULE]
    states = MemoryAlertStateStore()
    states.put(step(rule, None, 95.0, 1_700_000_000_000))  # firing since then
    # two scrapes of the real serving exporter, 10 s apart: 30 lookups (3 of them failing) and
    # 20 ingest requests in between
    stats, exporter = RequestStats(), CollectorRegistry()
    exporter.register(stats)
    history = MetricHistory()
    now_ms = int(time.time() * 1000)
    _serve(stats, 10, GET_FEATURES, "user_spending")
    _serve(stats, 5, "/ingest", "")
    history.record("serving", parse_samples(generate_latest(exporter).decode()), now_ms - 10_000)
    _serve(stats, 27, GET_FEATURES, "user_spending")
    _serve(stats, 3, GET_FEATURES, "user_spending", "500")
    _serve(stats, 20, "/ingest", "")
    freshness = (
        'featurebus_feature_freshness_seconds{workspace="a",feature_view="user_spending"} 95\n'
        'featurebus_feature_partition_freshness_seconds{workspace="a",feature_view="user_spending",partition="0"} 95\n'
    )
    history.record("serving", parse_samples(generate_latest(exporter).decode() + freshness), now_ms)
    server = MonitorServer(history, 0).start()
    monitoring = Monitoring(
        control.registry, control.plane.guard, lambda: states, MemoryAlertAcks, f"http://127.0.0.1:{server.port}"
    )
    try:
        yield control, TestClient(create_control_app(control.plane, monitoring=monitoring))
    finally:
        server.close()


def _signed_in(client: TestClient, control: ControlFixture, principal: str) -> TestClient:
    answer = client.post("/ui/login", data={"key": control.secrets[principal]}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def test_the_alerts_page_lists_the_firing_rule_and_an_operator_acknowledges_it(
    ui: tuple[ControlFixture, TestClient],
) -> None:
    control, client = ui
    viewer = _signed_in(TestClient(client.app), control, "p-viewer").get("/ui/w/a/alerts").text
    assert (
        'class="alert state-firing"' in viewer
        and RULE in viewer
        and "<td>95</td>" in viewer
        and "<td>60</td>" in viewer
    )
    assert "2023-11-14T22:13:20" in viewer  # since_ms 1_700_000_000_000
    assert 'class="ack"' not in viewer  # a viewer may not acknowledge
    operator = _signed_in(client, control, "p-operator")
    assert 'class="ack"' in operator.get("/ui/w/a/alerts").text
    acked = operator.post(f"/ui/w/a/alerts/{RULE}/ack")
    assert acked.status_code == 200 and f"Alert {RULE} acknowledged." in acked.text
    page = operator.get("/ui/w/a/alerts").text
    assert "by p-operator" in page and 'class="ack"' not in page
    again = _signed_in(TestClient(client.app), control, "p-viewer").post(f"/ui/w/a/alerts/{RULE}/ack")
    assert "REFUSED" in again.text


def test_the_workspaces_page_counts_firing_alerts_and_the_stalest_view(ui: tuple[ControlFixture, TestClient]) -> None:
    control, client = ui
    page = _signed_in(client, control, "p-viewer").get("/ui/workspaces").text
    assert "1 firing" in page and "95s (user_spending, stale)" in page


def test_the_serving_page_charts_rates_from_the_counters_and_the_exported_gauges(
    ui: tuple[ControlFixture, TestClient],
) -> None:
    control, client = ui
    page = _signed_in(client, control, "admin").get("/ui/serving").text
    assert "a · user_spending" in page and "a · ingestion" in page
    # 30 lookups in 10 s, 3 of them under a status first exported at the second scrape
    assert "requests/s: max 3, last 3<" in page
    assert "ingested requests/s: max 2, last 2<" in page  # 20 ingest requests in 10 s
    assert "error ratio: max 0.1, last 0.1<" in page  # 3 of the 30 lookups since the first scrape failed
    assert "p99 latency (ms): max 5, last 5<" in page  # 4 ms answers: the 5 ms bucket
    assert "No p50 is shown" in page


def test_shapes_are_read_exactly_and_other_shapes_are_refused() -> None:
    with pytest.raises(ShapeError, match="'alerts'"):
        alert_rows([{"rule": "x"}])
    with pytest.raises(ShapeError, match="state 'FIRING'"):
        alert_rows({"alerts": [{"rule": "x", "kind": "freshness", "target": "v", "threshold": 1, "state": "FIRING"}]})
    with pytest.raises(ShapeError, match="'freshness_seconds'"):
        freshness_rows({"views": [{"feature_view": "v", "partitions": {}, "ageSeconds": 3}]})
    with pytest.raises(ShapeError, match="not \\[ms, value\\]"):
        history_series({"series": [{"component": "s", "metric": "m", "labels": {}, "points": [{"t": 1, "v": 2}]}]})


def test_a_counter_rate_survives_a_process_restart() -> None:
    restarted = Series("serving", "featurebus_serving_requests_total", {}, [(0, 10.0), (10_000, 30.0), (20_000, 5.0)])
    assert counter_rate([restarted]) == [(10_000.0, 2.0), (20_000.0, 0.5)]
    appeared = Series("serving", "featurebus_serving_requests_total", {}, [(20_000, 4.0)])
    assert counter_rate([restarted, appeared]) == [(10_000.0, 2.0), (20_000.0, 0.9)]
