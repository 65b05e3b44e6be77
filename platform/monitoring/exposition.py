"""Where a process that has no web app of its own serves ``/metrics``: the worker, the offline
materializer, the job runner and the alert evaluator.

``prometheus_client``'s own threaded HTTP server answers scrapes on a daemon thread from the
default registry; collectors read the components' plain counters only when scraped, so a
slow or frequent scraper costs the data path nothing (it never holds a lock the path takes).
Bound to 127.0.0.1 unless told otherwise: the series name workspaces and views.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from featurebus.schemas.errors import InvalidRequestError

__all__ = ["METRICS_HOST", "serve_metrics"]

_log = logging.getLogger(__name__)

METRICS_HOST = "127.0.0.1"


def serve_metrics(port: int, host: str = METRICS_HOST) -> int | None:
    """Serve the default registry on ``http://host:port/metrics`` from a daemon thread; ``port``
    0 serves nothing (returns None). Returns the port."""
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise InvalidRequestError(f"--metrics-port must be within 1..65535 (or 0: no metrics), got {port}")
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot serve metrics on {host}:{port}: {exc}; choose another --metrics-port (0: none)"
        ) from exc
    _log.info("metrics on http://%s:%d/metrics", host, port)
    return port
