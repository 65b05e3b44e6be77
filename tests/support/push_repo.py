"""A workspace with a push source, defined through the SDK (so the PushConfig path is compiled)."""

from __future__ import annotations

from datetime import timedelta

from featurebus import Aggregate, Entity, FeatureService, Field, PushConfig, StreamSource, stream_feature_view
from featurebus.compile import compile_workspace
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.types import Float64, Int64, String, Timestamp

user = Entity(name="user", join_keys=[Field("user_id", String)])
clicks = StreamSource(
    name="clicks",
    schema=[Field("user_id", String), Field("price", Float64), Field("quantity", Int64), Field("ts", Timestamp)],
    stream_config=PushConfig(log_offline=True),
)


@stream_feature_view(
    source=clicks,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("price", Float64)),
        Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("quantity", Int64)),
    ],
)
def user_clicks(clicks):  # type: ignore[no-untyped-def]
    return clicks


click_service = FeatureService(name="clicks", features=[user_clicks])


def push_workspace(name: str) -> WorkspaceSpec:
    return compile_workspace(name, [user, clicks, user_clicks, click_service])
