"""A failing batch materialization job fires its alert: a real `featurebus jobs run` process
(its /metrics scraped) runs a job whose transformation fails on the data, and the evaluator
fires the materialization-failure alert to a webhook receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurebus.platform.monitoring.alerts import AlertStatus
from featurebus.platform.monitoring.channels import WebhookChannel
from featurebus.platform.monitoring.monitor import Monitor, MonitorSettings, ScrapeTarget
from featurebus.platform.monitoring.scrape import scrape
from featurebus.platform.monitoring.state_store import KafkaAlertStateStore
from featurebus.platform.registry import KafkaRegistry
from tests.support.alert_receivers import Receiver

pytestmark = pytest.mark.kafka

T0 = 1714521600000  # 2024-05-01T00:00:00Z

REPO = """
from datetime import timedelta
from featurebus import Aggregate, BatchSource, Entity, Field, FileConfig, batch_feature_view
from featurebus.types import Float64, String

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri={data!r}, timestamp_field="ts"))


@batch_feature_view(sources=[tx], entities=[user], mode="pandas", offline=True, aggregation_interval=timedelta(hours=1),
                    features=[Aggregate(function="sum", time_window=timedelta(hours=6), input_column=Field("amount", Float64))])
def spend(tx):
    if len(tx):
        raise ValueError("the upstream export is corrupt")
    return tx[["user_id", "amount", "ts"]]


@batch_feature_view(sources=[tx], entities=[user], mode="pandas", offline=True, aggregation_interval=timedelta(hours=1),
                    features=[Aggregate(function="count", time_window=timedelta(hours=6), input_column=Field("amount", Float64))])
def healthy(tx):
    return tx[["user_id", "amount", "ts"]]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(bootstrap: str, home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "featurebus", *args, "--bootstrap", bootstrap],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEATUREBUS_HOME": str(home)},
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_failing_batch_job_fires_its_alert(
    kafka_bootstrap: str, tmp_path: Path, webhook: tuple[str, Receiver]
) -> None:
    rng = np.random.default_rng(5)
    data = tmp_path / "tx"
    data.mkdir()
    pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b"], 200),
            "amount": rng.integers(1, 100, 200).astype(float),
            "ts": pd.to_datetime(T0 + np.sort(rng.integers(0, 2 * 86_400_000, 200)), unit="ms", utc=True),
        }
    ).to_parquet(data / "tx.parquet")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".featurebus-repo").touch()
    (repo / "features.py").write_text(REPO.format(data=str(data)))
    home = tmp_path / "home"
    home.mkdir()
    workspace = f"jobalert{uuid.uuid4().hex[:8]}"
    _cli(kafka_bootstrap, home, "workspace", "create", workspace, "--live")
    _cli(kafka_bootstrap, home, "apply", "--repo", str(repo), "-w", workspace)
    port = _free_port()
    with open(home / "runner.log", "ab") as log:
        runner = subprocess.Popen(
            [
                *(sys.executable, "-m", "featurebus", "jobs", "run", "--workspace", workspace),
                *("--bootstrap", kafka_bootstrap, "--home", str(home), "--compaction-every-s", "0"),
                *("--metrics-port", str(port)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url, receiver = webhook
    suffix = uuid.uuid4().hex[:8]
    monitor = Monitor(
        KafkaRegistry(kafka_bootstrap),
        [workspace],
        [ScrapeTarget("jobs", f"http://127.0.0.1:{port}/metrics")],
        KafkaAlertStateStore(kafka_bootstrap, topic=f"alert-state-{suffix}"),
        {"webhook": WebhookChannel(url)},
        MonitorSettings(interval_s=0.5, shared_channels=("webhook",)),
    )
    rule = f"{workspace}.spend.materialization_failure"
    try:
        for view in ("spend", "healthy"):
            _cli(
                kafka_bootstrap,
                home,
                "materialize",
                view,
                "--start",
                "2024-05-01",
                "--end",
                "2024-05-03",
                "-w",
                workspace,
            )

        def firing() -> bool:
            states = {s.rule: s for s in monitor.step()}
            assert states[f"{workspace}.healthy.materialization_failure"].status is not AlertStatus.FIRING
            return states[rule].status is AlertStatus.FIRING

        _eventually(firing, 180, "the materialization failure alert")
        _eventually(lambda: any(b["featurebus"]["rule"] == rule for b in receiver.bodies), 10, "the webhook")
        [body] = [b for b in receiver.bodies if b["featurebus"]["rule"] == rule]
        assert body["featurebus"]["kind"] == "firing" and "materialization_failure of spend" in body["text"]
        expected = {
            "featurebus_jobs",
            "featurebus_job_duration_seconds_count",
            "featurebus_job_attempts_total",
            "featurebus_job_rows_written_total",  # once the healthy job wrote (it may finish after the alert)
            "featurebus_materialization_failures_recent",
            "featurebus_materialization_consecutive_failures",
        }
        _eventually(
            lambda: expected <= {sample.name for sample in scrape(f"http://127.0.0.1:{port}/metrics")},
            60,
            "the job runner's series",
        )
    finally:
        monitor.close()
        runner.send_signal(signal.SIGTERM)
        runner.wait(30)
