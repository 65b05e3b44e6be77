"""FeatureTable against the real broker: records ingested under the table's name (over HTTP and
from Python with ``get_feature_table(name).ingest(df)``) are served as the latest value per entity
within the ttl, and joined point-in-time correctly into training sets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import featurebus
from featurebus.exceptions import RecordValidationError
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.time import format_iso_ms
from tests.support.table_repo import TTL, table_workspace

pytestmark = pytest.mark.kafka
MINUTE = 60_000
TTL_MS = TTL // pd.Timedelta(milliseconds=1)


def _record(user: str, score: float, visits: int, ts_ms: int) -> dict[str, Any]:
    return {"user_id": user, "score": score, "segment": f"s{visits}", "visits": visits, "ts": format_iso_ms(ts_ms)}


@pytest.mark.e2e
def test_ingested_table_values_are_served_within_the_ttl(kafka_bootstrap: str, tmp_path: Path) -> None:
    workspace = f"table_{uuid.uuid4().hex[:8]}"
    with LocalPlatform(tmp_path / "home", workspace, bootstrap=kafka_bootstrap) as platform:
        apply_workspace(KafkaRegistry(kafka_bootstrap), table_workspace(workspace))
        _, writer = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "writer")
        _, reader = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
        now = int(time.time() * 1000)
        records = [
            _record("u1", 0.1, 1, now - 90 * MINUTE),
            _record("u1", 0.7, 2, now - 10 * MINUTE),  # the latest: served
            _record("u2", 0.3, 3, now - TTL_MS - 30 * MINUTE),  # older than the ttl: missing
        ]
        with httpx.Client(base_url=platform.serving_url, timeout=30.0) as client:
            body = {
                "workspace_name": workspace,
                "read_after_write": True,
                "records": {"user_scores": [{"record": r} for r in records]},
            }
            deadline = time.monotonic() + 30
            while True:  # the replica learns of the new workspace and key within a second or so
                response = client.post("/ingest", json=body, headers={"Authorization": f"Tecton-key {writer}"})
                if response.status_code not in (401, 404) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert response.status_code == 200, response.text
            assert response.json()["ingestMetrics"]["featureViewIngestMetrics"] == [
                {"featureViewName": "user_scores", "onlineRecordIngestCount": "3", "offlineRecordIngestCount": "3"}
            ]

            # From Python, through the same validated path: a bad row rejects the whole frame.
            ws = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=tmp_path)
            frame = pd.DataFrame(
                {
                    "user_id": ["u3"],
                    "score": [0.9],
                    "segment": ["vip"],
                    "visits": [7],
                    "ts": pd.to_datetime([now - 5 * MINUTE], unit="ms", utc=True),
                }
            )
            with pytest.raises(RecordValidationError, match="nothing was written"):
                ws.get_feature_table("user_scores").ingest(frame.assign(visits=["seven"]))
            result = ws.get_feature_table("user_scores").ingest(frame)
            assert result["ingestMetrics"]["featureViewIngestMetrics"][0]["onlineRecordIngestCount"] == "1"

            def served(user: str) -> tuple[list[Any], list[str]]:
                response = client.post(
                    "/api/v1/feature-service/get-features",
                    headers={"Authorization": f"Bearer {reader}"},
                    json={
                        "params": {
                            "workspaceName": workspace,
                            "featureServiceName": "scored_clicks",
                            "joinKeyMap": {"user_id": user},
                            "metadataOptions": {"includeNames": True},
                        }
                    },
                )
                assert response.status_code == 200, response.text
                payload = response.json()
                return payload["result"]["features"], [f["name"] for f in payload["metadata"]["features"]]

            values, names = served("u1")
            assert names[-2:] == ["user_scores.score", "user_scores.visits"]
            assert values[-2:] == [0.7, "2"]  # int64 as a string, as Tecton encodes it
            assert served("u2")[0][-2:] == [None, None]  # its only value is older than the ttl
            deadline = time.monotonic() + 30
            while served("u3")[0][-2:] != [0.9, "7"]:  # no read-after-write from the SDK: it shows up soon
                assert time.monotonic() < deadline, served("u3")
                time.sleep(0.2)


def test_training_sets_join_table_values_point_in_time(kafka_bootstrap: str, tmp_path: Path) -> None:
    workspace = f"table_{uuid.uuid4().hex[:8]}"
    apply_workspace(KafkaRegistry(kafka_bootstrap), table_workspace(workspace))
    t0 = int(pd.Timestamp("2025-06-01T12:00:00Z").value // 1_000_000)
    history = [
        ("u1", 0.1, 1, t0),
        ("u1", 0.5, 2, t0 + 30 * MINUTE),
        ("u2", 0.3, 3, t0 + 10 * MINUTE),
        ("u1", 0.8, 4, t0 + 200 * MINUTE),
    ]
    ws = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=tmp_path)
    ws.get_feature_table("user_scores").ingest(
        pd.DataFrame(
            [
                {"user_id": u, "score": s, "segment": f"s{v}", "visits": v, "ts": pd.Timestamp(t, unit="ms", tz="UTC")}
                for u, s, v, t in history
            ]
        )
    )
    with OfflineMaterializer(kafka_bootstrap, tmp_path / "offline", workspace) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == len(history)

    times = [t0, t0 + 1, t0 + 30 * MINUTE, t0 + 31 * MINUTE, t0 + 60 * MINUTE, t0 + 150 * MINUTE, t0 + 201 * MINUTE]
    spine = pd.DataFrame(
        {
            "user_id": [u for u in ("u1", "u2", "u3") for _ in times],
            "timestamp": pd.to_datetime([t for _ in range(3) for t in times], unit="ms", utc=True),
        }
    )
    frame = ws.get_feature_service("scored_clicks").get_features_for_events(spine)

    def expected(user: str, t_ms: int) -> float | None:
        # The latest value strictly before T, unless older than the ttl (docs/design.md §4).
        before = [(ts, score) for u, score, _, ts in history if u == user and t_ms - TTL_MS <= ts < t_ms]
        return max(before)[1] if before else None

    for row in frame.itertuples(index=False):
        t_ms = int(row.timestamp.value // 1_000_000)
        got = None if pd.isna(row.user_scores__score) else row.user_scores__score
        assert got == expected(row.user_id, t_ms), (row.user_id, t_ms, got)
    assert list(frame.columns[-2:]) == ["user_scores__score", "user_scores__visits"]
