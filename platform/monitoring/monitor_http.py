"""The alert evaluator's HTTP port: ``/metrics`` (Prometheus text of the default registry),
``/history`` (JSON, the scraped series kept by ``MetricHistory``) and ``/health``.

Standard library ``ThreadingHTTPServer`` on a daemon thread: three read-only routes need no
framework, and a slow client holds only its own thread, never the evaluation loop.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from featurebus.platform.monitoring.history import MetricHistory

__all__ = ["MonitorServer"]


class MonitorServer:
    def __init__(self, history: MetricHistory, port: int, host: str = "127.0.0.1") -> None:
        self._history = history

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval: ``close`` (shutdown) waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="featurebus-monitor-http",
            daemon=True,
        )

    def start(self) -> MonitorServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        url = urlparse(request.path)
        if url.path == "/metrics":
            self._send(request, 200, generate_latest(), CONTENT_TYPE_LATEST)
        elif url.path == "/health":
            self._send(request, 200, b'{"status":"ok"}', "application/json")
        elif url.path == "/history":
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            since = query.get("since")
            if since is not None and not since.lstrip("-").isdigit():
                body = orjson.dumps({"message": f"since must be epoch milliseconds, got {since!r}"})
                self._send(request, 400, body, "application/json")
                return
            series = self._history.query(
                query.get("component"), query.get("metric"), None if since is None else int(since)
            )
            self._send(request, 200, orjson.dumps({"series": [s.to_dict() for s in series]}), "application/json")
        else:
            self._send(request, 404, orjson.dumps({"message": f"no route {url.path}"}), "application/json")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
