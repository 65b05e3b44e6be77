"""``featurebus monitoring drift|parity``: the control plane's stored reports, through a real
control-plane app on 127.0.0.1 and the CLI's login (``FEATUREBUS_CONTROL_URL``/``_API_KEY``)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from featurebus import cli_monitoring_reports
from featurebus.cli import main
from featurebus.platform.served.reports import ReportStore
from featurebus.serving.control.app import create_control_app
from tests.support.control import ControlFixture, control_fixture

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR

PARITY = {
    "workspace": "a",
    "featureService": "spending",
    "checkedRequests": 40,
    "relativeTolerance": 1e-9,
    "views": {"user_spending": {"checked": 40, "mismatches": 1, "mismatchRatio": 0.025}},
    "features": [
        {
            "featureView": "user_spending",
            "feature": "amount_sum_1h_continuous",
            "checked": 40,
            "mismatches": 1,
            "mismatchRatio": 0.025,
            "examples": [
                {
                    "requestId": "r-7",
                    "requestTime": "2023-11-14T22:00:00+00:00",
                    "keys": {"user_id": "alice"},
                    "served": 30.0,
                    "offline": 60.0,
                }
            ],
        }
    ],
}


def _method(status: str, statistic: float) -> dict[str, Any]:
    return {
        "status": status,
        "statistic": statistic,
        "threshold": 0.2,
        "pValue": None,
        "referenceCount": 500,
        "currentCount": 480,
    }


DRIFT = {
    "workspace": "a",
    "featureView": "user_spending",
    "reference": {"kind": "window", "startMs": T0 - 24 * HOUR, "endMs": T0},
    "startMs": T0,
    "endMs": T0 + 2 * HOUR,
    "bucketMs": HOUR,
    "features": [
        {
            "feature": "amount_sum_1h_continuous",
            "dtype": "float64",
            "comparable": True,
            "categorical": False,
            "latest": {"bucketStartMs": T0 + HOUR, "status": "drifted", "methods": {"psi": _method("drifted", 0.61)}},
            "psi": 0.61,
            "buckets": [
                {"bucketStartMs": T0, "status": "ok", "methods": {"psi": _method("ok", 0.01)}},
                {"bucketStartMs": T0 + HOUR, "status": "drifted", "methods": {"psi": _method("drifted", 0.61)}},
            ],
        },
        {"feature": "last_merchants", "dtype": "array<string>", "comparable": False, "buckets": []},
    ],
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlFixture]:
    fixture = control_fixture()
    port = _free_port()
    app = create_control_app(fixture.plane, offline_root=tmp_path)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the control plane did not start"
        time.sleep(0.02)
    monkeypatch.setenv("FEATUREBUS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEATUREBUS_CONTROL_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FEATUREBUS_API_KEY", fixture.secrets["p-viewer"])
    monkeypatch.setattr(cli_monitoring_reports.console, "width", 200)  # no wrapped cells in the asserts
    try:
        yield fixture
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parity_and_drift_as_tables_and_json(
    control: ControlFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(capsys, "monitoring", "parity", "spending", "-w", "a")
    assert code == 1 and "no parity report" in err  # the control plane's 404, said as such

    reports = ReportStore(tmp_path)
    reports.write("a", "parity", "spending", PARITY)
    reports.write("a", "drift", "user_spending", DRIFT)

    code, out, _ = _cli(capsys, "monitoring", "parity", "spending", "-w", "a", "--json")
    assert code == 0 and json.loads(out) == PARITY
    code, out, _ = _cli(capsys, "monitoring", "parity", "spending", "-w", "a")
    assert code == 0
    assert "40 logged requests checked" in out
    assert "amount_sum_1h_continuous" in out and "0.025" in out
    assert "request r-7" in out and "served 30.0, offline 60.0" in out

    code, out, _ = _cli(capsys, "monitoring", "drift", "user_spending", "-w", "a", "--json")
    assert code == 0 and json.loads(out)["features"] == DRIFT["features"]
    code, out, _ = _cli(capsys, "monitoring", "drift", "user_spending", "-w", "a")
    assert code == 0
    row = next(line for line in out.splitlines() if "amount_sum_1h_continuous" in line)
    assert "drifted" in row and "0.61" in row
    assert "not comparable" in out


def test_the_role_and_the_names_are_checked(control: ControlFixture, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "monitoring", "drift", "nope", "-w", "a")
    assert code == 1 and "nope" in err
    code, _, err = _cli(capsys, "monitoring", "parity", "spending", "-w", "b")  # the viewer has no role in b
    assert code == 1 and "viewer" in err.lower()
