"""The object page's data-quality, drift and parity panels over the control plane's real
monitoring routes (``routes_quality``), reading an offline store written the way the offline
materializer writes it: statistics per bucket, logged served features, the parity monitor's report."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurebus.platform.monitoring.quality import Granularity, bucket_statistics
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.platform.offline.logged_features import logged_dir
from featurebus.platform.registry import apply_workspace
from featurebus.platform.served.reports import ReportStore
from featurebus.schemas.specs import LoggingSpec
from featurebus.schemas.time import now_ms
from featurebus.serving.control.app import create_control_app
from featurebus.serving.control.ui.quality_panels import PanelShapeError, drift_panel, parity_panel, stats_panel
from tests.support.control import ControlFixture, control_fixture
from tests.support.specs import spending_workspace

HOUR = 3_600_000
FEATURE = "amount_sum_1h_continuous"


@pytest.fixture
def ui(tmp_path: Path) -> tuple[ControlFixture, TestClient]:
    fixture = control_fixture()
    spec = spending_workspace(name="a")
    view = dataclasses.replace(spec.stream_feature_views[0], offline=True)
    service = dataclasses.replace(spec.feature_services[0], logging=LoggingSpec())
    apply_workspace(
        fixture.registry, dataclasses.replace(spec, stream_feature_views=(view,), feature_services=(service,))
    )
    client = TestClient(create_control_app(fixture.plane, offline_root=tmp_path))
    answer = client.post("/ui/login", data={"key": fixture.secrets["p-viewer"]}, follow_redirects=False)
    assert answer.status_code == 303
    return fixture, client


def _write_statistics(root: Path, hour: int) -> None:
    """Two hours of the ``amount`` column as the offline materializer summarises it: the second
    hour has a null and larger values."""
    times = np.asarray([hour, hour + 1, hour + 2, hour + 3, hour + HOUR, hour + HOUR + 1, hour + HOUR + 2])
    amounts = np.asarray([1.0, 2.0, 3.0, 4.0, 10.0, np.nan, 30.0])
    stats = bucket_statistics(times, {"amount": amounts}, ["amount"], Granularity.HOUR)
    QualityStore(root).write("a", "user_spending", "t-0-0-6", stats)


def _write_logged_requests(root: Path, end_hour: int) -> None:
    """Logged requests as the offline materializer stores them (every served feature a column): a
    day with sums and means around 10 (the reference), then a day around 40 (drift); the counts
    keep one distribution (no drift)."""
    rng = np.random.default_rng(7)
    rows = []
    for offset_hours, centre in ((-47, 10.0), (-23, 40.0)):
        for i in range(400):
            row: dict[str, object] = {
                "user_id": f"u{i}",
                "timestamp": end_hour + (offset_hours + i * 23 // 400) * HOUR,
                "request_id": f"r{offset_hours}-{i}",
            }
            for window in ("1m", "1h"):
                row[f"user_spending__amount_count_{window}_continuous"] = int(rng.poisson(5))
                row[f"user_spending__amount_sum_{window}_continuous"] = float(rng.normal(centre, 2.0))
                row[f"user_spending__amount_mean_{window}_continuous"] = float(rng.normal(centre, 2.0))
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    for window in ("1m", "1h"):
        column = f"user_spending__amount_count_{window}_continuous"
        frame[column] = frame[column].astype("Int64")
    directory = logged_dir(root, "a", "spending")
    directory.mkdir(parents=True)
    frame.to_parquet(directory / "part-0-0-799.parquet", index=False)


def test_the_view_page_draws_statistics_over_time_per_column(
    ui: tuple[ControlFixture, TestClient], tmp_path: Path
) -> None:
    _, client = ui
    empty = client.get("/ui/w/a/objects/user_spending").text
    quality = empty[empty.index("<h2>Data quality</h2>") : empty.index("<h2>Drift</h2>")]
    assert 'class="quality"' not in quality and "no data yet" in quality  # 24 empty hourly buckets
    hour = now_ms() - now_ms() % HOUR - 3 * HOUR  # inside the route's default 24 h window
    _write_statistics(tmp_path, hour)
    page = client.get("/ui/w/a/objects/user_spending").text
    section = page[page.index('<section class="quality" data-column="amount">') : page.index("</section>")]
    assert section.count('<section class="quality"') == 1  # one column, however many features read it
    assert "amount_count_1m_continuous" in section and FEATURE in section and "2 bucket(s) with data" in section
    assert "rows 3 · null rate 0.3333 · mean 20" in section  # the newest hour
    assert 'aria-label="amount histogram"' in section and "<rect" in section
    for chart in ("null rate", "mean", "p50", "p95", "p99"):
        assert f'aria-label="{chart}"' in section, chart
    assert re.search(r'aria-label="null rate".*max 0\.333', section)


def test_the_view_page_shows_drift_of_served_values_per_feature(
    ui: tuple[ControlFixture, TestClient], tmp_path: Path
) -> None:
    fixture, client = ui
    no_logs = client.get("/ui/w/a/objects/user_spending").text
    assert "<h2>Drift</h2>" in no_logs and "no logged features" in no_logs  # the route's own explanation
    end_hour = now_ms() - now_ms() % HOUR
    _write_logged_requests(tmp_path, end_hour)
    page = client.get("/ui/w/a/objects/user_spending").text
    table = page[page.index('<table class="drift">') : page.index("</table>", page.index('<table class="drift">'))]
    row = next(r for r in table.split("<tr>") if f"<td>{FEATURE}</td>" in r)
    assert 'class="down">drifted' in row and 'aria-label="PSI"' in row
    # The figures are the route's: the newest bucket's PSI, KS and JS of each feature.
    answer = client.get("/v1/workspaces/a/feature-views/user_spending/drift", headers=fixture.auth("p-viewer")).json()
    for feature in answer["features"]:
        methods = feature["latest"]["methods"]
        shown = next(r for r in table.split("<tr>") if f"<td>{feature['feature']}</td>" in r)
        assert f"<td>{feature['dtype']}</td>" in shown
        assert "".join(f"<td>{methods[m]['statistic']:.4g}</td>" for m in ("psi", "ks")) in shown
        assert feature["psi"] == methods["psi"]["statistic"]


def test_the_service_page_shows_the_parity_report(ui: tuple[ControlFixture, TestClient], tmp_path: Path) -> None:
    _, client = ui
    before = client.get("/ui/w/a/objects/spending").text
    assert "no parity report for &#39;spending&#39; in workspace &#39;a&#39; yet" in before  # the route's words
    report = {
        "workspace": "a",
        "featureService": "spending",
        "checkedRequests": 4,
        "relativeTolerance": 1e-9,
        "views": {"user_spending": {"checked": 8, "mismatches": 1, "mismatchRatio": 0.125}},
        "features": [
            {
                "featureView": "user_spending",
                "feature": FEATURE,
                "checked": 4,
                "mismatches": 1,
                "mismatchRatio": 0.25,
                "examples": [
                    {
                        "requestId": "r-9",
                        "requestTime": "2026-01-01T00:00:00+00:00",
                        "keys": {"user_id": "u1"},
                        "served": 5.0,
                        "offline": 6.0,
                    }
                ],
            },
            {
                "featureView": "user_spending",
                "feature": "amount_count_1h_continuous",
                "checked": 4,
                "mismatches": 0,
                "mismatchRatio": 0.0,
                "examples": [],
            },
        ],
    }
    ReportStore(tmp_path).write("a", "parity", "spending", report)
    page = client.get("/ui/w/a/objects/spending").text
    assert "4 logged request(s) recomputed offline" in page
    assert f"<td>{FEATURE}</td><td>4</td><td>1</td><td>0.25</td>" in page
    assert "request r-9: served 5.0, offline 6.0" in page


def test_an_answer_of_another_shape_is_reported_not_drawn() -> None:
    with pytest.raises(PanelShapeError, match="'buckets'"):
        stats_panel({"rows": []})
    with pytest.raises(PanelShapeError, match="'features'"):
        drift_panel({"feature": []})
    with pytest.raises(PanelShapeError, match="'checkedRequests'"):
        parity_panel({"checked": 3})
    assert (
        stats_panel({"buckets": [{"feature": "f", "input_column": "c", "bucket_start_ms": 0, "has_data": False}]}) == []
    )
