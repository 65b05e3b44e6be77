"""The control plane's monitoring routes: statistics, drift and parity, viewer and up only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from featurebus.platform.monitoring.quality import Granularity, bucket_statistics
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.platform.registry import apply_workspace
from featurebus.platform.served.reports import ReportStore
from featurebus.serving.control.app import create_control_app
from tests.support.control import control_fixture
from tests.support.specs import spending_workspace

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def test_stats_drift_and_parity_routes(tmp_path: Path) -> None:
    fixture = control_fixture()
    spec = spending_workspace(name="a")
    view = dataclasses.replace(spec.stream_feature_views[0], offline=True)
    apply_workspace(fixture.registry, dataclasses.replace(spec, stream_feature_views=(view,)))
    client = TestClient(create_control_app(fixture.plane, offline_root=tmp_path))
    amounts = np.asarray([1.0, 2.0, np.nan, 4.0])
    stats = bucket_statistics(
        np.asarray([T0, T0 + 1, T0 + 2, T0 + 3]), {"amount": amounts}, ["amount"], Granularity.HOUR
    )
    QualityStore(tmp_path).write("a", "user_spending", "t-0-0-3", stats)

    url = f"/v1/workspaces/a/feature-views/user_spending/stats?feature=amount_sum_1h_continuous&since={T0}&until={T0 + 2 * HOUR}"
    answer = client.get(url, headers=fixture.auth("p-viewer"))
    assert answer.status_code == 200, answer.text
    buckets = answer.json()["buckets"]
    assert [(b["bucket_start_ms"], b["row_count"], b["has_data"]) for b in buckets] == [
        (T0, 4, True),
        (T0 + HOUR, 0, False),
    ]
    assert buckets[0]["null_rate"] == 0.25 and buckets[0]["mean"] == 7 / 3
    assert buckets[1]["mean"] is None
    assert client.get(url, headers=fixture.auth("p-none")).status_code == 403
    assert client.get(url).status_code == 401
    unknown = client.get(url.replace("amount_sum_1h_continuous", "nope"), headers=fixture.auth("p-viewer"))
    assert unknown.status_code == 400 and "nope" in unknown.json()["message"]

    parity = "/v1/workspaces/a/feature-services/spending/parity"
    assert client.get(parity, headers=fixture.auth("p-viewer")).status_code == 404
    ReportStore(tmp_path).write("a", "parity", "spending", {"checkedRequests": 3, "features": []})
    assert client.get(parity, headers=fixture.auth("p-viewer")).json() == {"checkedRequests": 3, "features": []}

    drift = client.get("/v1/workspaces/a/feature-views/user_spending/drift", headers=fixture.auth("p-viewer"))
    assert drift.status_code == 400 and "logging=LoggingConfig" in drift.json()["message"]
