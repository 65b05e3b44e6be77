from datetime import timedelta

from featurebus import Aggregate, Field, stream_feature_view
from featurebus.types import Float64
from fraud.entities import user
from fraud.sources import transactions


@stream_feature_view(
    source=transactions,
    entities=[user],
    mode="pandas",
    timestamp_field="timestamp",
    features=[
        Aggregate(function="count", time_window=timedelta(minutes=10), input_column=Field("amount", Float64)),
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("amount", Float64)),
        Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("amount", Float64)),
        Aggregate(function="mean", time_window=timedelta(hours=1), input_column=Field("amount", Float64)),
        Aggregate(function="sum", time_window=timedelta(days=1), input_column=Field("amount", Float64)),
        Aggregate(function="mean", time_window=timedelta(days=1), input_column=Field("amount", Float64)),
    ],
    online=True,
    offline=True,
    description="How much and how often a user spends: six windows, continuous mode.",
)
def user_transaction_stats(transactions):
    return transactions[["user_id", "amount", "timestamp"]]
