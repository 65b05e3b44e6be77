from datetime import UTC, datetime, timedelta

from featurebus import Aggregate, Field, stream_feature_view
from featurebus.types import Float64
from fraud.data_sources.transactions import transactions_stream
from fraud.entities import user


@stream_feature_view(
    source=transactions_stream,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("amt", Float64)),
        Aggregate(function="mean", time_window=timedelta(days=1), input_column=Field("amt", Float64)),
        Aggregate(function="count", time_window=timedelta(days=1), input_column=Field("amt", Float64)),
    ],
    # History before the topic's first retained event is backfilled from the source's batch_config
    # (data/transactions.csv), one job per day, as Tecton does.
    feature_start_time=datetime(2024, 4, 1, tzinfo=UTC),
    batch_schedule=timedelta(days=1),
    description="Transaction amount statistics and totals over a series of time windows",
)
def user_transaction_amount_metrics(transactions_stream):
    return transactions_stream[["user_id", "amt", "timestamp"]]
