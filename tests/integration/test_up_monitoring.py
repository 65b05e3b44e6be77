"""`featurebus up` monitors itself: every process serves /metrics, the alert evaluator it starts
scrapes them all (its history holds each component's series), and the control plane answers the
freshness and the alerts of the views (real processes, real broker)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from featurebus.platform.config import control_login
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.specs import ViewMonitoringSpec
from tests.support.specs import spending_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

EXPECTED = {
    "serving": {
        "featurebus_serving_requests_total",
        "featurebus_serving_errors_total",
        "featurebus_serving_request_duration_seconds_count",
        "featurebus_serving_online_read_seconds_count",
        "featurebus_serving_error_ratio",
        "featurebus_serving_latency_p99_ms",
        "featurebus_feature_freshness_seconds",
        "featurebus_feature_partition_freshness_seconds",
        "featurebus_online_materializer_records_written_total",
        "featurebus_online_materializer_lag_records",
    },
    "worker": {"featurebus_worker_events_processed_total", "featurebus_worker_consumer_lag_seconds"},
    "offline": {"featurebus_offline_materializer_records_written_total", "featurebus_offline_materializer_lag_seconds"},
    "jobs": {"featurebus_jobs"},
    "control": {"process_cpu_seconds_total", "featurebus_control_requests_total"},
}


def test_up_scrapes_every_component_and_answers_freshness(
    kafka_bootstrap: str,
    topic_factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("FEATUREBUS_MONITOR_INTERVAL_S", "1")
    topic = topic_factory()
    workspace = f"upmon{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    spec = spending_workspace(topic=topic, name=workspace)
    [view] = spec.stream_feature_views
    view = dataclasses.replace(view, monitoring=ViewMonitoringSpec(True, 3_600_000))
    with LocalPlatform(home, workspace, bootstrap=kafka_bootstrap) as platform:
        assert {"monitor", "worker", "offline", "jobs", "serving", "control"} <= set(platform.pids())
        apply_workspace(KafkaRegistry(kafka_bootstrap), dataclasses.replace(spec, stream_feature_views=(view,)))
        key = control_login(home)[1]
        headers = {"Authorization": f"Bearer {key}"}
        now = int(time.time() * 1000)
        with reliable_producer(kafka_bootstrap) as producer:
            for i in range(50):
                producer.produce(topic, orjson.dumps({"user_id": f"u{i % 3}", "amount": 1.0, "ts": now + i}))
        body = {
            "params": {"workspaceName": workspace, "featureServiceName": "spending", "joinKeyMap": {"user_id": "u1"}}
        }

        def components() -> dict[str, set[str]]:
            url = f"{platform.serving_url}/api/v1/feature-service/get-features"
            httpx.post(url, json=body, headers=headers)
            wrong = {"params": {**body["params"], "featureServiceName": "no_such_service"}}
            assert httpx.post(url, json=wrong, headers=headers).status_code in (404, 503)  # an error, counted
            series = httpx.get(f"{platform.monitor_url}/history", timeout=10).json()["series"]
            found: dict[str, set[str]] = {}
            for s in series:
                found.setdefault(s["component"], set()).add(s["metric"])
            return found

        deadline = time.monotonic() + 120
        while not all(names <= components().get(name, set()) for name, names in EXPECTED.items()):
            platform.check()
            missing = {n: sorted(ns - components().get(n, set())) for n, ns in EXPECTED.items()}
            assert time.monotonic() < deadline, f"not scraped yet: {missing}"
            time.sleep(1)

        freshness = httpx.get(f"{platform.control_url}/workspaces/{workspace}/freshness", headers=headers).json()
        [entry] = freshness["views"]
        assert entry["feature_view"] == "user_spending" and entry["threshold_seconds"] == 3600.0
        assert entry["freshness_seconds"] is not None and entry["freshness_seconds"] < 3600
        alerts = httpx.get(f"{platform.control_url}/workspaces/{workspace}/alerts", headers=headers).json()["alerts"]
        assert f"{workspace}.user_spending.freshness" in [a["rule"] for a in alerts]

        # The CLI, logged in to the control plane `up` runs (the home's config).
        env = {**os.environ, "FEATUREBUS_HOME": str(home)}
        listed = subprocess.run(
            [sys.executable, "-m", "featurebus", "alerts", "list", "-w", workspace, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert listed.returncode == 0, listed.stderr
        assert f"{workspace}.user_spending.freshness" in [a["rule"] for a in json.loads(listed.stdout)]
        exported = subprocess.run(
            [sys.executable, "-m", "featurebus", "alerts", "export-rules", "-w", workspace],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert exported.returncode == 0, exported.stderr
        assert f'alert: "{workspace}.user_spending.freshness"' in exported.stdout
        described = subprocess.run(
            [sys.executable, "-m", "featurebus", "describe", "user_spending", "-w", workspace],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert described.returncode == 0, described.stderr
        assert "freshness: " in described.stdout and "threshold 3600 s, alerting" in described.stdout
