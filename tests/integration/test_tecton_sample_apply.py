"""The Tecton-style sample repository (examples/tecton_fraud) plans and applies against the real
broker, and its ``select_range``, stream history and key maps reach the registry as specs; its own unit tests run without one
(tests/unit/test_local_testing.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.time_range import TimeBoundSpec, TimeReference

pytestmark = pytest.mark.kafka

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tecton_fraud"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "featurebus", *args], capture_output=True, text=True, timeout=180)


def test_the_sample_plans_and_applies_with_its_ranges(kafka_bootstrap: str) -> None:
    workspace = f"sample_{uuid.uuid4().hex[:8]}"
    create_workspace(KafkaRegistry(kafka_bootstrap), workspace, live=False)  # definitions only: nothing materialized
    planned = _cli("plan", "--repo", str(SAMPLE), "--workspace", workspace, "--json", "--bootstrap", kafka_bootstrap)
    assert planned.returncode == 0, planned.stderr
    created = {(c["kind"], c["name"]) for c in json.loads(planned.stdout)["changes"] if c["action"] == "create"}
    assert ("batch_feature_view", "user_distinct_merchant_transaction_count_30d") in {
        (k.lower().replace(" ", "_"), n) for k, n in created
    }, created
    applied = _cli("apply", "--repo", str(SAMPLE), "--workspace", workspace, "--bootstrap", kafka_bootstrap)
    assert applied.returncode == 0, applied.stderr
    spec = KafkaRegistry(kafka_bootstrap).list()[workspace]
    (selected,) = spec.batch_view("user_distinct_merchant_transaction_count_30d").source_ranges
    assert selected.start == TimeBoundSpec(TimeReference.MATERIALIZATION_START_TIME, -29 * 86_400_000)
    assert selected.end == TimeBoundSpec(TimeReference.MATERIALIZATION_END_TIME, 0)
    # The stream view takes its history from the source's batch_config, from feature_start_time on.
    metrics = spec.view("user_transaction_amount_metrics")
    assert metrics.backfill_from_batch and metrics.feature_start_ms == 1_711_929_600_000  # 2024-04-01 UTC
    assert metrics.batch_schedule_ms == 86_400_000 and metrics.stream_cutover_ms is not None
    # The P2P service joins one view twice through with_join_key_map: the registry keeps both.
    transfers = spec.service("p2p_transfer_service")
    assert [(s.namespace, s.join_key_map) for s in transfers.selections[:2]] == [
        ("sender", (("user_id", "sender_id"),)),
        ("recipient", (("user_id", "recipient_id"),)),
    ]


RECSYS = Path(__file__).resolve().parents[2] / "examples" / "tecton_recsys"


def test_the_recommender_sample_plans_and_applies_with_its_secondary_keys(kafka_bootstrap: str) -> None:
    workspace = f"recsys_{uuid.uuid4().hex[:8]}"
    create_workspace(KafkaRegistry(kafka_bootstrap), workspace, live=False)
    planned = _cli("plan", "--repo", str(RECSYS), "--workspace", workspace, "--json", "--bootstrap", kafka_bootstrap)
    assert planned.returncode == 0, planned.stderr
    applied = _cli("apply", "--repo", str(RECSYS), "--workspace", workspace, "--bootstrap", kafka_bootstrap)
    assert applied.returncode == 0, applied.stderr
    spec = KafkaRegistry(kafka_bootstrap).list()[workspace]
    names = [a.name for a in spec.view("user_category_interactions").aggregations]
    assert names[:2] == ["category_keys_1d", "category_keys_7d"]
    assert {a.secondary_key for a in spec.batch_view("user_category_purchases").aggregations} == {"category"}
