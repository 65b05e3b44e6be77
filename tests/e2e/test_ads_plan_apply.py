"""The ads/clicks example end to end against the real broker: apply it, push impressions and
clicks through ``/ingest``, then edit a window, remove a view and rename a service. Each edit's
``featurebus plan --json`` is the plan a user expects, and applying it changes what the running
worker and serving replica do, without restarting either (their PIDs are checked).
A development workspace holding the same repository is never served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.time import format_iso_ms
from tests.support.replica import NOT_YET

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

ADS = Path(__file__).resolve().parents[2] / "examples" / "ads"
MINUTE = 60_000
CONTEXT = {"floor_price": 2.0, "position": 1}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "featurebus", *args], capture_output=True, text=True, timeout=120)


def _plan(repo: Path, workspace: str, bootstrap: str) -> dict[str, Any]:
    planned = _cli("plan", "--repo", str(repo), "--workspace", workspace, "--json", "--bootstrap", bootstrap)
    assert planned.returncode == 0, planned.stderr
    doc: dict[str, Any] = json.loads(planned.stdout)
    return doc


def _apply(repo: Path, workspace: str, bootstrap: str) -> None:
    applied = _cli("apply", "--repo", str(repo), "--workspace", workspace, "--bootstrap", bootstrap)
    assert applied.returncode == 0, applied.stderr


def _changed(plan: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["name"]): c for c in plan["changes"] if c["action"] != "unchanged"}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new))


class _Api:
    def __init__(self, client: httpx.Client, url: str, workspace: str, reader: str, writer: str) -> None:
        self.client, self.url, self.workspace, self.reader, self.writer = client, url, workspace, reader, writer

    def ingest(self, records: dict[str, list[dict[str, Any]]]) -> None:
        body = {
            "workspace_name": self.workspace,
            "records": {s: [{"record": r} for r in rs] for s, rs in records.items()},
        }
        response = self.client.post(
            f"{self.url}/ingest", json=body, headers={"Authorization": f"Tecton-key {self.writer}"}
        )
        assert response.status_code == 200, response.text

    def features(self, service: str, workspace: str | None = None) -> httpx.Response:
        return self.client.post(
            f"{self.url}/api/v1/feature-service/get-features",
            headers={"Authorization": f"Bearer {self.reader}"},
            json={
                "params": {
                    "workspaceName": workspace or self.workspace,
                    "featureServiceName": service,
                    "joinKeyMap": {"user_id": "u1", "ad_id": "a1"},
                    "requestContextMap": CONTEXT,
                }
            },
        )

    def vector(self, service: str) -> dict[str, Any]:
        response = self.features(service)
        assert response.status_code == 200, response.text
        body = response.json()
        names = [f["name"] for f in body["metadata"]["features"]]
        return dict(zip(names, body["result"]["features"], strict=True))

    def wait_for(
        self, service: str, check: Callable[[dict[str, Any]], bool], platform: LocalPlatform
    ) -> dict[str, Any]:
        """The served vector once ``check`` holds (the worker and replica follow the bus)."""
        deadline = time.monotonic() + 60
        while True:
            platform.check()
            response = self.features(service)
            if response.status_code == 200:
                vector = self.vector(service)
                if check(vector):
                    return vector
            assert time.monotonic() < deadline, f"{service}: {response.text}\n{platform.log_tail('worker')}"
            time.sleep(0.3)


def test_ads_repo_plans_applies_and_hot_reloads(kafka_bootstrap: str, tmp_path: Path) -> None:
    workspace = f"ads_{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "ads"
    shutil.copytree(ADS, repo, ignore=shutil.ignore_patterns("__pycache__"))
    now = int(time.time() * 1000)

    with LocalPlatform(tmp_path / "home", workspace, bootstrap=kafka_bootstrap) as platform:
        first = _plan(repo, workspace, kafka_bootstrap)
        objects = len(first["changes"])
        assert first["summary"] == {"create": objects, "update": 0, "delete": 0, "unchanged": 0}
        _apply(repo, workspace, kafka_bootstrap)
        assert _plan(repo, workspace, kafka_bootstrap)["summary"]["unchanged"] == objects  # nothing left to do
        pids = platform.pids()
        _, reader = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
        _, writer = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "writer")

        with httpx.Client(timeout=10.0) as client:
            api = _Api(client, platform.serving_url, workspace, reader, writer)
            deadline = time.monotonic() + 30
            while api.features("ad_ranking").status_code in NOT_YET:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            # u1 saw a1 four times and clicked twice: 90 minutes ago (a long visit) and 30 minutes ago.
            api.ingest(
                {
                    "impressions": [
                        {
                            "user_id": "u1",
                            "ad_id": "a1",
                            "placement": p,
                            "bid_price": b,
                            "ts": format_iso_ms(now - m * MINUTE),
                        }
                        for p, b, m in [("top", 1.0, 95), ("side", 2.0, 40), ("top", 3.0, 35), ("feed", 4.0, 20)]
                    ],
                    "clicks": [
                        {"user_id": "u1", "ad_id": "a1", "dwell_ms": d, "ts": format_iso_ms(now - m * MINUTE)}
                        for d, m in [(9000, 90), (500, 30)]
                    ],
                }
            )
            before = api.wait_for(
                "ad_ranking",
                lambda v: (
                    v["user_clicks.ad_id_count_1h_continuous"] == "1"
                    and v["ad_clicks.dwell_ms_count_1h_continuous"] == "1"
                ),
                platform,
            )
            assert before["user_clicks.dwell_ms_max_1h_continuous"] == "500"  # the 90-minute-old visit is out
            assert before["user_impressions.ad_id_count_1h_continuous"] == "3"
            assert before["user_click_through.ctr_1h"] == pytest.approx(1 / 3)
            assert before["user_click_through.engaged_above_fold"] is True
            assert before["user_impressions.placement_last_distinct_3_1h_continuous"] == ["side", "top", "feed"]

            # 1. A longer window: the view is updated (its features re-materialized), the services
            #    that serve the whole view follow, and the served feature is the 2-hour one.
            _edit(
                repo / "features" / "clicks.py",
                'function="max", time_window=timedelta(hours=1)',
                'function="max", time_window=timedelta(hours=2)',
            )
            changes = _changed(_plan(repo, workspace, kafka_bootstrap))
            view_change = changes.pop(("stream_feature_view", "user_clicks"))
            assert view_change["action"] == "update" and view_change["rematerialize"] is True
            # The feature is named after its window, so the plan shows the old one going, the new one coming.
            fields = {f["path"]: (f["old"], f["new"]) for f in view_change["changed_fields"]}
            assert set(fields) == {
                "aggregations[dwell_ms_max_1h_continuous]",
                "aggregations[dwell_ms_max_2h_continuous]",
            }
            old_agg, new_agg = (
                fields["aggregations[dwell_ms_max_1h_continuous]"][0],
                fields["aggregations[dwell_ms_max_2h_continuous]"][1],
            )
            assert (old_agg["window_ms"], new_agg["window_ms"]) == (3_600_000, 7_200_000)
            assert set(changes) <= {("feature_service", "ad_ranking"), ("feature_service", "user_engagement")}
            _apply(repo, workspace, kafka_bootstrap)
            widened = api.wait_for("ad_ranking", lambda v: "user_clicks.dwell_ms_max_2h_continuous" in v, platform)
            assert "user_clicks.dwell_ms_max_1h_continuous" not in widened
            assert widened["user_clicks.dwell_ms_max_2h_continuous"] == "9000"  # now within the window
            # The running worker computes the new window for new events too.
            api.ingest(
                {
                    "clicks": [
                        {"user_id": "u1", "ad_id": "a1", "dwell_ms": 12000, "ts": format_iso_ms(now - 100 * MINUTE)}
                    ]
                }
            )
            api.wait_for("ad_ranking", lambda v: v["user_clicks.dwell_ms_max_2h_continuous"] == "12000", platform)

            # 2. Removing a view: deleted, and the service that read it updated; its features are gone.
            clicks_py = (repo / "features" / "clicks.py").read_text()
            (repo / "features" / "clicks.py").write_text(
                clicks_py[: clicks_py.index("@stream_feature_view", 10 + clicks_py.index("def user_clicks"))]
            )
            _edit(
                repo / "feature_services.py",
                "from ads.features.clicks import ad_clicks, user_clicks",
                "from ads.features.clicks import user_clicks",
            )
            _edit(
                repo / "feature_services.py",
                "ad_impressions, ad_clicks, user_click_through",
                "ad_impressions, user_click_through",
            )
            changes = _changed(_plan(repo, workspace, kafka_bootstrap))
            assert {k: c["action"] for k, c in changes.items()} == {
                ("stream_feature_view", "ad_clicks"): "delete",
                ("feature_service", "ad_ranking"): "update",
            }
            _apply(repo, workspace, kafka_bootstrap)
            trimmed = api.wait_for("ad_ranking", lambda v: not any(n.startswith("ad_clicks.") for n in v), platform)
            assert "ad_impressions.bid_price_count_1h_5m" in trimmed and "user_click_through.ctr_1h" in trimmed

            # 3. A development workspace with the same definitions, applied before the rename: the
            #    registry has one partition, read in order, so once the replica serves the renamed
            #    service it has read the development workspace's record too (checked at the end).
            dev = f"{workspace}_dev"
            create_workspace(KafkaRegistry(kafka_bootstrap), dev, live=False)
            _apply(repo, dev, kafka_bootstrap)
            _, dev_reader = create_api_key(KafkaRegistry(kafka_bootstrap), dev, "reader")

            # Renaming a service: Tecton shows a delete and a create; the old name is a 404.
            _edit(repo / "feature_services.py", 'name="user_engagement"', 'name="user_activity"')
            changes = _changed(_plan(repo, workspace, kafka_bootstrap))
            assert {k: c["action"] for k, c in changes.items()} == {
                ("feature_service", "user_engagement"): "delete",
                ("feature_service", "user_activity"): "create",
            }
            _apply(repo, workspace, kafka_bootstrap)
            renamed = api.wait_for("user_activity", lambda v: True, platform)
            assert renamed["user_clicks.dwell_ms_max_2h_continuous"] == "12000"
            gone = api.features("user_engagement")
            assert gone.status_code == 404 and "user_engagement" in gone.json()["message"]

            # The development workspace of step 3 is never served. Its key is known (no longer a 401)
            # and its registry record was read (it precedes the rename's, which is served): a 404.
            dev_api = _Api(client, platform.serving_url, dev, dev_reader, writer)
            deadline = time.monotonic() + 30
            while (not_served := dev_api.features("ad_ranking")).status_code == 401:
                assert time.monotonic() < deadline, "the replica never learned the development workspace's key"
                time.sleep(0.2)
            assert not_served.status_code == 404, not_served.text
            assert f"no workspace named {dev!r}" in not_served.json()["message"]

        platform.check()
        assert platform.pids() == pids, "a process was restarted: hot reload must not need one"
