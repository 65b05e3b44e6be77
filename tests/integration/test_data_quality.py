"""Data quality against a real broker: statistics per hour as the offline materializer writes,
and a null rate above the declared expectation shows as a failed expectation on /metrics."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest
from prometheus_client import REGISTRY, generate_latest
from typer.testing import CliRunner

from featurebus.cli import app
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.monitoring.quality import Granularity
from featurebus.platform.monitoring.quality_report import view_statistics
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.schemas.specs import ExpectationSpec
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka

HOUR = 3_600_000
T0 = int(pd.Timestamp("2024-03-10T00:00:00Z").value // 1_000_000)
FEATURE = "amount_sum_1h_continuous"


def _records(hour: int, count: int, null_every: int | None = None) -> list[dict[str, object]]:
    return [
        {
            "user_id": f"u{i % 5}",
            "amount": None if null_every and i % null_every == 0 else float(i),
            "ts": T0 + hour * HOUR + i * (HOUR // count),
        }
        for i in range(count)
    ]


def _failed_on_metrics(workspace: str) -> float:
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("featurebus_data_quality_failed_expectations{") and f'workspace="{workspace}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no featurebus_data_quality_failed_expectations series for {workspace}")


def test_statistics_per_hour_and_a_null_rate_above_the_expectation_fails(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    workspace = f"quality{uuid.uuid4().hex[:8]}"
    spec = spending_workspace(topic=topic, name=workspace)
    view = dataclasses.replace(
        spec.stream_feature_views[0],
        offline=True,
        data_quality_expectations=(ExpectationSpec(FEATURE, "null_rate", max_value=0.1),),
    )
    spec = dataclasses.replace(spec, stream_feature_views=(view,))
    apply_workspace(KafkaRegistry(kafka_bootstrap), spec)
    root = tmp_path / "offline"

    def produce(records: list[dict[str, object]]) -> None:
        with reliable_producer(kafka_bootstrap) as producer:
            for record in records:
                producer.produce(topic, orjson.dumps(record), key=str(record["user_id"]).encode())

    # Hours 0-2 clean, hour 3 empty, hour 4 clean: the expectation holds.
    produce(_records(0, 200) + _records(1, 200) + _records(2, 200) + _records(4, 200))
    with OfflineMaterializer(kafka_bootstrap, root, workspace, flush_records=150) as materializer:
        materializer.run_until_caught_up(timeout_s=60)
    assert _failed_on_metrics(workspace) == 0

    rows = view_statistics(
        QualityStore(root),
        workspace,
        view,
        feature=FEATURE,
        granularity=Granularity.HOUR,
        since_ms=T0,
        until_ms=T0 + 5 * HOUR,
    )
    assert [r["row_count"] for r in rows] == [200, 200, 200, 0, 200]
    empty = rows[3]
    assert empty["has_data"] is False and empty["mean"] is None and empty["null_rate"] is None
    assert rows[0]["min"] == 0.0 and rows[0]["max"] == 199.0
    assert rows[0]["mean"] == pytest.approx(99.5)
    assert rows[0]["distinct_estimate"] == pytest.approx(200, rel=0.05)
    assert rows[0]["quantiles"]["0.5"] == pytest.approx(100, abs=5)
    assert sum(rows[0]["histogram_counts"]) == pytest.approx(200)
    day = view_statistics(
        QualityStore(root),
        workspace,
        view,
        feature=FEATURE,
        granularity=Granularity.DAY,
        since_ms=T0,
        until_ms=T0 + 24 * HOUR,
    )
    assert [r["row_count"] for r in day] == [800]

    # Hour 5: every other amount is null, far above max 0.1 (and the recent history).
    produce(_records(5, 200, null_every=2))
    with OfflineMaterializer(kafka_bootstrap, root, workspace) as materializer:
        materializer.run_until_caught_up(timeout_s=60)
    assert _failed_on_metrics(workspace) >= 1
    latest = view_statistics(
        QualityStore(root),
        workspace,
        view,
        feature=FEATURE,
        granularity=Granularity.HOUR,
        since_ms=T0 + 5 * HOUR,
        until_ms=T0 + 6 * HOUR,
    )
    assert latest[0]["null_rate"] == pytest.approx(0.5)

    # The same through `featurebus monitoring stats`.
    result = CliRunner().invoke(
        app,
        [
            "monitoring",
            "stats",
            "user_spending",
            "--feature",
            FEATURE,
            "--since",
            "2024-03-10T03:00:00Z",
            "--until",
            "2024-03-10T06:00:00Z",
            "--workspace",
            workspace,
            "--bootstrap",
            kafka_bootstrap,
            "--home",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [(r["row_count"], r["has_data"]) for r in shown] == [(0, False), (200, True), (200, True)]
    table = CliRunner().invoke(
        app,
        [
            "monitoring",
            "stats",
            "user_spending",
            "--since",
            "2024-03-10T03:00:00Z",
            "--until",
            "2024-03-10T04:00:00Z",
            "--workspace",
            workspace,
            "--bootstrap",
            kafka_bootstrap,
            "--home",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert table.exit_code == 0 and "no data" in table.output, table.output
