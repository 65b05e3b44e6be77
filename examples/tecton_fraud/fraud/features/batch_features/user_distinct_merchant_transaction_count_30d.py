from datetime import datetime, timedelta

from featurebus import Attribute, TectonTimeConstant, batch_feature_view, materialization_context
from featurebus.types import Int64
from fraud.data_sources.transactions import transactions_batch
from fraud.entities import user


# A "custom aggregation" with incremental_backfills=True: each run reads the 30 days of
# transactions up to the end of its window and writes one row per user at that end.
@batch_feature_view(
    sources=[
        transactions_batch.select_range(
            start_time=TectonTimeConstant.MATERIALIZATION_START_TIME - timedelta(days=29),
            end_time=TectonTimeConstant.MATERIALIZATION_END_TIME,
        )
    ],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    feature_start_time=datetime(2024, 4, 1),
    batch_schedule=timedelta(days=1),
    incremental_backfills=True,
    ttl=timedelta(days=2),
    timestamp_field="timestamp",
    features=[Attribute("distinct_merchant_transaction_count_30d", Int64)],
    description="How many distinct merchants a user paid in the last 30 days",
)
def user_distinct_merchant_transaction_count_30d(transactions_batch, context=materialization_context()):
    counts = (
        transactions_batch.groupby("user_id", as_index=False)["merchant"]
        .nunique()
        .rename(columns={"merchant": "distinct_merchant_transaction_count_30d"})
    )
    counts["timestamp"] = context.end_time - timedelta(microseconds=1)
    return counts
