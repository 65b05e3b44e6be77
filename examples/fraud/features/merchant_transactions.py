from datetime import timedelta

from featurebus import Aggregate, Field, stream_feature_view
from featurebus.types import Float64
from fraud.entities import merchant
from fraud.sources import transactions


@stream_feature_view(
    source=transactions,
    entities=[merchant],
    mode="pandas",
    timestamp_field="timestamp",
    aggregation_interval=timedelta(minutes=5),
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("online_amount", Float64)),
        Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("online_amount", Float64)),
        Aggregate(function="mean", time_window=timedelta(hours=1), input_column=Field("online_amount", Float64)),
        Aggregate(function="sum", time_window=timedelta(days=1), input_column=Field("online_amount", Float64)),
    ],
    online=True,
    offline=True,
    description="Online (card-not-present) volume per merchant, in 5-minute tiles.",
)
def merchant_online_volume(transactions):
    online = transactions[transactions["is_online"]]
    return online.assign(online_amount=online["amount"])[["merchant_id", "online_amount", "timestamp"]]
