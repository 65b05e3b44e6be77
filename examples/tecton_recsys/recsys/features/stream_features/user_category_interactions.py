from datetime import timedelta

from featurebus import Aggregate, Field, stream_feature_view
from featurebus.types import Int64, String
from recsys.data_sources.interactions import user_interactions
from recsys.entities import user


# Per-user counts split by item category: with aggregation_secondary_key every feature is an
# array with one element per category seen in its window, aligned with category_keys_<window>.
@stream_feature_view(
    source=user_interactions,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_secondary_key="category",
    features=[
        Aggregate(function="count", time_window=timedelta(days=1), input_column=Field("item_id", String)),
        Aggregate(function="count", time_window=timedelta(days=7), input_column=Field("item_id", String)),
        Aggregate(function="sum", time_window=timedelta(days=7), input_column=Field("clicked", Int64)),
    ],
    description="How often each user interacted with each category",
)
def user_category_interactions(user_interactions):
    df = user_interactions[["user_id", "item_id", "category", "event", "timestamp"]].copy()
    df["clicked"] = (df["event"] == "click").astype("int64")
    return df[["user_id", "item_id", "category", "clicked", "timestamp"]]
