from datetime import timedelta
from pathlib import Path

from featurebus import Field, FileConfig, KafkaConfig, StreamSource
from featurebus.types import Float64, String, Timestamp

# Tecton's samples read s3://...; this repository ships its history next to it.
HISTORY = str(Path(__file__).resolve().parents[2] / "data" / "interactions.csv")

user_interactions = StreamSource(
    name="user_interactions",
    schema=[
        Field("user_id", String),
        Field("item_id", String),
        Field("category", String),
        Field("event", String),
        Field("price", Float64),
        Field("timestamp", Timestamp),
    ],
    stream_config=KafkaConfig(
        topics="user_interactions", timestamp_field="timestamp", watermark_delay_threshold=timedelta(hours=1)
    ),
    batch_config=FileConfig(uri=HISTORY, file_format="csv", timestamp_field="timestamp"),
    description="Item views, clicks and purchases, one row per interaction",
)
