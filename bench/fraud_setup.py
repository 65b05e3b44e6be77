"""The featurebus side of the stream benchmarks: the example repo on a topic of our choosing, a
running platform for one workspace, and an HTTP client for its features.

Each repetition gets its own workspace and source topic, so no state (worker RocksDB, consumer
group offsets, feature topics, online store) carries over from one to the next.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.harness import REPO_ROOT
from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.topics import feature_topic
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.repo import load_repo
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["EXAMPLE_REPO", "SOURCE", "FeatureClient", "apply_fraud", "feature_topics"]

EXAMPLE_REPO = REPO_ROOT / "examples" / "fraud"
SOURCE = "transactions"  # the example's stream source (and, unrewritten, its topic)
SERVICE = "fraud_detection"
USER_VIEW = "user_transaction_stats"

log = logging.getLogger(__name__)


def fraud_spec(workspace: str, topic: str) -> WorkspaceSpec:
    """``examples/fraud`` compiled for ``workspace``, its source reading ``topic`` instead."""
    spec = load_repo(EXAMPLE_REPO, workspace)
    sources = tuple(
        dataclasses.replace(s, kafka=dataclasses.replace(s.kafka, topics=(topic,))) if s.name == SOURCE else s
        for s in spec.stream_sources
    )
    if sources == spec.stream_sources:
        raise LookupError(f"{EXAMPLE_REPO} has no stream source named {SOURCE!r}")
    return dataclasses.replace(spec, stream_sources=sources)


def apply_fraud(bootstrap: str, workspace: str, topic: str) -> tuple[WorkspaceSpec, str]:
    """Apply the example to ``workspace`` reading ``topic``; returns the spec and a reader key."""
    spec = apply_workspace(KafkaRegistry(bootstrap), fraud_spec(workspace, topic))
    _, secret = create_api_key(KafkaRegistry(bootstrap), workspace, "reader", "bench")
    return spec, secret


def feature_topics(spec: WorkspaceSpec) -> list[str]:
    return [feature_topic(spec.name, v.name) for v in spec.stream_feature_views if v.online]


class FeatureClient:
    """``get-features-batch`` for many users at once, one keep-alive connection.

    The batch endpoint answers every pending user in one round trip, so a poller's cycle (and
    hence the resolution of a freshness measurement) does not grow with the number of users.
    ``http.client`` rather than httpx: the freshness poller asks over a hundred times a second on
    the machine that also runs the platform, and httpx's request machinery was a fifth of the
    benchmark process's CPU (py-spy), taken from the processes being measured.
    """

    def __init__(self, url: str, workspace: str, secret: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
        self._headers = {"Authorization": f"Tecton-key {secret}", "Content-Type": "application/json"}
        self._workspace = workspace

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self._connection.request(method, path, body=body, headers=self._headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def features(self, users: list[str]) -> list[dict[str, Any]]:
        """``[{feature name without view prefix: value}]`` for the user view, one per user."""
        status, raw = self._request(
            "POST",
            "/api/v1/feature-service/get-features-batch",
            orjson.dumps(
                {
                    "params": {
                        "workspaceName": self._workspace,
                        "featureServiceName": SERVICE,
                        "requestData": [{"joinKeyMap": {"user_id": u, "merchant_id": "merchant_0"}} for u in users],
                    }
                }
            ),
        )
        if status != 200:
            raise RuntimeError(f"get-features-batch answered {status}: {raw[:300]!r}")
        body = orjson.loads(raw)
        names = [n if isinstance(n, str) else n["name"] for n in body["metadata"]["features"]]
        prefix = USER_VIEW + "."
        wanted = [(i, n[len(prefix) :]) for i, n in enumerate(names) if n.startswith(prefix)]
        return [{name: row["features"][i] for i, name in wanted} for row in body["result"]]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/ready`` says the online store caught up with the bus."""
        deadline = time.monotonic() + timeout_s
        while self._request("GET", "/ready")[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"/ready did not turn 200 within {timeout_s:g}s")
            time.sleep(0.1)

    def close(self) -> None:
        self._connection.close()


def platform_home(root: Path, workspace: str) -> Path:
    home = root / workspace
    home.mkdir(parents=True, exist_ok=True)
    return home
