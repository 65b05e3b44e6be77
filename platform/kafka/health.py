"""One broker-health tracker for every long-lived Kafka client: since when no broker answered.

librdkafka retries an unreachable broker forever and reports it only through the client's
``error_cb``; a process must decide itself when "still retrying" becomes "down" (fail, or report
it on ``/health``). Each client feeds its ``error_cb`` here (``on_error``), says when a call
reached a broker (``reachable``) or failed to (``unreachable``), and asks ``down_for``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

__all__ = ["BROKER_DOWN", "BrokerHealth"]

# The error codes that mean "no broker answers" (as opposed to an error of one request).
BROKER_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE})

_log = logging.getLogger(__name__)


class BrokerHealth:
    """Not locked: a float and two strings written from the client's polling thread."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._bootstrap = bootstrap
        self._clock = clock
        self.down_since: float | None = None
        self.fatal: str | None = None  # a fatal client error: the client must be replaced
        self.last_error: str | None = None

    def on_error(self, error: KafkaError) -> None:
        """The client's ``error_cb``."""
        self.last_error = str(error)
        if error.fatal():
            self.fatal = f"Kafka client failed: {error}"
        elif error.code() in BROKER_DOWN:
            self.unreachable(str(error))

    def unreachable(self, cause: str) -> None:
        """A call found no broker: the outage starts now unless it already had."""
        self.last_error = cause
        if self.down_since is None:
            self.down_since = self._clock()
            _log.warning("Kafka at %s unreachable: %s", self._bootstrap, cause)

    def reachable(self) -> None:
        """A call reached a broker: any outage is over."""
        self.down_since = None

    def down_for(self) -> float | None:
        """Seconds since no broker answered, None while one does."""
        return None if self.down_since is None else self._clock() - self.down_since
