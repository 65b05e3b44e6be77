from datetime import timedelta

from featurebus import Aggregate, Field, batch_feature_view
from featurebus.types import Float64
from recsys.data_sources.interactions import user_interactions
from recsys.entities import user


# A batch view over the stream source's history files, tiled daily, split by category.
@batch_feature_view(
    sources=[user_interactions],
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(days=1),
    aggregation_secondary_key="category",
    timestamp_field="timestamp",
    features=[Aggregate(function="sum", time_window=timedelta(days=7), input_column=Field("price", Float64))],
    description="What each user spent per category over the last week",
)
def user_category_purchases(user_interactions):
    purchases = user_interactions[user_interactions["event"] == "purchase"]
    return purchases[["user_id", "category", "price", "timestamp"]]
