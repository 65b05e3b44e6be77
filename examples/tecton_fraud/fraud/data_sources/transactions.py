from datetime import timedelta
from pathlib import Path

from featurebus import BatchSource, Field, FileConfig, KafkaConfig, StreamSource
from featurebus.types import Float64, String, Timestamp

# Tecton's samples read s3://...; this repository ships its history next to it.
HISTORY = str(Path(__file__).resolve().parents[2] / "data" / "transactions.csv")

transactions_batch = BatchSource(
    name="transactions_batch",
    batch_config=FileConfig(uri=HISTORY, file_format="csv", timestamp_field="timestamp"),
    description="Card transactions, one row per payment",
)

transactions_stream = StreamSource(
    name="transactions_stream",
    schema=[Field("user_id", String), Field("merchant", String), Field("amt", Float64), Field("timestamp", Timestamp)],
    stream_config=KafkaConfig(
        topics="transactions", timestamp_field="timestamp", watermark_delay_threshold=timedelta(hours=1)
    ),
    batch_config=FileConfig(uri=HISTORY, file_format="csv", timestamp_field="timestamp"),
)
