from ads.features.clicks import user_clicks
from ads.features.impressions import user_impressions
from featurebus import Calculation, Field, RealtimeFeatureView, RequestSource
from featurebus.types import Float64, Int64

# The slot being auctioned arrives with the request (`requestContextMap` online, spine columns in
# training sets) and is compared with the user's recent engagement.
slot = RequestSource(name="slot", schema=[Field("floor_price", Float64), Field("position", Int64)])

user_click_through = RealtimeFeatureView(
    name="user_click_through",
    sources=[
        slot,
        user_impressions[["ad_id_count_1h_continuous"]],
        user_clicks[["ad_id_count_1h_continuous"]],
    ],
    features=[
        Calculation(
            name="ctr_1h",
            expr="CASE WHEN user_impressions.ad_id_count_1h_continuous = 0 THEN 0.0 "
            "ELSE user_clicks.ad_id_count_1h_continuous / user_impressions.ad_id_count_1h_continuous END",
        ),
        Calculation(
            name="engaged_above_fold",
            expr="slot.position <= 2 AND user_clicks.ad_id_count_1h_continuous > 0",
        ),
        Calculation(
            name="floor_per_impression", expr="slot.floor_price / (user_impressions.ad_id_count_1h_continuous + 1)"
        ),
    ],
    description="The user's click-through rate and what it means for the slot being auctioned.",
)
