"""Waiting for a started serving replica to answer a workspace's lookups."""

from __future__ import annotations

import time
from typing import Any

import httpx

from featurebus.platform.local.up import LocalPlatform

# What a replica answers before it can serve a new workspace: 503 while it catches up with the
# bus, 401 until it read the key, 404 until it read the workspace.
NOT_YET = (401, 404, 503)


def wait_until_served(
    platform: LocalPlatform, client: httpx.Client, params: dict[str, Any], timeout_s: float = 60.0
) -> None:
    """Post ``get-features`` with ``params`` until the replica answers with anything but ``NOT_YET``."""
    deadline = time.monotonic() + timeout_s
    while client.post("/api/v1/feature-service/get-features", json={"params": params}).status_code in NOT_YET:
        platform.check()
        assert time.monotonic() < deadline, platform.log_tail("serving")
        time.sleep(0.2)
