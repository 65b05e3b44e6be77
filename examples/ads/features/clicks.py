from datetime import timedelta

from ads.entities import ad, user
from ads.sources import clicks
from featurebus import Aggregate, Field, stream_feature_view
from featurebus.aggregation_functions import last
from featurebus.types import Int64, String


@stream_feature_view(
    source=clicks,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("ad_id", String)),
        Aggregate(function="max", time_window=timedelta(hours=1), input_column=Field("dwell_ms", Int64)),
        Aggregate(function=last(5), time_window=timedelta(days=1), input_column=Field("ad_id", String)),
    ],
    description="What a user clicked lately, and how long they stayed.",
)
def user_clicks(clicks):  # type: ignore[no-untyped-def]
    return clicks[["user_id", "ad_id", "dwell_ms", "ts"]]


@stream_feature_view(
    source=clicks,
    entities=[ad],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("dwell_ms", Int64)),
        Aggregate(function="min", time_window=timedelta(hours=1), input_column=Field("dwell_ms", Int64)),
    ],
    description="An ad's clicks in the last hour.",
)
def ad_clicks(clicks):  # type: ignore[no-untyped-def]
    return clicks[["ad_id", "dwell_ms", "ts"]]
