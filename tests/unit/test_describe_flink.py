"""``featurebus describe`` and the Flink engine: the job's state from the JobManager's REST API."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from featurebus.describe import FLINK_JOBMANAGER_ENV, flink_job_state

JOBS = {
    "jobs": [
        {"jid": "old", "name": "featurebus shop", "state": "CANCELED", "start-time": 1, "tasks": {"running": 0}},
        {"jid": "new", "name": "featurebus shop", "state": "RUNNING", "start-time": 2, "tasks": {"running": 3}},
        {"jid": "x", "name": "featurebus other", "state": "RUNNING", "start-time": 3, "tasks": {"running": 1}},
    ]
}


class _Overview(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(JOBS).encode() if self.path == "/jobs/overview" else b"{}"
        self.send_response(200 if self.path == "/jobs/overview" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def jobmanager() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Overview)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_newest_job_of_the_workspace_is_reported(jobmanager: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLINK_JOBMANAGER_ENV, jobmanager)
    assert flink_job_state("shop") == f"RUNNING (job new on {jobmanager}, 3 tasks running)"
    assert flink_job_state("absent") == f"no job named 'featurebus absent' on {jobmanager}"


def test_without_a_jobmanager_nothing_is_asked_and_a_silent_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FLINK_JOBMANAGER_ENV, raising=False)
    assert flink_job_state("shop") is None
    monkeypatch.setenv(FLINK_JOBMANAGER_ENV, "127.0.0.1:1")
    state = flink_job_state("shop", timeout_s=1.0)
    assert state is not None and state.startswith("unknown: the JobManager at 127.0.0.1:1 did not answer")
