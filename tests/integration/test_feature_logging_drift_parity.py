"""Feature logging, drift and live parity on the fraud example, end to end on a real broker.

``LocalPlatform`` runs the worker, serving (which logs every request of ``fraud_detection``,
sample rate 1.0) and the offline process (which writes the logging topic and the source topic to
the offline store). Three populations of fresh users get the same number of events each: the
first is served and its training set saved as the reference dataset, the second comes from the
same distribution (no drift), the third has its amounts scaled by 3 (drift on the amount
features). Each population is served within its own 10-second bucket, from several threads at
once. Populations share no user or merchant: a later population's events have event times before
an earlier population's requests, so they would count offline at those request times but could
not have been served then (parity holds for what had arrived). Every logged vector is recomputed through the training-set path (0 mismatches); then one
online tile is overwritten with another user's tile on the feature topic, and parity finds it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from prometheus_client import REGISTRY, generate_latest

from featurebus.platform.offline.datasets import save_dataset
from featurebus.platform.offline.logged_features import TIMESTAMP
from featurebus.platform.served.drift_monitor import DriftReference, view_drift
from featurebus.platform.served.feature_monitor import FeatureMonitor
from featurebus.platform.served.parity import parity_report
from featurebus.platform.training.training_sets import get_features_for_events
from tests.support.logged_fraud import (
    EVENTS_PER_USER,
    SERVICE,
    USERS,
    VIEW,
    Running,
    corrupt_tile,
    population,
    running_fraud_platform,
)

pytestmark = pytest.mark.kafka

BUCKET_MS = 10_000


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_fraud_platform(kafka_bootstrap, tmp_path_factory.mktemp("logging"), bucket_ms=BUCKET_MS) as state:
        yield state


def _in_bucket(logged: pd.DataFrame, start_ms: int) -> pd.DataFrame:
    times = logged[TIMESTAMP].array.as_unit("ms").asi8
    return logged[(times >= start_ms) & (times < start_ms + BUCKET_MS)]


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f["feature"]: f["latest"]["status"] for f in report["features"] if f["comparable"]}


def test_logging_drift_and_parity(running: Running) -> None:
    spec, root = running.spec, running.platform.offline_dir
    populations = {"a": 1.0, "b": 1.0, "c": 3.0}  # c: the shifted population
    buckets = {}
    for seed, (prefix, scale) in enumerate(populations.items()):
        running.produce_and_wait(population(prefix, scale, seed))
        buckets[prefix] = running.serve_in_one_bucket([f"{prefix}_{u}" for u in range(USERS)], f"{prefix}_m1")
    # get-features-batch logs each row as its own request.
    response = running.client.post(
        "/api/v1/feature-service/get-features-batch",
        json={
            "params": {
                "workspaceName": spec.name,
                "featureServiceName": SERVICE,
                "requestData": [{"joinKeyMap": {"user_id": f"a_{u}", "merchant_id": "a_m2"}} for u in (3, 4)],
            }
        },
    )
    assert response.status_code == 200, response.text
    running.served += 2
    logged = running.logged()
    assert len(logged[logged["merchant_id"] == "a_m2"]) == 2

    # Logged features are training-set shaped: keys, the request time and one column per feature.
    first = _in_bucket(logged, buckets["a"])
    assert len(first) == USERS
    assert {"user_id", "merchant_id", TIMESTAMP, "request_id", f"{VIEW}__amount_sum_1h_continuous"} <= set(
        logged.columns
    )
    assert (first[f"{VIEW}__amount_count_1h_continuous"] == EVENTS_PER_USER).all()

    # Live parity: every logged vector equals its training-set recomputation at the request time.
    report = parity_report(spec, SERVICE, logged, root)
    assert report["checkedRequests"] == len(logged) == 3 * USERS + 2
    bad = [(f["feature"], f["examples"][:1]) for f in report["features"] if f["mismatches"]]
    assert not bad, bad
    assert all(v["mismatchRatio"] == 0 for v in report["views"].values())

    # The reference: population a's training set, saved as a dataset.
    spine = first[["user_id", "merchant_id", TIMESTAMP]].reset_index(drop=True)
    training = get_features_for_events(spec, SERVICE, spine, root, timestamp_key=TIMESTAMP)
    save_dataset(root, spec.name, "reference", training)
    reference = DriftReference(dataset="reference")

    def drift(prefix: str) -> dict[str, str]:
        start = buckets[prefix]
        return _statuses(
            view_drift(
                root, spec, VIEW, reference=reference, start_ms=start, end_ms=start + BUCKET_MS, bucket_ms=BUCKET_MS
            )
        )

    unshifted, shifted = drift("b"), drift("c")
    assert set(unshifted.values()) == {"ok"}, unshifted
    for feature in ("amount_sum_1h_continuous", "amount_mean_1h_continuous", "amount_sum_1d_continuous"):
        assert shifted[feature] == "drifted", shifted
    assert shifted["amount_count_1h_continuous"] == "ok", shifted  # counts are not scaled

    # The monitor exports both on the Prometheus registry.
    monitor = FeatureMonitor(running.bootstrap, root, spec, settle_s=0)
    monitor.drift(VIEW)
    monitor.parity(SERVICE)
    metrics = generate_latest(REGISTRY).decode()
    assert (
        f'featurebus_feature_drift{{feature="amount_sum_1h_continuous",feature_view="{VIEW}",workspace="{spec.name}"}}'
        in metrics
    )
    assert f'featurebus_parity_mismatch_ratio{{feature_view="{VIEW}",workspace="{spec.name}"}} 0.0' in metrics

    # Corrupt one online tile: user a_0's newest tile gets another user's partials.
    corrupt_tile(running, "a_0")
    corrupted_at = pd.Timestamp.now(tz="UTC")
    deadline = time.monotonic() + 60
    before = first[first["user_id"] == "a_0"][f"{VIEW}__amount_sum_1h_continuous"].iloc[0]
    while True:
        body = running.get(
            {"featureViewName": VIEW, "joinKeyMap": {"user_id": "a_0"}, "metadataOptions": {"includeNames": True}}
        )
        names = [f["name"] for f in body["metadata"]["features"]]
        if body["result"]["features"][names.index(f"{VIEW}.amount_sum_1h_continuous")] != before:
            break
        assert time.monotonic() < deadline, "the corrupted tile never reached serving"
        time.sleep(0.3)
    running.serve_in_one_bucket(["a_0", "a_1", "a_2"], "a_m1", threads=1)
    after = running.logged()
    after = after[after[TIMESTAMP] >= corrupted_at].reset_index(drop=True)
    report = parity_report(spec, SERVICE, after, root)
    by_feature = {f["feature"]: f for f in report["features"] if f["featureView"] == VIEW}
    sums = by_feature["amount_sum_1h_continuous"]
    assert sums["mismatches"] == 1 and sums["checked"] == 3
    assert sums["examples"][0]["keys"]["user_id"] == "a_0"
    assert by_feature["amount_count_1h_continuous"]["mismatches"] == 0  # one event per tile either way
    assert report["views"][VIEW]["mismatchRatio"] > 0
