"""Run one serving replica: its own RocksDB online store, kept current from the bus, over HTTP."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

import httpx
import uvicorn
from fastapi import FastAPI

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.kv import RocksStore
from featurebus.platform.online_materializer import OnlineMaterializer
from featurebus.serving.app import create_app
from featurebus.serving.ingest import IngestService, KafkaRecordSink
from featurebus.serving.service import FeatureServer
from featurebus.serving.visibility import OnlineVisibility

__all__ = ["run_server", "wait_until_ready", "now_ms"]

_log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Replica:
    """What one serving process owns; released exactly once, however the process ends."""

    def __init__(self, bootstrap: str, store_dir: Path) -> None:
        self.store = RocksStore(store_dir)
        self.keys = ApiKeyStore()
        self.materializer = OnlineMaterializer(bootstrap, self.store, self.keys)
        self.ingest_sink = KafkaRecordSink(bootstrap)
        self.visibility = OnlineVisibility(bootstrap, self.store)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            left = self.ingest_sink.close()  # every acknowledged request's records are already out
            self.materializer.stop()  # before the store: the thread writes into it
            self.visibility.close()
            self.store.close()
            _log.info("ingest producer flushed (%d undelivered), online materializer stopped and online store closed", left)


def run_server(
    bootstrap: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    data_dir: Path,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM, then stop the materializer and close the store.

    The store lives at ``data_dir/online``; a replica restarted on the same directory resumes
    from the offsets recorded there, a fresh directory rebuilds from the feature topics.
    """
    replica = _Replica(bootstrap, data_dir / "online")

    # Cleanup runs in the app's shutdown phase, once in-flight requests are done.
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        replica.materializer.start()
        try:
            yield
        finally:
            replica.close()

    try:
        server = FeatureServer(replica.materializer.specs, replica.store, now_ms)
        ingest = IngestService(replica.materializer.specs, replica.ingest_sink, replica.visibility)
        app = create_app(server, replica.keys, replica.materializer, ingest=ingest, lifespan=lifespan)
        _log.info("serving on http://%s:%d (online store %s)", host, port, data_dir / "online")
        # featurebus.access writes one JSON line per request instead of uvicorn's access log.
        logging.getLogger("featurebus.access").setLevel(logging.INFO)
        # On SIGTERM uvicorn stops accepting, lets in-flight requests finish (for at most
        # ``_GRACE_S``), runs the lifespan shutdown above (which flushes the ingest producer and
        # closes the store), then re-raises the signal under the handler that was installed
        # before it started. Ignoring it there makes a clean shutdown exit 0 instead of 143.
        in_main = threading.current_thread() is threading.main_thread()  # signals: main thread only
        previous = signal.signal(signal.SIGTERM, _shut_down_cleanly) if in_main else None
        try:
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                          timeout_graceful_shutdown=_GRACE_S)).run()
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
    finally:
        replica.close()  # also when startup failed (e.g. the port is taken)


_GRACE_S = 30


def _shut_down_cleanly(signum: int, frame: FrameType | None) -> None:
    _log.info("shut down on signal %d", signum)


def wait_until_ready(url: str, timeout_s: float = 60.0) -> None:
    """Block until ``GET {url}/ready`` answers 200; ``TimeoutError`` with the last answer if not."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                response = client.get(url.rstrip("/") + "/ready")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{url} was not ready within {timeout_s:g} s (last answer: {last})")
            time.sleep(0.1)
