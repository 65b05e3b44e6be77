"""PyFlink for featurebus: the Kafka connector jars (resolved by Maven, cached like the broker's)
and the checks that say what to install when the Flink engine cannot start."""

from featurebus.platform.flink.runtime import (
    FLINK_CONNECTOR_VERSION,
    FLINK_PYTHON_ENV,
    FLINK_VERSION,
    check_flink_installed,
    ensure_flink_jars,
    flink_home,
    flink_python,
)

__all__ = [
    "FLINK_CONNECTOR_VERSION",
    "FLINK_PYTHON_ENV",
    "FLINK_VERSION",
    "check_flink_installed",
    "ensure_flink_jars",
    "flink_home",
    "flink_python",
]
