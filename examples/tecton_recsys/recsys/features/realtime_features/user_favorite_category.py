from featurebus import Attribute, realtime_feature_view
from featurebus.types import Int64, String
from recsys.features.stream_features.user_category_interactions import user_category_interactions


@realtime_feature_view(
    sources=[user_category_interactions[["category_keys_7d", "item_id_count_7d_continuous"]]],
    mode="python",
    features=[Attribute("favorite_category", String), Attribute("categories_seen_7d", Int64)],
    description="The category a user interacted with most in the last week (ties: the first by name)",
)
def user_favorite_category(user_category_interactions):
    categories = user_category_interactions["category_keys_7d"] or []
    counts = user_category_interactions["item_id_count_7d_continuous"] or []
    # The arrays follow category_keys_7d, sorted by name: the first maximum breaks ties by name.
    favorite = categories[counts.index(max(counts))] if categories else None
    return {"favorite_category": favorite, "categories_seen_7d": len(categories)}
