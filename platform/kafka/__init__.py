"""Everything featurebus does with Kafka itself, in one place.

``broker`` / ``runtime``: the local KRaft broker for machines without Docker (``LocalKafka``,
fetched once with Maven by ``ensure_kafka_jars``); ``clients``: every ``Producer``, ``Consumer``
and ``AdminClient`` is built there (``producer_config``, ``consumer_config``, librdkafka's logs
through Python logging); ``admin``: topic creation and compacted-topic reads; ``health``: the
one "no broker answered since" tracker; ``topics``: every topic name featurebus derives.
Other modules construct clients only through ``clients``.
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
