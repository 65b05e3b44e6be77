"""The README's first flow, exactly as a newcomer runs it, with no environment variable set:
``featurebus up --workspace prod`` in one shell; ``featurebus apply --repo examples/fraud
--workspace prod`` in another; events produced to the README's topic (``transactions``); features
served within seconds. ``up`` records its broker and serving address in the home for the other
commands, and ``apply`` creates the missing source topic on the local development broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurebus.platform.config import running_platform
from featurebus.platform.kafka.admin import partition_counts
from featurebus.platform.kafka.credentials import load_or_create_credentials
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.kafka.security import register_credentials
from featurebus.platform.local.generator import produce_events
from featurebus.schemas.time import format_iso_ms

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREBUS_")}  # no FEATUREBUS_KAFKA_BOOTSTRAP


def _featurebus(cwd: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "featurebus", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout_s
    )
    assert result.returncode == 0, f"featurebus {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _logs(home: Path) -> str:
    return "\n".join(
        f"--- {log.name}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted((home / "logs").glob("*.log"))
    )


def _wait_for(what: str, check: Any, timeout_s: float, up: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert up.poll() is None, f"`featurebus up` exited with {up.returncode} while waiting for {what}"
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s:g} s")


_last_answer: list[Any] = []


def _served_sum(url: str, key: str, user: str) -> float:
    response = httpx.post(
        f"{url}/api/v1/feature-service/get-features",
        timeout=5.0,
        headers={"Authorization": f"Tecton-key {key}"},
        json={
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "user_spending",
                "joinKeyMap": {"user_id": user},
                "metadataOptions": {"includeNames": True},
            }
        },
    )
    _last_answer[:] = [response.status_code, response.text[:500]]
    if response.status_code != 200:
        return 0.0
    body = response.json()
    names = [f["name"] for f in body["metadata"]["features"]]
    total = body["result"]["features"][names.index("user_transaction_stats.amount_sum_1h_continuous")]
    return float(total or 0.0)


def test_up_then_apply_in_another_shell_serves_features_within_seconds(tmp_path: Path) -> None:
    port = free_port_pair()[0]
    up = subprocess.Popen(
        [sys.executable, "-m", "featurebus", "up", "--workspace", "prod", "--port", str(port)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        home = tmp_path / ".featurebus"  # the default home: ./.featurebus of the directory `up` runs in
        platform = _wait_for("`featurebus up` to record its platform", lambda: running_platform(home), 180, up)
        assert platform.local_broker and platform.serving_url == f"http://127.0.0.1:{port}"
        # The local broker requires SASL: this process produces as the README says, with the broker
        # admin's credentials from the home (never written unless `up` made them).
        assert (home / "kafka" / "credentials.json").exists()
        register_credentials(platform.bootstrap, load_or_create_credentials(home / "kafka").admin)

        applied = _featurebus(tmp_path, "apply", "--repo", str(REPO), "--workspace", "prod")
        assert "Created source topics transactions (4 partitions each)" in applied.stdout, applied.stdout
        assert partition_counts(platform.bootstrap, ["transactions"]) == {"transactions": 4}
        secret = re.search(
            r"secret \(shown once\): (\S+)", _featurebus(tmp_path, "api-key", "create", "--workspace", "prod").stdout
        )
        assert secret is not None
        described = _featurebus(tmp_path, "describe", "user_transaction_stats", "--workspace", "prod").stdout
        assert "waiting for source topics" not in described

        now_ms = int(time.time() * 1000)
        events = [
            {
                "transaction_id": f"t{i}",
                "user_id": "user_1",
                "merchant_id": "merchant_1",
                "amount": 10.0,
                "is_online": True,
                "timestamp": format_iso_ms(now_ms - 1_000 + i),
            }
            for i in range(5)
        ]
        produced_at = time.monotonic()
        assert produce_events(platform.bootstrap, "transactions", events) == 5
        try:
            _wait_for(
                "served features", lambda: _served_sum(platform.serving_url, secret.group(1), "user_1") == 50.0, 60, up
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer {_last_answer}\n{_logs(home)}") from None
        print(f"features served {time.monotonic() - produced_at:.1f} s after the events were produced")
        assert "%4|" not in (tmp_path / ".featurebus" / "logs" / "worker.log").read_text()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)  # `up` stops every process it started, by PID
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
    output = up.stdout.read() if up.stdout else ""
    assert "%4|" not in output and "%3|" not in output, output  # librdkafka goes through logging
    assert running_platform(tmp_path / ".featurebus") is None  # `up` forgot its record when it stopped
