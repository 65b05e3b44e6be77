"""Serving counts every request, errors included, by endpoint, workspace, service and status; times
the online-store read apart; and exports the recent error ratio and p99 the alert rules watch.
The job runner's failure series count failed materializations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from featurebus.platform.jobs.job_metrics import failure_counts
from featurebus.platform.kv import MemoryStore
from featurebus.schemas.jobs import Job, JobKind, JobState
from featurebus.serving.app import create_app
from featurebus.serving.service import FeatureServer
from tests.support.specs import HOUR, spending_workspace
from tests.unit.test_serving_http import READER, URL, _auth, _body, _keys
from tests.unit.test_serving_service import BASE, EVENTS, Clock, load


@pytest.fixture
def serving() -> Iterator[TestClient]:
    spec = spending_workspace()
    store = MemoryStore()
    load(store, spec, EVENTS)
    specs = {"test": spec}
    app = create_app(FeatureServer(lambda: specs, store, Clock(BASE + HOUR)), _keys())
    with TestClient(app) as client:
        yield client


def _value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no series {line_start} in\n{text}")


def test_requests_and_errors_by_endpoint_workspace_service_and_status(serving: TestClient) -> None:
    labels = (
        'endpoint="/api/v1/feature-service/get-features",feature_service="{service}",status="{status}",workspace="test"'
    )
    before = serving.get("/metrics", headers=_auth(READER)).text

    def count(text: str, name: str, service: str, status: int) -> float:
        try:
            return _value(text, f"{name}{{{labels.format(service=service, status=status)}}}")
        except AssertionError:
            return 0.0

    assert serving.post(URL, json=_body(), headers=_auth(READER)).status_code == 200
    assert serving.post(URL, json=_body(featureServiceName="nope"), headers=_auth(READER)).status_code == 404
    after = serving.get("/metrics", headers=_auth(READER)).text
    ok = "featurebus_serving_requests_total"
    assert count(after, ok, "spending", 200) == count(before, ok, "spending", 200) + 1
    assert count(after, ok, "nope", 404) == count(before, ok, "nope", 404) + 1
    errors = "featurebus_serving_errors_total"
    assert count(after, errors, "nope", 404) == count(before, errors, "nope", 404) + 1
    assert count(after, errors, "spending", 200) == 0
    assert count(after, "featurebus_serving_request_duration_seconds_count", "nope", 404) >= 1
    assert (
        _value(after, 'featurebus_serving_online_read_seconds_count{feature_service="spending",workspace="test"}') >= 1
    )
    ratio = _value(after, 'featurebus_serving_error_ratio{feature_service="nope",workspace="test"}')
    assert ratio == 1.0
    assert _value(after, 'featurebus_serving_latency_p99_ms{feature_service="spending",workspace="test"}') > 0


def test_an_unknown_path_is_counted_as_other(serving: TestClient) -> None:
    serving.get("/wp-admin/setup.php")
    text = serving.get("/metrics", headers=_auth(READER)).text
    assert 'endpoint="other"' in text and "wp-admin" not in text


def _job(job_id: str, state: JobState, updated_ms: int, view: str = "daily") -> Job:
    return Job(job_id, "prod", JobKind.MATERIALIZE, state, 0, updated_ms, view=view, start_ms=0, end_ms=1)


def test_failure_counts_recent_and_consecutive() -> None:
    now = 10_000_000
    jobs = [
        _job("1", JobState.SUCCESS, now - 5_000_000),
        _job("2", JobState.FAILED, now - 4_000_000),  # older than the hour: not recent, but in the row
        _job("3", JobState.FAILED, now - 2_000),
        _job("4", JobState.FAILED, now - 1_000),
        _job("5", JobState.RUNNING, now),  # not ended: counts for neither
        _job("6", JobState.SUCCESS, now, view="hourly"),
    ]
    assert failure_counts(jobs, now) == {"daily": (2, 3), "hourly": (0, 0)}
