"""Run serving replicas: each process has its own RocksDB online store, kept current from the bus.

``featurebus serve --workers N`` runs N such processes behind one listening socket (uvicorn's
process manager, which also restarts a worker that dies). Each claims its own store directory
with a lock (``online``, ``online-1``, ...), so a restarted worker resumes the copy its
predecessor left instead of rebuilding, and two processes never open the same RocksDB.

Why one copy per process rather than one materializing primary with read-only secondaries:
a RocksDB secondary instance sees new writes only when it calls ``try_catch_up_with_primary``
(a manifest replay, so every read path would pay for it or serve stale tiles between polls),
and each process still needs the registry and API keys from the bus. Measured on the serving
benchmark's data (100k users, 481k tiles): the online copy is 14 MB and writing it all costs
about 1.1 s of CPU (430k tile records/s), so a copy per process is cheap, and it buys simpler
failure handling: no process depends on another. No process answers a keyed request before its
API keys and online copy caught up with the bus since it started (``readiness.py``: 503 with
``Retry-After`` until then, the same rule ``/ready`` reports); a process of ``--workers N``
also accepts no connection before then (see ``_replica_lifespan``), so its siblings answer.

Every process runs uvicorn's HTTP protocol with read deadlines and a connection cap
(``connection_guard.py``), configured by ``ServingLimits`` (``limits.py``, environment variables).
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import uvicorn
from fastapi import FastAPI

from featurebus.platform.api_keys import ApiKeyStore
from featurebus.platform.kv import RocksStore
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.time import now_ms
from featurebus.serving.app import create_app
from featurebus.serving.connection_guard import configure_guard, guarded_protocol
from featurebus.serving.feature_logging import FeatureLogger
from featurebus.serving.ingest import IngestService, KafkaRecordSink
from featurebus.serving.limits import ServingLimits
from featurebus.serving.online_materializer import OnlineMaterializer
from featurebus.serving.service import FeatureServer
from featurebus.serving.tile_cache import TileCache
from featurebus.serving.visibility import OnlineVisibility

__all__ = ["run_server", "wait_until_ready", "now_ms", "claim_store_dir", "replica_app", "CAUGHT_UP_LOG"]

_log = logging.getLogger(__name__)

CAUGHT_UP_LOG = "online copy caught up with the bus"  # logged once per process, with its store
_MAX_SLOTS = 64
# How a multi-process server's parent hands its settings to the processes uvicorn spawns.
_ENV_BOOTSTRAP = "FEATUREBUS_SERVING_BOOTSTRAP"
_ENV_DATA_DIR = "FEATUREBUS_SERVING_DATA_DIR"
_ENV_ACCESS_LOG = "FEATUREBUS_SERVING_ACCESS_LOG"


def _enable_access_log(enabled: bool) -> None:
    # featurebus.access writes one JSON line per request instead of uvicorn's access log; it
    # costs about a tenth of a lookup's CPU, so it can be turned off (as Feast's can).
    logging.getLogger("featurebus.access").setLevel(logging.INFO if enabled else logging.WARNING)


def claim_store_dir(data_dir: Path) -> tuple[Path, IO[bytes]]:
    """The first online store directory under ``data_dir`` no other process holds, and the open
    lock file that holds it for this process (released when the file is closed or the process
    ends). Slot 0 is ``online``, then ``online-1``, ``online-2``, ..."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(_MAX_SLOTS):
        name = "online" if slot == 0 else f"online-{slot}"
        lock = open(data_dir / f"{name}.lock", "ab")  # noqa: SIM115  # held for the process's life
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return data_dir / name, lock
    raise FeaturebusError(
        f"{_MAX_SLOTS} serving processes already hold online stores under {data_dir}; "
        "stop some or give this one another --home"
    )


class _Replica:
    """What one serving process owns; released exactly once, however the process ends."""

    def __init__(self, bootstrap: str, data_dir: Path, limits: ServingLimits) -> None:
        self.limits = limits
        self.store_dir, self._lock = claim_store_dir(data_dir)
        self.store = RocksStore(self.store_dir)
        self.keys = ApiKeyStore()
        self.materializer = OnlineMaterializer(bootstrap, self.store, self.keys)
        self.ingest_sink = KafkaRecordSink(bootstrap)
        self.visibility = OnlineVisibility(bootstrap, self.store)
        self.feature_logger = FeatureLogger(bootstrap)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            left = self.ingest_sink.close()  # every acknowledged request's records are already out
            self.feature_logger.close()
            self.materializer.stop()  # before the store: the thread writes into it
            self.visibility.close()
            self.store.close()
            self._lock.close()
            _log.info(
                "ingest producer flushed (%d undelivered), online materializer stopped and online store closed", left
            )

    def app(self, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
        cache = TileCache()
        self.materializer.add_write_listener(cache)  # before it starts writing
        server = FeatureServer(
            self.materializer.specs, self.store, now_ms, tile_cache=cache, feature_logger=self.feature_logger
        )
        ingest = IngestService(self.materializer.specs, self.ingest_sink, self.visibility)
        return create_app(server, self.keys, self.materializer, ingest=ingest, lifespan=lifespan, limits=self.limits)


async def _await_caught_up(replica: _Replica) -> None:
    """Until the replica's materializer caught up once (it keeps retrying an unreachable broker)."""
    while not replica.materializer.ready():
        await asyncio.sleep(0.05)
    _log.info("%s (%s)", CAUGHT_UP_LOG, replica.store_dir)


def _replica_lifespan(
    replica: _Replica, wait_caught_up: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Starts the materializer with the app and closes the replica when it stops. Cleanup runs in
    the app's shutdown phase: after a SIGTERM, uvicorn re-raises the signal once serving ends, so
    code after ``Server.run()`` would never run.

    With ``wait_caught_up``, startup completes only once the online copy caught up: uvicorn
    accepts connections after startup, so a process sharing a socket with others takes no
    request while its copy is still rebuilding (its siblings answer meanwhile)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        replica.materializer.start()
        try:
            if wait_caught_up:
                await _await_caught_up(replica)
            # Everything allocated so far (modules, specs, plans) lives as long as the process:
            # kept out of the cyclic collector, a full collection no longer walks it, which
            # takes milliseconds off the requests that happen to trigger one.
            gc.freeze()
            yield
        finally:
            replica.close()

    return lifespan


def replica_app() -> FastAPI:
    """The app of one process of ``run_server(workers=N)``: uvicorn calls it in each process it
    spawns (``factory=True``), with the settings in the environment."""
    # A spawned process starts with logging unconfigured: as the CLI does, plus this module's
    # lines (which store it holds, when it caught up) for whoever reads the server's log.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _log.setLevel(logging.INFO)
    limits = ServingLimits.from_env()  # the parent's, handed over in the environment
    configure_guard(limits)  # uvicorn made this process's protocol class from its name: configure it here
    replica = _Replica(os.environ[_ENV_BOOTSTRAP], Path(os.environ[_ENV_DATA_DIR]), limits)
    _log.info("serving process %d holds online store %s", os.getpid(), replica.store_dir)
    _enable_access_log(os.environ.get(_ENV_ACCESS_LOG, "1") == "1")
    return replica.app(_replica_lifespan(replica, wait_caught_up=True))


def run_server(
    bootstrap: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    data_dir: Path,
    log_level: str = "info",
    workers: int = 1,
    access_log: bool = True,
    limits: ServingLimits | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop the materializers and close the stores.

    Each process's store lives in the first free ``data_dir/online[-i]``; a process restarted on
    the same directory resumes from the offsets recorded there, a fresh directory rebuilds from
    the feature topics. ``workers`` > 1 runs that many processes on one socket (see the module
    docstring). ``limits`` defaults to ``ServingLimits.from_env()``.
    """
    limits = limits or ServingLimits.from_env()
    if workers < 1:
        raise FeaturebusError(f"--workers must be at least 1, got {workers}")
    if workers > 1:
        os.environ[_ENV_BOOTSTRAP] = bootstrap
        os.environ[_ENV_DATA_DIR] = str(data_dir)
        os.environ[_ENV_ACCESS_LOG] = "1" if access_log else "0"
        os.environ.update(limits.to_env())
        _log.info("serving on http://%s:%d with %d processes (online stores under %s)", host, port, workers, data_dir)
        uvicorn.run(
            "featurebus.serving.main:replica_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=_GRACE_S,
            http="featurebus.serving.connection_guard:GuardedHttpProtocol",
            timeout_keep_alive=limits.idle_timeout_s,
        )
        return
    replica = _Replica(bootstrap, data_dir, limits)
    try:
        app = replica.app(_replica_lifespan(replica, wait_caught_up=False))
        _log.info("serving on http://%s:%d (online store %s)", host, port, replica.store_dir)
        _enable_access_log(access_log)
        # On SIGTERM uvicorn stops accepting, lets in-flight requests finish (for at most
        # ``_GRACE_S``), runs the lifespan shutdown (which flushes the ingest producer and closes
        # the store), then re-raises the signal under the handler that was installed before it
        # started. Ignoring it there makes a clean shutdown exit 0 instead of 143.
        in_main = threading.current_thread() is threading.main_thread()  # signals: main thread only
        previous = signal.signal(signal.SIGTERM, _shut_down_cleanly) if in_main else None
        try:
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=host,
                    port=port,
                    log_level=log_level,
                    access_log=False,
                    timeout_graceful_shutdown=_GRACE_S,
                    http=guarded_protocol(limits),
                    timeout_keep_alive=limits.idle_timeout_s,
                )
            ).run()
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
