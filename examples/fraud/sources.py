from datetime import timedelta

from featurebus import Field, KafkaConfig, StreamSource
from featurebus.types import Bool, Float64, String, Timestamp

transactions = StreamSource(
    name="transactions",
    schema=[
        Field("transaction_id", String),
        Field("user_id", String),
        Field("merchant_id", String),
        Field("amount", Float64),
        Field("is_online", Bool),
        Field("timestamp", Timestamp),
    ],
    stream_config=KafkaConfig(
        topics="transactions",
        timestamp_field="timestamp",
        watermark_delay_threshold=timedelta(minutes=10),
    ),
    description="Card transactions as they are authorised.",
)
