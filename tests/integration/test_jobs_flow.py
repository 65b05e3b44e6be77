"""Materialization jobs end to end against the real broker, through the real CLI: a batch view
materialized by `featurebus materialize --wait` and a `featurebus jobs run` process; cancel and
retry; apply queueing a backfill; a SIGKILLed runner's job taken up by the next runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

import featurebus
from featurebus.exceptions import InvalidRequestError
from featurebus.platform.registry.jobs import KafkaJobStore

pytestmark = pytest.mark.kafka

DAY_MS = 86_400_000
T0 = 1714521600000  # 2024-05-01T00:00:00Z

REPO = """
from datetime import datetime, timedelta, timezone
from featurebus import Aggregate, BatchSource, Entity, Field, FileConfig, batch_feature_view
from featurebus.types import Float64, String

user = Entity(name="user", join_keys=[Field("user_id", String)])
tx = BatchSource(name="tx", batch_config=FileConfig(uri={data!r}, timestamp_field="ts"))


@batch_feature_view(sources=[tx], entities=[user], mode="pandas", offline=True, aggregation_interval=timedelta(hours=1),
                    features=[Aggregate(function="sum", time_window=timedelta(hours=6), input_column=Field("amount", Float64))])
def spend(tx):
    return tx[["user_id", "amount", "ts"]]


@batch_feature_view(sources=[tx], entities=[user], mode="pandas", offline=True, batch_schedule=timedelta(days=1),
                    feature_start_time=datetime.fromtimestamp({start_s}, tz=timezone.utc), aggregation_interval=timedelta(hours=1),
                    features=[Aggregate(function="count", time_window=timedelta(hours=2), input_column=Field("amount", Float64))])
def daily(tx):
    return tx[["user_id", "amount", "ts"]]
"""


def _cli(bootstrap: str, home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "featurebus", *args, "--bootstrap", bootstrap],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEATUREBUS_HOME": str(home)},
    )
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


class Runner:
    """`featurebus jobs run` as a real child process, stopped (or killed) by its PID."""

    def __init__(self, bootstrap: str, home: Path, workspace: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "featurebus",
            "jobs",
            "run",
            "--workspace",
            workspace,
            "--bootstrap",
            bootstrap,
            "--home",
            str(home),
            "--compaction-every-s",
            "0",
        ]
        self.log = home / "runner.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(30)
        self.process = None


@pytest.fixture
def setup(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, Path, str, Runner]]:
    rng = np.random.default_rng(3)
    n = 3000
    data = tmp_path / "tx"
    data.mkdir()
    # Two years of events: a materialization of all of it takes hundreds of day-chunks.
    pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c"], n),
            "amount": rng.integers(1, 100, n).astype(float),
            "ts": pd.to_datetime(T0 + np.sort(rng.integers(0, 730 * DAY_MS, n)), unit="ms", utc=True),
        }
    ).to_parquet(data / "tx.parquet")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".featurebus-repo").touch()
    # The scheduled view starts three days ago: a short backfill, then one job a day.
    (repo / "features.py").write_text(REPO.format(data=str(data), start_s=(int(time.time()) // 86400 - 3) * 86400))
    home = tmp_path / "home"
    home.mkdir()
    workspace = f"jobs{uuid.uuid4().hex[:8]}"
    _cli(kafka_bootstrap, home, "workspace", "create", workspace, "--live")
    runner = Runner(kafka_bootstrap, home, workspace)
    try:
        yield workspace, home, str(repo), runner
    finally:
        runner.stop()


def _jobs(bootstrap: str, home: Path, workspace: str) -> list[dict[str, Any]]:
    return list(json.loads(_cli(bootstrap, home, "jobs", "list", "--json", "-w", workspace).stdout))


def _eventually(check: Callable[[], Any], what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.2)


def _job(bootstrap: str, workspace: str, job_id: str) -> Any:
    store = KafkaJobStore(bootstrap, workspace)
    try:
        return store.get(job_id)
    finally:
        store.close()


def test_materialize_cancel_retry_and_apply_backfill(
    kafka_bootstrap: str, setup: tuple[str, Path, str, Runner]
) -> None:
    workspace, home, repo, runner = setup
    applied = _cli(kafka_bootstrap, home, "apply", "--repo", repo, "-w", workspace).stdout
    assert "queued backfill job sched-daily-backfill" in applied  # the scheduled view's backfill
    refused = _cli(
        kafka_bootstrap,
        home,
        "materialize",
        "spend",
        "--start",
        "2024-05-01",
        "--end",
        "2024-05-03",
        "--online",
        "-w",
        workspace,
        check=False,
    )
    assert refused.returncode == 1 and "online=False" in refused.stderr

    # Queued while no runner runs: cancel it, then retry it once a runner is up.
    queued = _cli(
        kafka_bootstrap, home, "materialize", "spend", "--start", "2024-05-01", "--end", "2024-05-04", "-w", workspace
    ).stdout
    job_id = queued.split()[2].rstrip(":")
    assert "cancel requested" in _cli(kafka_bootstrap, home, "jobs", "cancel", job_id, "-w", workspace).stdout
    runner.start()
    _eventually(lambda: _job(kafka_bootstrap, workspace, job_id).state.value == "CANCELLED", "the cancel")
    _cli(kafka_bootstrap, home, "jobs", "retry", job_id, "-w", workspace)
    _eventually(lambda: _job(kafka_bootstrap, workspace, job_id).state.value == "SUCCESS", "the retry")
    shown = json.loads(_cli(kafka_bootstrap, home, "jobs", "show", job_id, "--json", "-w", workspace).stdout)
    assert (shown["attempt"], shown["progress"], shown["offline"], shown["online"]) == (2, 1.0, True, False)

    # --wait, on a range the earlier job overlaps: refused without --overwrite.
    overlap = _cli(
        kafka_bootstrap,
        home,
        "materialize",
        "spend",
        "--start",
        "2024-05-02",
        "--end",
        "2024-05-06",
        "-w",
        workspace,
        check=False,
    )
    assert overlap.returncode == 1 and "--overwrite" in overlap.stderr
    waited = _cli(
        kafka_bootstrap,
        home,
        "materialize",
        "spend",
        "--start",
        "2024-05-02",
        "--end",
        "2024-05-06",
        "--overwrite",
        "--wait",
        "-w",
        workspace,
    ).stdout
    assert "SUCCESS 100%" in waited
    rows = ds.dataset(str(home / "offline" / "batch_views" / workspace / "spend"), format="parquet").to_table()
    assert rows.num_rows > 0
    jobs = {j["id"]: j for j in _jobs(kafka_bootstrap, home, workspace)}
    _eventually(
        lambda: _job(kafka_bootstrap, workspace, "sched-daily-backfill").state.value == "SUCCESS", "the apply backfill"
    )
    assert jobs["sched-daily-backfill"]["origin"] == "apply"

    # The same through Tecton's SDK methods.
    fv = featurebus.get_workspace(workspace, bootstrap=kafka_bootstrap, home=home).get_feature_view("spend")
    sdk_id = fv.trigger_materialization_job(datetime(2024, 6, 1), datetime(2024, 6, 3), online=False, offline=True)
    assert fv.wait_for_materialization_job(sdk_id, timeout=timedelta(minutes=2)).state.value == "SUCCESS"
    assert fv.get_materialization_job(sdk_id).max_attempts == 3  # use_tecton_managed_retries=True
    assert sdk_id in {j.id for j in fv.list_materialization_jobs()}
    with pytest.raises(InvalidRequestError, match="overwrite=True"):
        fv.trigger_materialization_job(datetime(2024, 6, 2), datetime(2024, 6, 4), online=False, offline=True)

    # Cancel while running: two years of day-chunks leave time to ask.
    long_id = (
        _cli(
            kafka_bootstrap,
            home,
            "materialize",
            "spend",
            "--start",
            "2024-05-01",
            "--end",
            "2026-05-01",
            "--overwrite",
            "-w",
            workspace,
        )
        .stdout.split()[2]
        .rstrip(":")
    )
    _eventually(lambda: _job(kafka_bootstrap, workspace, long_id).state.value == "RUNNING", "the long job starting")
    _cli(kafka_bootstrap, home, "jobs", "cancel", long_id, "-w", workspace)
    cancelled = _eventually(
        lambda: (j := _job(kafka_bootstrap, workspace, long_id)).state.value != "RUNNING" and j,
        "the running job stopping",
    )
    assert cancelled.state.value == "CANCELLED" and cancelled.progress < 1.0


def test_a_sigkilled_runner_s_job_is_run_by_the_next_runner(
    kafka_bootstrap: str, setup: tuple[str, Path, str, Runner]
) -> None:
    workspace, home, repo, runner = setup
    _cli(kafka_bootstrap, home, "apply", "--repo", repo, "-w", workspace)
    job_id = (
        _cli(
            kafka_bootstrap,
            home,
            "materialize",
            "spend",
            "--start",
            "2024-05-01",
            "--end",
            "2025-05-01",
            "-w",
            workspace,
        )
        .stdout.split()[2]
        .rstrip(":")
    )
    runner.start()
    _eventually(
        lambda: (j := _job(kafka_bootstrap, workspace, job_id)).state.value == "RUNNING" and j.progress > 0,
        "the job making progress",
    )
    runner.stop(signal.SIGKILL)
    assert _job(kafka_bootstrap, workspace, job_id).state.value == "RUNNING"  # nobody runs it now
    runner.start()
    done = _eventually(
        lambda: (j := _job(kafka_bootstrap, workspace, job_id)).state.value == "SUCCESS" and j,
        "the next runner finishing it",
        timeout_s=300,
    )
    assert (done.restarts, done.attempt, done.error) == (1, 1, None)  # taken over once, same attempt
    rows = (
        ds.dataset(str(home / "offline" / "batch_views" / workspace / "spend"), format="parquet").to_table().to_pandas()
    )
    # Run twice over the same range, written once: idempotent per range.
    events = pd.read_parquet(Path(repo).parent / "tx" / "tx.parquet")
    in_range = events[
        (events.ts >= pd.Timestamp("2024-05-01", tz="UTC")) & (events.ts < pd.Timestamp("2025-05-01", tz="UTC"))
    ]
    assert len(rows) == len(in_range) and not rows.duplicated(subset=["user_id", "ts"]).any()
