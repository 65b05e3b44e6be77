"""Training sets equal what the serving API returned, row by row (real broker, ``LocalPlatform``).

Serving answers for "now", so the spine is made of the moments the API was asked: every example
(hypothesis, a few) produces a random history of events for fresh users, all in the last 50
minutes (out of order, some amounts null), waits until serving counts every event, asks
``get-features`` for each user (and a user without events) with ``includeEffectiveTimes``, and
takes the continuous view's effective time, which is the server's "now" to the millisecond, as
that spine row's timestamp. The interval view's window end is the same function of that time
online and offline (the tile boundary at or before it), so both sides evaluate the same windows:
the 10-minute windows end among the events, so off-by-one edges would show. The training set is
then built from what the offline materializer wrote, and each value must equal the served one
(floats to 1e-9 relative: the two sides sum in different orders).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from glob import glob as globbed
from typing import Any

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurebus.platform.api_keys import create_api_key
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.offline.store import source_glob
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.training.training_sets import feature_column, get_features_for_events
from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.schemas.time import format_iso_ms
from featurebus.streams.aggregations import output_dtype
from featurebus.streams.records import parse_timestamp_ms
from tests.support.oracle import close
from tests.support.replica import wait_until_served

pytestmark = pytest.mark.kafka

MINUTE = 60_000
HOUR = 60 * MINUTE
SERVICE = "parity"
_SEQUENCE = itertools.count()


def _view(
    name: str, interval_ms: int | None, functions: list[str], windows: list[tuple[str, int]]
) -> StreamFeatureViewSpec:
    suffix = "continuous" if interval_ms is None else "5m"
    return StreamFeatureViewSpec(
        name=name,
        source="payments",
        entities=("user",),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=TransformationSpec("pandas", "t", "def t(df):\n    return df[['user_id', 'amount', 'ts']]\n"),
        aggregations=tuple(
            AggregationSpec(
                f"amount_{fn}_{label}_{suffix}", fn, "amount", "float64", window, output_dtype(fn, "float64")
            )
            for label, window in windows
            for fn in functions
        ),
        aggregation_interval_ms=interval_ms,
    )


# count/sum/mean take the SQL path of the training set, the others the engine's aggregators.
VIEWS = (
    _view(
        "spend",
        None,
        ["count", "sum", "mean", "min", "max", "last", "stddev_samp"],
        [("10m", 10 * MINUTE), ("1h", HOUR)],
    ),
    _view("spend_tiled", 5 * MINUTE, ["count", "sum", "max"], [("10m", 10 * MINUTE), ("1h", HOUR)]),
)


def _spec(workspace: str, topic: str) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=workspace,
        entities=(EntitySpec("user", (FieldSpec("user_id", "string"),)),),
        stream_sources=(
            StreamSourceSpec(
                "payments",
                (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
                KafkaConfigSpec((topic,), "ts", watermark_delay_ms=2 * HOUR),
            ),
        ),
        stream_feature_views=VIEWS,
        feature_services=(
            FeatureServiceSpec(
                SERVICE, tuple(FeatureSelectionSpec(v.name, tuple(a.name for a in v.aggregations)) for v in VIEWS)
            ),
        ),
    )


class Running:
    def __init__(self, platform: LocalPlatform, spec: WorkspaceSpec, topic: str, key: str) -> None:
        self.platform, self.spec, self.topic = platform, spec, topic
        self.client = httpx.Client(
            base_url=platform.serving_url, timeout=10.0, headers={"Authorization": f"Bearer {key}"}
        )
        self.produced = 0

    def served(self, user: str) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/feature-service/get-features",
            json={
                "params": {
                    "workspaceName": self.spec.name,
                    "featureServiceName": SERVICE,
                    "joinKeyMap": {"user_id": user},
                    "metadataOptions": {"includeEffectiveTimes": True, "includeNames": True},
                }
            },
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    suffix = uuid.uuid4().hex[:8]
    workspace, topic = f"parity_{suffix}", f"parity_{suffix}"
    ensure_topics(kafka_bootstrap, [TopicConfig(topic, partitions=3)])
    spec = apply_workspace(KafkaRegistry(kafka_bootstrap), _spec(workspace, topic))
    _, key = create_api_key(KafkaRegistry(kafka_bootstrap), workspace, "reader")
    with LocalPlatform(tmp_path_factory.mktemp("parity"), workspace, bootstrap=kafka_bootstrap) as platform:
        state = Running(platform, spec, topic, key)
        wait_until_served(
            platform,
            state.client,
            {"workspaceName": workspace, "featureServiceName": SERVICE, "joinKeyMap": {"user_id": "x"}},
        )
        try:
            yield state
        finally:
            state.client.close()


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, str) else value  # int64 travels as a string


def _wait_served_counts(state: Running, counts: dict[str, int]) -> None:
    """Until the 1 h count of every user (all its events are younger) is what was produced."""
    deadline = time.monotonic() + 90
    for user, expected in counts.items():
        while True:
            state.platform.check()
            body = state.served(user)
            names = [f["name"] for f in body["metadata"]["features"]]
            got = _num(body["result"]["features"][names.index("spend.amount_count_1h_continuous")])
            if got == expected:
                break
            assert time.monotonic() < deadline, (
                f"{user}: served count {got}, produced {expected}\n{state.platform.log_tail('worker')}"
            )
            time.sleep(0.3)


def _wait_offline(state: Running) -> None:
    glob = source_glob(state.platform.offline_dir, state.spec.name, "payments")
    deadline = time.monotonic() + 90
    while True:
        state.platform.check()
        files = globbed(glob)
        if files and sum(len(pd.read_parquet(p, columns=["_offset"])) for p in files) >= state.produced:
            return
        assert time.monotonic() < deadline, state.platform.log_tail("offline")
        time.sleep(0.3)


_amounts = st.one_of(
    st.none(), st.floats(-1000, 1000, allow_nan=False, allow_infinity=False), st.integers(-3, 3).map(float)
)


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_training_set_equals_what_serving_returned(running: Running, data: st.DataObject) -> None:
    example = next(_SEQUENCE)
    users = [f"e{example}_{running.spec.name}_u{i}" for i in range(data.draw(st.integers(1, 3)))]
    now_ms = int(time.time() * 1000)
    # Ages from 1 to 50 minutes; the served "now" comes a few seconds later, so the 10-minute
    # windows end inside the history and the 1-hour ones cover all of it.
    events = data.draw(
        st.lists(st.tuples(st.sampled_from(users), st.integers(MINUTE, 50 * MINUTE), _amounts), min_size=1, max_size=40)
    )
    records = [{"user_id": u, "amount": a, "ts": format_iso_ms(now_ms - age)} for u, age, a in events]
    assert produce_events(running.platform.bootstrap, running.topic, records) == len(records)
    running.produced += len(records)
    _wait_served_counts(running, {u: sum(1 for e in events if e[0] == u and e[2] is not None) for u in users})

    asked = [*users, f"nobody_{example}"]
    asked += data.draw(st.lists(st.sampled_from(asked), max_size=3))  # the same user at a later "now"
    served = []
    for user in asked:
        body = running.served(user)
        features = body["metadata"]["features"]
        effective = {f["name"].split(".")[0]: parse_timestamp_ms(f["effectiveTime"]) for f in features}
        served.append(
            (
                user,
                effective["spend"],
                {f["name"]: _num(v) for f, v in zip(features, body["result"]["features"], strict=True)},
            )
        )
    spine = pd.DataFrame(
        {"user_id": [u for u, _, _ in served], "ts": pd.to_datetime([t for _, t, _ in served], unit="ms", utc=True)}
    )

    _wait_offline(running)
    result = get_features_for_events(running.spec, SERVICE, spine, running.platform.offline_dir)
    assert len(result) == len(spine)
    for position, (user, t_ms, values) in enumerate(served):
        for name, online in values.items():
            view, feature = name.split(".")
            offline = result[feature_column(view, feature)].iloc[position]
            offline = None if pd.isna(offline) else offline
            assert close(online, offline), (
                f"row {position} ({user} at {t_ms}): {name} served {online}, training {offline}"
            )
