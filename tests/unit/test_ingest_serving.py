"""The SDK's ingestion through the serving API, without a server: an unreachable one is named."""

from __future__ import annotations

import pytest

from featurebus.ingest_serving import ingest_through_serving
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.schemas.errors import FeaturebusError


def test_an_unreachable_serving_api_is_named_with_how_to_point_at_one() -> None:
    url = f"http://127.0.0.1:{free_port_pair()[0]}"  # nothing listens there
    with pytest.raises(FeaturebusError, match="--serving-url") as raised:
        ingest_through_serving(url, "fbk_x", "ws", "user_scores", [{"record": {"user_id": "u1"}}])
    assert url in str(raised.value)
