"""The root of every error featurebus raises on purpose.

It sits below every layer (schemas <- streams <- platform <- runtimes <- sdk) so that each can
raise and catch these; users import them as ``featurebus.exceptions``, which re-exports this module.

Only the HTTP layer maps these to status codes (see ``featurebus.serving.errors``); everything
else raises the most specific subclass with a message that says what to do.
"""

from __future__ import annotations

__all__ = [
    "FeaturebusError",
    "DefinitionError",
    "KafkaUnavailableError",
    "KafkaAccessDeniedError",
    "NotFoundError",
    "InvalidRequestError",
    "UnsupportedError",
    "RecordValidationError",
    "PayloadTooLargeError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotReadyError",
    "RequestTimeoutError",
    "StoreFormatError",
    "InvalidJobTransitionError",
    "JobRunnerFencedError",
    "ConflictError",
    "ControlPlaneUnavailableError",
    "JobTimeoutError",
    "StaleAlertStateError",
    "FlinkUnavailableError",
]


class FeaturebusError(Exception):
    """Root exception: every deliberate featurebus error derives from it."""


class DefinitionError(FeaturebusError):
    """A feature repository definition is invalid (names the object, file:line and the fix)."""


class KafkaUnavailableError(FeaturebusError):
    """The Kafka cluster cannot be reached or cannot be started."""


class KafkaAccessDeniedError(KafkaUnavailableError):
    """The Kafka cluster refused this process's principal a right (a topic, group or transactional
    id ACL, or its credentials); the message names the principal, the resource and the operation."""


class NotFoundError(FeaturebusError):
    """A named workspace, feature service, view or key does not exist."""


class InvalidRequestError(FeaturebusError):
    """A request (HTTP or CLI) is malformed; the message names the offending field."""


class UnsupportedError(InvalidRequestError):
    """Something Tecton offers that featurebus does not do (a Spark conversion, ...)."""


class RecordValidationError(InvalidRequestError):
    """Some records of an ingest request are invalid; ``record_errors`` says which and why."""

    def __init__(self, message: str, record_errors: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class PayloadTooLargeError(InvalidRequestError):
    """A request body over the server's size limit."""


class AuthenticationError(FeaturebusError):
    """No API key, or an unknown or revoked one."""


class PermissionDeniedError(FeaturebusError):
    """A valid API key that is not allowed to do this (wrong workspace or role)."""


class NotReadyError(FeaturebusError):
    """A serving process that has not caught up with the bus yet; ask again in ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(InvalidRequestError):
    """A client that took longer than the server allows to send its request."""


class ConflictError(FeaturebusError):
    """A write made against a state that has moved on (a plan of a stale registry version)."""

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class ControlPlaneUnavailableError(FeaturebusError):
    """The control plane did not answer; the message names the URL that was tried."""


class StoreFormatError(FeaturebusError):
    """An on-disk store was written by an incompatible format version."""


class InvalidJobTransitionError(InvalidRequestError):
    """A job cannot go where it was asked to (cancel a finished job, retry a running one)."""


class JobRunnerFencedError(FeaturebusError):
    """A newer job runner for the same workspace took over; this one must stop."""


class JobTimeoutError(FeaturebusError):
    """Waiting for a job ran out of time; the job itself goes on."""


class StaleAlertStateError(FeaturebusError):
    """An alert state was written over a newer version of itself (two evaluators at once)."""


class FlinkUnavailableError(FeaturebusError):
    """The Flink engine cannot start here: Java, the ``flink`` extra or its connector jars are missing."""
