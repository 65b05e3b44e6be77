"""A workspace created while `featurebus up` runs gets its components' Kafka rights within
seconds: ingestion into it works without a restart or `featurebus kafka setup`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.security import security_for
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.time import format_iso_ms
from tests.support.push_repo import push_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


def test_ingestion_into_a_workspace_created_after_up_is_allowed_by_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    if security_for(kafka_bootstrap).username is None:
        pytest.skip("the session broker is not secured (an external FEATUREBUS_KAFKA_BOOTSTRAP without SASL)")
    first = f"first_{uuid.uuid4().hex[:8]}"
    later = f"later_{uuid.uuid4().hex[:8]}"
    with LocalPlatform(tmp_path / "home", first, bootstrap=kafka_bootstrap, kafka_principals=True) as platform:
        registry = KafkaRegistry(kafka_bootstrap)
        create_workspace(registry, later, live=True)  # after `up` granted its rights
        apply_workspace(registry, push_workspace(later))
        _, writer = create_api_key(registry, later, "writer")
        record = {"user_id": "u1", "price": 1.0, "quantity": 2, "ts": format_iso_ms(int(time.time() * 1000))}
        body = {"workspace_name": later, "records": {"clicks": [{"record": record}]}}
        with httpx.Client(base_url=platform.serving_url, timeout=30.0) as client:
            deadline = time.monotonic() + 45
            while True:  # serving learns of the workspace and key, `up` grants the rights
                response = client.post("/ingest", json=body, headers={"Authorization": f"Tecton-key {writer}"})
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert response.status_code == 200, response.text
