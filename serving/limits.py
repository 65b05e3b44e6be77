"""What one serving process grants a client: time to send a request, connections, rows, records.

Defaults suit an internal feature service; each can be changed with an environment variable
(read by ``featurebus serve`` at start, and by every process of ``--workers N``):

====================================  =========================  =========
variable                              limit                      default
====================================  =========================  =========
FEATUREBUS_SERVING_HEADER_TIMEOUT_S   request line + headers      10 s
FEATUREBUS_SERVING_BODY_TIMEOUT_S     body, once headers are in   30 s
FEATUREBUS_SERVING_IDLE_TIMEOUT_S     keep-alive between requests 5 s
FEATUREBUS_SERVING_MAX_CONNECTIONS    open connections            1024
FEATUREBUS_SERVING_MAX_BODY_BYTES     request body                8 MiB
FEATUREBUS_SERVING_MAX_BATCH_ROWS     get-features-batch rows     1000
FEATUREBUS_SERVING_MAX_INGEST_RECORDS records per /ingest         10000
====================================  =========================  =========

The timeouts are what keep a slow or silent client (slowloris) from holding a connection and its
buffers: uvicorn times out only idle keep-alive connections, never a request being sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from featurebus.schemas.errors import FeaturebusError
from featurebus.serving.ingest import MAX_RECORDS_PER_REQUEST

__all__ = ["ServingLimits"]

_ENV_PREFIX = "FEATUREBUS_SERVING_"


@dataclass(frozen=True)
class ServingLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: int = 5  # uvicorn takes whole seconds
    max_connections: int = 1024
    # 10,000 ingest records of a few hundred bytes fit; a feature lookup is a few hundred bytes.
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_rows: int = 1000  # 50,000 rows blocked a process for over a second
    max_ingest_records: int = MAX_RECORDS_PER_REQUEST  # beyond: 400 from the ingest service

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise FeaturebusError(
                    f"serving limit {field.name} must be positive, got {getattr(self, field.name)!r}; "
                    f"set {_ENV_PREFIX}{field.name.upper()} to a positive number"
                )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingLimits:
        """The defaults, overridden by ``FEATUREBUS_SERVING_<FIELD>`` variables."""
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for field in fields(cls):
            raw = env.get(_ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            kind = float if field.type in ("float", float) else int
            try:
                values[field.name] = kind(raw)
            except ValueError:
                what = "a number" if kind is float else "a whole number"
                raise FeaturebusError(f"{_ENV_PREFIX}{field.name.upper()}={raw!r} is not {what}") from None
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The variables ``from_env`` reads back (how ``--workers N`` hands them to its processes)."""
        return {_ENV_PREFIX + field.name.upper(): str(getattr(self, field.name)) for field in fields(self)}
