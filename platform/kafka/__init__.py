"""Apache Kafka for featurebus on machines without Docker.

``ensure_kafka_jars`` fetches the broker once with Maven; ``LocalKafka`` runs it as a local
KRaft process on 127.0.0.1; ``wait_for_kafka`` / ``kafka_bootstrap_from_env`` locate a cluster.
"""

from featurebus.platform.kafka.broker import (
    BOOTSTRAP_ENV,
    DetachedKafka,
    LocalKafka,
    kafka_bootstrap_from_env,
    wait_for_kafka,
)
from featurebus.platform.kafka.runtime import (
    CACHE_DIR_ENV,
    KAFKA_VERSION,
    default_cache_dir,
    ensure_kafka_jars,
    find_java,
)

__all__ = [
    "BOOTSTRAP_ENV",
    "CACHE_DIR_ENV",
    "KAFKA_VERSION",
    "DetachedKafka",
    "LocalKafka",
    "default_cache_dir",
    "ensure_kafka_jars",
    "find_java",
    "kafka_bootstrap_from_env",
    "wait_for_kafka",
]
