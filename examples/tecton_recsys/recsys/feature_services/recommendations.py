from featurebus import FeatureService
from recsys.features.batch_features.user_category_purchases import user_category_purchases
from recsys.features.realtime_features.user_favorite_category import user_favorite_category
from recsys.features.stream_features.user_category_interactions import user_category_interactions

recommendation_service = FeatureService(
    name="recommendation_service",
    features=[user_category_interactions, user_category_purchases, user_favorite_category],
)
