"""No training row ever sees an event at or after its own time (real broker, offline materializer).

For each spine time T the history has events of the row's user just before (T - 1 ms), exactly at
T and just after (T + 1 ms), with amounts 1, 1000 and 100000, so any leaked event changes every
aggregate by orders of magnitude. Spine times sit mid-tile and exactly on tile boundaries (where
an interval view's window end is T itself), later rows make the read range include every event,
and the records go through Kafka and the offline materializer as in production.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest

from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.specs import AggregationSpec, FeatureSelectionSpec, FeatureServiceSpec, WorkspaceSpec
from featurebus.streams.aggregations import output_dtype
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka

MINUTE = 60_000
INTERVAL = 10 * MINUTE
T0 = int(pd.Timestamp("2024-05-01T12:00:00Z").value // 1_000_000)  # a tile boundary
SPINE_TIMES = [T0, T0 + 3 * MINUTE + 17, T0 + INTERVAL, T0 + 25 * MINUTE + 1]
FUNCTIONS = ["count", "sum", "mean", "min", "max", "last", "last_n"]


def _workspace(topic: str, name: str, interval_ms: int | None) -> WorkspaceSpec:
    base = spending_workspace(topic=topic, name=name, interval_ms=interval_ms)
    view = base.stream_feature_views[0]
    suffix = "continuous" if interval_ms is None else "10m"
    aggregations = tuple(
        AggregationSpec(
            f"amount_{fn}_1h_{suffix}",
            fn,
            "amount",
            "float64",
            60 * MINUTE,
            output_dtype(fn, "float64"),
            **({"n": 5} if fn == "last_n" else {}),
        )
        for fn in FUNCTIONS
    )
    view = dataclasses.replace(view, aggregations=aggregations)
    service = FeatureServiceSpec("spending", (FeatureSelectionSpec(view.name, tuple(a.name for a in aggregations)),))
    return dataclasses.replace(base, stream_feature_views=(view,), feature_services=(service,))


@pytest.mark.parametrize("interval_ms", [None, INTERVAL])
def test_no_feature_uses_an_event_at_or_after_the_spine_time(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path, interval_ms: int | None
) -> None:
    topic = topic_factory(partitions=2)
    name = f"leak{uuid.uuid4().hex[:8]}"
    spec = _workspace(topic, name, interval_ms)
    apply_workspace(KafkaRegistry(kafka_bootstrap), spec)
    users = [f"u{i}" for i in range(len(SPINE_TIMES))]
    with reliable_producer(kafka_bootstrap) as producer:
        for user, t in zip(users, SPINE_TIMES, strict=True):
            # After first, then at, then before: arrival order must not matter either.
            for at, amount in ((t + 1, 100_000.0), (t, 1000.0), (t - 1, 1.0)):
                producer.produce(topic, orjson.dumps({"user_id": user, "amount": amount, "ts": at}), key=user.encode())
    root = tmp_path / "offline"
    with OfflineMaterializer(kafka_bootstrap, root, name) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == 3 * len(SPINE_TIMES)

    spine = pd.DataFrame(
        {
            "user_id": [*users, "u0"],
            "ts": pd.to_datetime([*SPINE_TIMES, SPINE_TIMES[-1] + 120 * MINUTE], unit="ms", utc=True),
        }
    )
    result = get_features_for_events(spec, "spending", spine, root)
    suffix = "continuous" if interval_ms is None else "10m"

    def column(fn: str) -> list[object]:
        return result[f"user_spending__amount_{fn}_1h_{suffix}"].tolist()

    rows = len(SPINE_TIMES)
    for position, t in enumerate(SPINE_TIMES):
        # The window ends at T (continuous) or at the tile boundary at or before T; either way
        # the event at T - 1 is inside only if T - 1 is before that end.
        end = t if interval_ms is None else t - t % interval_ms
        seen = end > t - 1
        where = (position, t - T0, interval_ms)
        assert column("count")[position] == (1 if seen else 0), where
        for fn in ("sum", "mean", "min", "max", "last"):
            value = column(fn)[position]
            assert (value == 1.0) if seen else pd.isna(value), (*where, fn, value)
        if seen:
            assert list(column("last_n")[position]) == [1.0], where
    # A row two hours later: every event has left the 1-hour window, nothing lingers.
    assert column("count")[rows] == 0 and pd.isna(column("sum")[rows])
