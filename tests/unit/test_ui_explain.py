"""Explain a value over a real offline store: the records in the window with their offsets, the
tiles, and the training-set path's value, through the API and the UI (consumer role)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurebus.platform.offline.store import open_store, write_partition
from featurebus.serving.control.app import create_control_app
from featurebus.serving.control.ui import UiSettings
from tests.support.control import ControlFixture, control_fixture

HOUR = 3_600_000
T = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.fixture
def fx(tmp_path: Path) -> tuple[ControlFixture, TestClient]:
    fixture = control_fixture()
    source = fixture.registry.get("a").stream_sources[0]  # type: ignore[union-attr]
    open_store(tmp_path)
    times = [T - 2 * HOUR, T - 30 * 60_000, T - 10 * 60_000, T - 10 * 60_000, T + 60_000]
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u1"],
            "amount": [100.0, 1.0, 2.0, 4.0, 1000.0],
            "ts": pd.to_datetime(times, unit="ms", utc=True),
        }
    )
    write_partition(tmp_path, "a", source, "transactions", 0, frame, [10, 11, 12, 13, 14])
    other = frame.assign(user_id="u2")
    write_partition(tmp_path, "a", source, "transactions", 1, other, [20, 21, 22, 23, 24])
    app = create_control_app(fixture.plane, UiSettings(offline_root=tmp_path))
    return fixture, TestClient(app)


def test_explain_lists_the_records_tiles_and_training_value(fx: tuple[ControlFixture, TestClient]) -> None:
    fixture, client = fx
    body = {"view": "user_spending", "feature": "amount_sum_1h_continuous", "join_keys": {"user_id": "u1"}, "at_ms": T}
    answer = client.post("/v1/workspaces/a/explain", json=body, headers=fixture.auth("p-consumer"))
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    assert explained["windows"] == [{"startMs": T - HOUR, "endMs": T}]
    assert [(r["_partition"], r["_offset"]) for r in explained["records"]] == [(0, 11), (0, 12), (0, 13)]
    assert explained["recordCount"] == 3 and explained["trainingSetValue"] == pytest.approx(7.0)
    # continuous mode: every event time is its own tile; two records share one
    assert [(t["records"], t["sum"]) for t in explained["tiles"]] == [(1, 1.0), (2, 6.0)]
    assert client.post("/v1/workspaces/a/explain", json=body, headers=fixture.auth("p-viewer")).status_code == 403
    wrong = client.post(
        "/v1/workspaces/a/explain", json={**body, "feature": "nope"}, headers=fixture.auth("p-consumer")
    )
    assert wrong.status_code == 404 and "amount_sum_1h_continuous" in wrong.json()["message"]


def test_the_explain_page_shows_both_values(fx: tuple[ControlFixture, TestClient]) -> None:
    fixture, client = fx
    client.post("/ui/login", data={"key": fixture.secrets["p-consumer"]})
    form = client.get("/ui/w/a/explain")
    assert 'name="key.user_id"' in form.text and "amount_sum_1h_continuous" in form.text
    page = client.post(
        "/ui/w/a/explain",
        data={
            "view": "user_spending",
            "feature": "amount_count_1h_continuous",
            "key.user_id": "u1",
            "at": "2024-05-01T12:00:00Z",
        },
    )
    assert page.status_code == 200, page.text
    assert 'class="training-value">3<' in page.text and "serving answers for now only" in page.text
    assert "<td>transactions</td><td>0</td><td>12</td>" in page.text
