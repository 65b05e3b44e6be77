"""Testing definitions without ``apply`` (Tecton's unit-test methods) and ``featurebus test``.

The sample repository examples/tecton_fraud carries Tecton-style tests of its own; here: that
``featurebus test`` runs them (and fails when one fails), that local values equal a brute force
over the mock rows, and that bad input is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus import (
    Aggregate,
    Attribute,
    Calculation,
    Entity,
    FeatureService,
    Field,
    KafkaConfig,
    MockContext,
    RealtimeContext,
    RealtimeFeatureView,
    RequestSource,
    StreamSource,
    realtime_feature_view,
    stream_feature_view,
)
from featurebus.exceptions import DefinitionError, InvalidRequestError
from featurebus.types import Bool, Float64, String, Timestamp

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tecton_fraud"
T0 = datetime(2024, 5, 1, tzinfo=UTC)

user = Entity(name="user", join_keys=[Field("user_id", String)])
payments = StreamSource(
    name="payments",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="payments", timestamp_field="ts"),
)


@stream_feature_view(
    source=payments,
    entities=[user],
    mode="python",
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(hours=2), input_column=Field("amount", Float64)),
    ],
)
def user_payments(row):  # type: ignore[no-untyped-def]
    return {"user_id": row["user_id"], "amount": row["amount"] * 2, "ts": row["ts"]}


payment = RequestSource(name="payment", schema=[Field("amount", Float64)])


@realtime_feature_view(sources=[payment, user_payments], mode="python", features=[Attribute("share", Float64)])
def payment_share(payment, user_payments, context):  # type: ignore[no-untyped-def]
    total = user_payments["amount_sum_2h_continuous"] or 0.0
    return {"share": payment["amount"] / (total + payment["amount"])}


ratio = RealtimeFeatureView(
    name="ratio",
    sources=[payment, user_payments],
    features=[Calculation(name="big", expr="payment.amount > user_payments.amount_sum_2h_continuous")],
)


def _random_payments(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 200
    return pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c"], n),
            "amount": rng.integers(1, 100, n).astype(float),
            "ts": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 600, n)],
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_view_values_over_mock_rows_equal_a_brute_force(seed: int) -> None:
    rows = _random_payments(seed)
    spine = pd.DataFrame(
        {"user_id": ["a", "b", "c", "a"], "ts": [T0 + timedelta(minutes=m) for m in (90, 300, 599, 610)]}
    )
    got = user_payments.get_features_for_events(spine, mock_inputs={"payments": rows}).to_pandas()
    for i, (key, at) in enumerate(zip(spine["user_id"], spine["ts"], strict=True)):
        window = rows[(rows["user_id"] == key) & (rows["ts"] >= at - timedelta(hours=2)) & (rows["ts"] < at)]
        assert got["user_payments__amount_count_2h_continuous"][i] == len(window)
        # The python-mode transformation doubles every amount before aggregation.
        assert got["user_payments__amount_sum_2h_continuous"][i] == pytest.approx(2 * window["amount"].sum())
    assert list(got.columns[:2]) == ["user_id", "ts"]  # the events' own columns first, unchanged


def test_a_service_over_mock_rows_runs_its_realtime_views_too() -> None:
    rows = pd.DataFrame({"user_id": ["a"], "amount": [10.0], "ts": [T0]})
    spine = pd.DataFrame({"user_id": ["a"], "ts": [T0 + timedelta(hours=1)], "amount": [20.0]})
    service = FeatureService(name="checkout", features=[user_payments, payment_share, ratio])
    got = service.get_features_for_events(spine, mock_inputs={"payments": rows}).to_pandas()
    assert got["user_payments__amount_sum_2h_continuous"][0] == 20.0
    assert got["payment_share__share"][0] == pytest.approx(0.5)
    assert not bool(got["ratio__big"][0])


def test_realtime_run_transformation_in_python_and_with_a_context() -> None:
    data = {"payment": {"amount": 30.0}, "user_payments": {"amount_sum_2h_continuous": 90.0}}
    assert payment_share.run_transformation(data) == {"share": 0.25}
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert payment_share.run_transformation({**data, "context": RealtimeContext(request_timestamp=when)}) == {
        "share": 0.25
    }
    assert ratio.run_transformation(data) == {"big": False}
    context = MockContext(secrets={"token": "s"}, resources={"client": 1})
    assert context.secrets == {"token": "s"} and context.resources == {"client": 1}
    assert RealtimeContext(request_timestamp=when, secrets={"k": "v"}).secrets == {"k": "v"}


def test_stream_run_transformation_on_a_frame() -> None:
    rows = pd.DataFrame({"user_id": ["a"], "amount": [2.5], "ts": [T0]})
    out = user_payments.run_transformation(rows).to_pandas()
    assert out["amount"].tolist() == [5.0]


def test_bad_input_is_named() -> None:
    with pytest.raises(InvalidRequestError, match=r"mock_inputs names \['nope'\].*\['payments'\]"):
        user_payments.get_features_for_events(
            pd.DataFrame({"user_id": ["a"], "ts": [T0]}), mock_inputs={"nope": pd.DataFrame()}
        )
    with pytest.raises(InvalidRequestError, match=r"lacks 'user_payments'"):
        payment_share.run_transformation({"payment": {"amount": 1.0}})
    with pytest.raises(InvalidRequestError, match=r"lack request column\(s\) \['amount'\]"):
        ratio.get_features_for_events(pd.DataFrame({"user_payments__amount_sum_2h_continuous": [1.0]}))
    with pytest.raises(InvalidRequestError, match=r"mocked upstream feature columns"):
        ratio.get_features_for_events(pd.DataFrame({"amount": [1.0]}))
    with pytest.raises(InvalidRequestError, match="reads no source directly"):
        payment_share.get_features_for_events(
            pd.DataFrame({"user_id": ["a"], "ts": [T0], "amount": [1.0]}), mock_inputs=pd.DataFrame()
        )  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="from_source=False"):
        user_payments.get_features_for_events(pd.DataFrame(), from_source=False)

    @realtime_feature_view(sources=[payment], mode="python", features=[Attribute("flag", Bool)])
    def wrong_output(payment):  # type: ignore[no-untyped-def]
        return {"other": True}

    with pytest.raises(DefinitionError, match=r"returned \{'other': True\}.*\['flag'\]"):
        wrong_output.run_transformation({"payment": {"amount": 1.0}})


def _featurebus_test(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurebus", "test", "--repo", str(repo), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_featurebus_test_runs_the_sample_repositorys_tecton_style_tests() -> None:
    done = _featurebus_test(SAMPLE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_featurebus_test_fails_when_a_repository_test_fails(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE, repo)
    test = repo / "fraud" / "tests" / "test_transaction_amount_is_high.py"
    test.write_text(test.read_text().replace("(110.0, True)", "(110.0, False)"))
    done = _featurebus_test(repo)
    assert done.returncode == 1
    assert "1 failed" in done.stdout


def test_the_sample_repository_compiles_with_its_ranges() -> None:
    from featurebus.repo import load_repo

    spec = load_repo(SAMPLE, "w")
    view = spec.batch_view("user_distinct_merchant_transaction_count_30d")
    assert view.source_ranges[0].start.offset_ms == -29 * 86_400_000
    assert {v.name for v in spec.realtime_feature_views} >= {"transaction_amount_is_high", "transaction_hour"}


def test_batch_run_transformation_keeps_the_ranges_output_rows(tmp_path: Path) -> None:
    from featurebus import BatchSource, FileConfig, batch_feature_view

    source = BatchSource(
        name="orders", batch_config=FileConfig(uri=str(tmp_path / "none.parquet"), timestamp_field="ts")
    )

    @batch_feature_view(
        sources=[source.unfiltered()],
        entities=[user],
        mode="pandas",
        ttl=timedelta(days=1),
        timestamp_field="ts",
        features=[Attribute("amount", Float64)],
    )
    def order_amount(orders):  # type: ignore[no-untyped-def]
        return orders[["user_id", "amount", "ts"]]

    rows = pd.DataFrame(
        {
            "user_id": ["a", "a", "a"],
            "amount": [1.0, 2.0, 3.0],
            "ts": [T0 - timedelta(hours=1), T0, T0 + timedelta(days=1)],
        }
    )
    out = order_amount.run_transformation(T0, T0 + timedelta(days=1), mock_inputs={"orders": rows}).to_pandas()
    assert out["amount"].tolist() == [2.0]  # read unfiltered, then the output kept to [start, end)
    assert order_amount.run_transformation(rows).to_pandas()["amount"].tolist() == [1.0, 2.0, 3.0]
