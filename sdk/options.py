"""Tecton 1.x parameters featurebus accepts by name but does not act on, with the reason for each.

``featurebus.definition_base.reject_options`` raises, naming the first one a definition sets to
anything but Tecton's default, so no option is ever silently ignored.
"""

from __future__ import annotations

__all__ = [
    "ENTITY_OPTIONS",
    "FILE_OPTIONS",
    "KAFKA_OPTIONS",
    "PUSH_OPTIONS",
    "SERVICE_OPTIONS",
    "SOURCE_OPTIONS",
    "VIEW_OPTIONS",
    "BATCH_VIEW_OPTIONS",
]

KAFKA_OPTIONS: dict[str, str] = {
    "post_processor": "records are decoded by value_format ('json', 'avro' or 'confluent_avro') and the view's "
    "transformation reshapes them",
    "options": "Spark reader options do not apply; the worker's consumer is configured by featurebus",
    "ssl_keystore_location": "TLS to Kafka is not supported yet",
    "ssl_keystore_password_secret_id": "TLS to Kafka is not supported yet",
    "ssl_truststore_location": "TLS to Kafka is not supported yet",
    "ssl_truststore_password_secret_id": "TLS to Kafka is not supported yet",
    "security_protocol": "only PLAINTEXT Kafka is supported yet",
    "deduplication_columns": "records are not deduplicated; deduplicate in the transformation",
}

FILE_OPTIONS: dict[str, str] = {
    "timestamp_format": "timestamps are read as Parquet timestamps or ISO-8601 strings",
    "datetime_partition_columns": "partitioned directory layouts are not read yet",
    "post_processor": "reshape rows in the view's transformation",
    "schema_uri": "the schema is read from the file itself",
    "schema_override": "the schema is read from the file itself",
    "data_delay": "a scheduled period of a FileConfig source is materialized once the period has ended",
}

SOURCE_OPTIONS: dict[str, str] = {"options": "Spark data source options do not apply"}

ENTITY_OPTIONS: dict[str, str] = {"options": "entities take no options"}

PUSH_OPTIONS: dict[str, str] = {
    "post_processor_mode": "post processors are not supported",
    "ingest_server_group": "ingestion runs in `featurebus serve`; scale it with replicas",
    "transform_server_group": "featurebus has no transform server groups",
}

SERVICE_OPTIONS: dict[str, str] = {
    "realtime_environment": "realtime transformations run in the serving process",
    "options": "feature services take no options",
    "enable_online_caching": "featurebus has no serving cache",
    "transform_server_group": "featurebus has no server groups",
    "feature_server_group": "featurebus has no server groups; scale with `featurebus serve` replicas",
}

_SPARK_ONLY = "featurebus runs no Spark, Databricks or EMR compute; the stream worker computes features"
_FIXED_STORES = "featurebus's stores are fixed (RocksDB online, Parquet offline)"
# Stream views only (batch views override these in BATCH_VIEW_OPTIONS below). A stream view's
# feature_start_time, batch_schedule, batch_trigger, manual_trigger_backfill_end_time,
# max_backfill_interval and incremental_backfills are accepted: they bound and cut the backfill of
# its batch history (featurebus.streams.cutover).
_NO_BATCH = "a stream view's tiles are its aggregation_interval wide; its backfill jobs are cut by batch_schedule"

VIEW_OPTIONS: dict[str, str] = {
    "online_serving_index": "the online store is keyed by all join keys",
    "batch_compute": _SPARK_ONLY,
    "stream_compute": _SPARK_ONLY,
    "offline_store": _FIXED_STORES,
    "online_store": _FIXED_STORES,
    "publish_features_config": "features are always published on the view's feature topic",
    "monitor_freshness": "freshness monitoring is not supported yet",
    "expected_feature_freshness": "freshness monitoring is not supported yet",
    "alert_email": "alerts are not supported yet",
    "max_batch_aggregation_interval": _NO_BATCH,
    "output_stream": "features are always written to the view's feature topic",
    "options": "Spark options do not apply",
    "run_transformation_validation": "transformations are validated when the worker first runs them",
    "tecton_materialization_runtime": "featurebus has no materialization runtime versions",
    "cache_config": "featurebus has no serving cache",
    "stream_compaction_enabled": "stream tiles are always compacted by the feature topic",
    "batch_compaction_enabled": _NO_BATCH,
    "compaction_enabled": "the feature topic is always compacted",
    "stream_tiling_enabled": "stream tiling is decided by aggregation_interval",
    "environment": "transformations run in the worker's own Python environment",
    "transform_server_group": "featurebus has no transform server groups",
    "context_parameter_name": "transformations receive no context object",
    "secrets": "featurebus has no secret store; read credentials from the environment",
    "resource_providers": "resource providers are not supported",
}

# What @batch_feature_view refuses: the stream view's list minus what batch views act on.
_BATCH_ACTS_ON = {"feature_start_time", "batch_trigger", "batch_schedule", "incremental_backfills"}
BATCH_VIEW_OPTIONS: dict[str, str] = {
    **{option: reason for option, reason in VIEW_OPTIONS.items() if option not in _BATCH_ACTS_ON},
    "context_parameter_name": "name the context argument by giving it the default materialization_context()",
    "manual_trigger_backfill_end_time": "backfills run over the range given to `featurebus materialize`",
    "max_backfill_interval": "a backfill is one materialization of the range given to `featurebus materialize`",
    "max_batch_aggregation_interval": "a batch view's tiles are its aggregation_interval wide",
    "batch_compaction_enabled": "the feature topic is always compacted",
    "data_quality_enabled": "data quality is computed for stream feature views (as the offline materializer writes them) only yet",
    "skip_default_expectations": "data quality is computed for stream feature views only yet",
}
