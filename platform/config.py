"""Where the platform keeps its local state and which Kafka cluster it talks to.

Resolution order for the cluster: ``--bootstrap``, then ``FEATUREBUS_KAFKA_BOOTSTRAP``, then the
local broker started by ``featurebus kafka start`` / ``featurebus up`` (recorded in the home).
"""

from __future__ import annotations

import os
from pathlib import Path

from featurebus.exceptions import KafkaUnavailableError
from featurebus.platform.kafka.broker import LocalKafka, kafka_bootstrap_from_env

__all__ = ["home_dir", "kafka_state_dir", "resolve_bootstrap", "DEFAULT_WORKSPACE"]

DEFAULT_WORKSPACE = "default"


def home_dir() -> Path:
    """``FEATUREBUS_HOME``, or ``.featurebus`` in the current directory."""
    return Path(os.environ.get("FEATUREBUS_HOME", ".featurebus")).resolve()


def kafka_state_dir() -> Path:
    return home_dir() / "kafka"


def resolve_bootstrap(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    from_env = kafka_bootstrap_from_env()
    if from_env:
        return from_env
    running = LocalKafka.status_detached(kafka_state_dir())
    if running is not None:
        return running.bootstrap
    raise KafkaUnavailableError(
        "no Kafka cluster configured: run `featurebus up` (or `featurebus kafka start`), "
        "or set FEATUREBUS_KAFKA_BOOTSTRAP=host:port"
    )
