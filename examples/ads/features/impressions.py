from datetime import timedelta

from ads.entities import ad, user
from ads.sources import impressions
from featurebus import Aggregate, Field, stream_feature_view
from featurebus.aggregation_functions import approx_count_distinct, approx_percentile, last_distinct
from featurebus.types import Float64, String


@stream_feature_view(
    source=impressions,
    entities=[user],
    mode="pandas",
    online=True,
    offline=True,
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("ad_id", String)),
        Aggregate(function=approx_count_distinct(), time_window=timedelta(days=1), input_column=Field("ad_id", String)),
        Aggregate(function=last_distinct(3), time_window=timedelta(hours=1), input_column=Field("placement", String)),
    ],
    description="How many ads, and which, a user has been shown.",
)
def user_impressions(impressions):  # type: ignore[no-untyped-def]
    return impressions[["user_id", "ad_id", "placement", "ts"]]


@stream_feature_view(
    source=impressions,
    entities=[ad],
    mode="pandas",
    online=True,
    offline=True,
    aggregation_interval=timedelta(minutes=5),
    features=[
        Aggregate(function="count", time_window=timedelta(hours=1), input_column=Field("bid_price", Float64)),
        Aggregate(function="mean", time_window=timedelta(hours=1), input_column=Field("bid_price", Float64)),
        Aggregate(
            function=approx_percentile(0.9), time_window=timedelta(days=1), input_column=Field("bid_price", Float64)
        ),
        Aggregate(function="stddev_samp", time_window=timedelta(days=1), input_column=Field("bid_price", Float64)),
    ],
    description="An ad's delivery and price over complete 5-minute tiles.",
)
def ad_impressions(impressions):  # type: ignore[no-untyped-def]
    return impressions[["ad_id", "bid_price", "ts"]]
