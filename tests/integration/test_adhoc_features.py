"""Ad hoc features in a development workspace, against the real broker: it is never materialized,
yet ``fv.get_features_for_events``, ``fv.get_features_in_range`` and a service's
``get_features_for_events`` compute its (edited) definitions from what a live workspace with the
same push source materialized offline. Values are checked against the brute-force oracle."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest

import featurebus
from featurebus.exceptions import NotFoundError
from featurebus.platform.kafka.clients import reliable_producer
from featurebus.platform.offline.materializer import OfflineMaterializer
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.specs import AggregationSpec, WorkspaceSpec
from tests.support.oracle import Event, close, feature_value
from tests.support.push_repo import push_workspace

pytestmark = pytest.mark.kafka

MINUTE = 60_000
T0 = int(pd.Timestamp("2025-06-01T12:00:00Z").value // 1_000_000)
USERS = ["u0", "u1", "u2"]


def _experiment(name: str) -> WorkspaceSpec:
    """The live repository with a 30-minute quantity sum added: what a user tries out in a dev workspace."""
    spec = push_workspace(name)
    view = spec.stream_feature_views[0]
    extra = AggregationSpec("quantity_sum_30m_continuous", "sum", "quantity", "int64", 30 * MINUTE, "int64")
    return dataclasses.replace(
        spec, stream_feature_views=(dataclasses.replace(view, aggregations=(*view.aggregations, extra)),)
    )


def test_a_development_workspace_computes_features_from_live_offline_data(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    prod, dev, lonely = f"prod_{suffix}", f"dev_{suffix}", f"lonely_{suffix}"
    live_spec = apply_workspace(KafkaRegistry(kafka_bootstrap), push_workspace(prod))
    rng = random.Random(7)
    events = [
        {
            "user_id": rng.choice(USERS),
            "price": 1.0,
            "quantity": rng.randrange(1, 9),
            "ts": T0 + rng.randrange(90 * MINUTE),
        }
        for _ in range(200)
    ]
    with reliable_producer(kafka_bootstrap) as producer:
        for record in events:
            producer.produce(
                live_spec.stream_sources[0].kafka.topics[0], orjson.dumps(record), key=str(record["user_id"]).encode()
            )
    with OfflineMaterializer(kafka_bootstrap, tmp_path / "offline", prod) as materializer:
        assert materializer.run_until_caught_up(timeout_s=60) == len(events)

    create_workspace(KafkaRegistry(kafka_bootstrap), dev, live=False)
    apply_workspace(KafkaRegistry(kafka_bootstrap), _experiment(dev), create_live=False)
    ws = featurebus.get_workspace(dev, bootstrap=kafka_bootstrap, home=tmp_path)
    assert not ws.live and not (tmp_path / "offline" / "sources" / dev).exists()  # nothing materialized for it
    quantities = [Event((e["user_id"],), int(e["ts"]), e["quantity"]) for e in events]  # type: ignore[call-overload]

    spine = pd.DataFrame(
        {
            "user_id": [rng.choice([*USERS, "nobody"]) for _ in range(60)],
            "timestamp": pd.to_datetime([T0 + rng.randrange(100 * MINUTE) for _ in range(60)], unit="ms", utc=True),
        }
    )
    frame = ws.get_feature_view("user_clicks").get_features_for_events(spine)
    via_service = ws.get_feature_service("clicks").get_features_for_events(spine).to_pandas()  # Tecton's idiom
    for row, service_row in zip(frame.itertuples(index=False), via_service.itertuples(index=False), strict=True):
        t_ms = int(row.timestamp.value // 1_000_000)
        for column, window in (
            ("user_clicks__quantity_sum_30m_continuous", 30 * MINUTE),
            ("user_clicks__quantity_sum_1h_continuous", 60 * MINUTE),
        ):
            want = feature_value(quantities, (row.user_id,), t_ms, "sum", window, None)
            got = getattr(row, column)
            assert close(None if pd.isna(got) else got, want), (column, row.user_id, t_ms, got, want)
        assert row.user_clicks__price_count_1h_continuous == service_row.user_clicks__price_count_1h_continuous

    start, end = (
        datetime.fromtimestamp((T0 + 20 * MINUTE) / 1000, UTC),
        datetime.fromtimestamp((T0 + 80 * MINUTE) / 1000, UTC),
    )
    ranged = ws.get_feature_view("user_clicks").get_features_in_range(start, end)
    assert list(ranged.columns[:1]) == ["user_id"] and list(ranged.columns[-2:]) == ["_valid_from", "_valid_to"]
    assert set(ranged["user_id"]) == set(USERS)
    for user, rows in ranged.groupby("user_id"):
        assert rows["_valid_from"].iloc[0] == pd.Timestamp(start)
        assert rows["_valid_to"].iloc[-1] == pd.Timestamp(end)
        assert (
            rows["_valid_from"].iloc[1:].to_numpy() == rows["_valid_to"].iloc[:-1].to_numpy()
        ).all()  # no gap, no overlap
        for row in rows.to_dict("records"):
            for t in (row["_valid_from"], row["_valid_to"] - pd.Timedelta(milliseconds=1)):
                want = feature_value(quantities, (user,), int(t.value // 1_000_000), "sum", 30 * MINUTE, None)
                got = row["quantity_sum_30m_continuous"]
                assert close(None if pd.isna(got) else got, want), (user, t, row)
    only_u1 = ws.get_feature_view("user_clicks").get_features_in_range(
        start, end, entities=pd.DataFrame({"user_id": ["u1"]})
    )
    assert set(only_u1["user_id"]) == {"u1"} and len(only_u1) == (ranged["user_id"] == "u1").sum()

    # A development workspace whose push source no live workspace has: the error says what to do.
    create_workspace(KafkaRegistry(kafka_bootstrap), lonely, live=False)
    renamed = push_workspace(lonely)
    source = dataclasses.replace(renamed.stream_sources[0], name="taps")
    view = dataclasses.replace(renamed.stream_feature_views[0], source="taps")
    apply_workspace(
        KafkaRegistry(kafka_bootstrap),
        dataclasses.replace(renamed, stream_sources=(source,), stream_feature_views=(view,)),
        create_live=False,
    )
    with pytest.raises(NotFoundError, match="no offline data"):
        featurebus.get_workspace(lonely, bootstrap=kafka_bootstrap, home=tmp_path).get_feature_view(
            "user_clicks"
        ).get_features_for_events(spine)
