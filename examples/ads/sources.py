from featurebus import Field, PushConfig, StreamSource
from featurebus.types import Float64, Int64, String, Timestamp

# Both arrive through the ingestion API (`POST /ingest`): the ad server pushes every impression it
# renders and every click it records; log_offline keeps them for training sets too.
impressions = StreamSource(
    name="impressions",
    schema=[
        Field("user_id", String),
        Field("ad_id", String),
        Field("placement", String),
        Field("bid_price", Float64),
        Field("ts", Timestamp),
    ],
    stream_config=PushConfig(log_offline=True),
    description="Ads rendered to a user, with the winning bid.",
)

clicks = StreamSource(
    name="clicks",
    schema=[
        Field("user_id", String),
        Field("ad_id", String),
        Field("dwell_ms", Int64),
        Field("ts", Timestamp),
    ],
    stream_config=PushConfig(log_offline=True),
    description="Clicks on rendered ads, with the time spent on the landing page.",
)
