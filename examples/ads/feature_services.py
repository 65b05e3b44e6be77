from ads.features.clicks import ad_clicks, user_clicks
from ads.features.impressions import ad_impressions, user_impressions
from ads.features.ranking_request import user_click_through
from featurebus import FeatureService

ad_ranking = FeatureService(
    name="ad_ranking",
    features=[user_impressions, user_clicks, ad_impressions, ad_clicks, user_click_through],
    description="Everything the ranking model reads for a (user, ad) pair and the slot "
    "(needs requestContextMap: {'floor_price': ..., 'position': ...}).",
)

user_engagement = FeatureService(
    name="user_engagement",
    features=[user_impressions[["ad_id_count_1h_continuous"]], user_clicks],
    description="A user's recent engagement, for audience analytics.",
)
