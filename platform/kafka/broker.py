"""A real single-node Apache Kafka broker (KRaft combined mode) as a local Java process.

``LocalKafka`` is for tests and development on machines without Docker: it writes a
``server.properties``, formats the storage once, launches ``kafka.Kafka`` in its own process
group, and reports ready only when the broker answers a metadata request. The broker binds to
127.0.0.1 only. Layout of its directory (a caller's ``data_dir`` or a temporary one)::

    server.properties  log4j2.properties  broker.log  kraft/ (log.dirs: segments + metadata)

The detached mode (``start_detached`` / ``status_detached`` / ``stop_detached``) keeps a broker
running after the starting process exits and records it in ``<state_dir>/kafka.json``; it backs
``featurebus kafka start|status|stop``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.kafka.clients import admin_client
from featurebus.platform.kafka.credentials import CREDENTIALS_FILE, BusCredentials, load_or_create_credentials
from featurebus.platform.kafka.runtime import (
    LOOPBACK_HOST,
    ensure_kafka_jars,
    find_java,
    format_storage_once,
    free_port_pair,
    port_is_free,
    server_properties,
)
from featurebus.platform.kafka.security import register_credentials, unregister_credentials
from featurebus.schemas.errors import KafkaUnavailableError, StoreFormatError

__all__ = [
    "BOOTSTRAP_ENV",
    "DetachedKafka",
    "LocalKafka",
    "kafka_bootstrap_from_env",
    "use_local_admin",
    "wait_for_kafka",
]

BOOTSTRAP_ENV = "FEATUREBUS_KAFKA_BOOTSTRAP"

_STOP_GRACE_S = 20.0
_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3  # Auto-picked ports can be taken between our probe and Kafka's bind.
_STATE_FILE = "kafka.json"
_STATE_FORMAT_VERSION = 1
_LISTENERS = re.compile(r"^listeners=\w+://[^:]+:(\d+),CONTROLLER://[^:]+:(\d+)$", re.M)

_log = logging.getLogger(__name__)

# Brokers handed over to detached mode stay referenced so the interpreter does not warn that a
# child it deliberately left running "is still running" when the Popen object is collected.
_DETACHED_CHILDREN: list[subprocess.Popen[bytes]] = []


def kafka_bootstrap_from_env() -> str | None:
    """The bootstrap servers in ``$FEATUREBUS_KAFKA_BOOTSTRAP``, or None if unset or blank."""
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Return once the cluster at ``bootstrap`` answers a metadata request, else raise."""
    if not _wait_until_answering(bootstrap, timeout_s, still_running=lambda: True):
        raise KafkaUnavailableError(
            f"Kafka at {bootstrap} did not answer within {timeout_s:g}s; start it with "
            f"`featurebus kafka start` or set {BOOTSTRAP_ENV}"
        )


@dataclass(frozen=True)
class DetachedKafka:
    """A background broker as recorded in ``<state_dir>/kafka.json``."""

    pid: int
    bootstrap: str
    log_path: Path
    data_dir: Path
    started_in_s: float
    started_at: float  # Unix time, seconds.


class LocalKafka:
    """A single-node KRaft broker on 127.0.0.1, stopped by ``stop()`` or on leaving ``with``.

    ``secure`` (the default) runs it with SASL/SCRAM-SHA-512 and Kafka's ACL authorizer: nothing
    connects without credentials, and this process uses the broker's admin (a super user) for it
    (``security.register_credentials``). ``featurebus up`` grants each component its own rights.

    ``data_dir`` keeps topics across restarts (the storage is formatted only once); without it
    a temporary directory is used and deleted by ``stop()``. Ports default to free ones, and a
    restart on an existing ``data_dir`` reuses the previous ports when they are still free, so
    the bootstrap address stays stable.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
        secure: bool = True,
    ) -> None:
        self._dir = data_dir.resolve() if data_dir is not None else None
        self._secure = secure
        self.credentials: BusCredentials | None = None
        """With ``secure``: the admin, controller and component secrets (``<data_dir>/credentials.json``)."""
        self._owns_dir = data_dir is None
        self._port = port
        self._controller_port = controller_port
        self._cache_dir = cache_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = None
        self.started_in_s: float | None = None
        """Seconds from launching the JVM until the broker answered metadata (last start)."""

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise KafkaUnavailableError("LocalKafka is not running; call start() first")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self._root() / "broker.log"

    def __enter__(self) -> LocalKafka:
        try:
            return self.start()
        except BaseException:
            self.stop()  # __exit__ will not run; do not leak a temporary directory.
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> LocalKafka:
        """Launch the broker and wait until it answers; a no-op if it is already running."""
        if self._process is not None and self._process.poll() is None:
            return self
        java = find_java()
        libs = ensure_kafka_jars(self._cache_dir)
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="featurebus-kafka-"))
        root = self._root()
        root.mkdir(parents=True, exist_ok=True)
        log4j_config = resources.files("featurebus.platform.kafka").joinpath("log4j2.properties")
        # Copied rather than referenced: a detached broker outlives this interpreter and any
        # temporary extraction of package data.
        (root / "log4j2.properties").write_bytes(log4j_config.read_bytes())

        if self._secure:
            self.credentials = load_or_create_credentials(root)
        attempts = _PORT_ATTEMPTS if self._ports_are_automatic() else 1
        for attempt in range(1, attempts + 1):
            port, controller_port = self._choose_ports(root)
            _write_private(root / "server.properties", server_properties(root, port, controller_port, self.credentials))
            format_storage_once(java, libs, root, self.credentials)
            if self.credentials is not None:
                register_credentials(f"{LOOPBACK_HOST}:{port}", self.credentials.admin)
            if self._launch_and_wait(java, libs, root, f"{LOOPBACK_HOST}:{port}", timeout_s):
                return self
            _log.info("Kafka port %d or %d was taken (attempt %d)", port, controller_port, attempt)
        raise KafkaUnavailableError(
            f"Kafka could not bind a free port on {LOOPBACK_HOST} after {attempts} attempts; see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGTERM the broker, SIGKILL it after 20 s; idempotent and safe if never started."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if self._bootstrap is not None and self._secure:
            unregister_credentials(self._bootstrap)
        self._bootstrap = None
        if process is not None:
            _terminate(process)
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # Detached mode, for the CLI ---------------------------------------------------------------

    @classmethod
    def start_detached(
        cls,
        state_dir: Path,
        *,
        timeout_s: float = 60.0,
        port: int | None = None,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
    ) -> DetachedKafka:
        """Start a broker that keeps running after this process exits (or return the running one).

        Topics persist in ``state_dir`` across ``stop_detached`` / ``start_detached``.
        """
        running = cls.status_detached(state_dir)
        if running is not None:
            return running
        broker = cls(state_dir, port=port, controller_port=controller_port, cache_dir=cache_dir)
        broker.start(timeout_s)
        # Hand the child over: from now on only stop_detached (by PID) ends it.
        process, broker._process = broker._process, None
        atexit.unregister(broker.stop)
        if process is None or broker.started_in_s is None:
            raise KafkaUnavailableError(f"the broker in {state_dir} did not stay up; see its log")
        _DETACHED_CHILDREN.append(process)
        info = DetachedKafka(
            pid=process.pid,
            bootstrap=broker.bootstrap,
            log_path=broker.log_path,
            data_dir=broker._root(),
            started_in_s=broker.started_in_s,
            started_at=time.time(),
        )
        _write_state(broker._root() / _STATE_FILE, info)
        return info

    @staticmethod
    def status_detached(state_dir: Path) -> DetachedKafka | None:
        """The running background broker recorded in ``state_dir``, or None."""
        info = _read_state(state_dir.resolve() / _STATE_FILE)
        if info is None or not _is_our_broker(info.pid, info.data_dir):
            return None
        return info

    @staticmethod
    def stop_detached(state_dir: Path) -> bool:
        """Stop the background broker of ``state_dir``; False if none was running."""
        state_file = state_dir.resolve() / _STATE_FILE
        info = LocalKafka.status_detached(state_dir)
        if info is not None:
            _terminate_pid(info.pid)
        state_file.unlink(missing_ok=True)
        return info is not None

    # Internals ----------------------------------------------------------------------------------

    def _root(self) -> Path:
        if self._dir is None:
            raise KafkaUnavailableError(
                "LocalKafka has no directory: it was not started, or was stopped and its temporary directory removed"
            )
        return self._dir

    def _ports_are_automatic(self) -> bool:
        return self._port is None and self._controller_port is None

    def _choose_ports(self, root: Path) -> tuple[int, int]:
        previous = _LISTENERS.search(_read_text(root / "server.properties"))
        if self._ports_are_automatic() and previous is not None:
            ports = (int(previous.group(1)), int(previous.group(2)))
            if all(port_is_free(p) for p in ports):
                return ports
        free_broker, free_controller = free_port_pair()
        return (self._port or free_broker, self._controller_port or free_controller)

    def _launch_and_wait(self, java: str, libs: Path, root: Path, bootstrap: str, timeout_s: float) -> bool:
        """True once the broker answers; False if it died on a taken port; raises otherwise."""
        log_offset = _size(self.log_path)
        command = [
            java,
            # This broker shares a small machine with the whole platform, so it is tuned for
            # steady CPU and short pauses rather than peak speed (measured on 2 cores at 5,000
            # events/s, bench_stream's freshness): G1 paused ~40 ms about every second, which
            # alone put the bare-consumer baseline's p99 near 100 ms; the serial collector with a
            # fixed 512 MB young generation pauses about every 10 s. C2 compilation took ~40% of
            # a core for the broker's first minutes; C1 alone compiles cheaply, and the broker's
            # own Java code is a small share of its CPU (JFR: under a tenth of a core there).
            *("-Xms1g", "-Xmx1g", "-Xmn512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
            f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",  # Expanded by the JVM itself; there is no shell here.
            "kafka.Kafka",
            str(root / "server.properties"),
        ]
        with self.log_path.open("ab") as log:
            # Own session: a Ctrl-C in the terminal does not reach the broker mid-test, and the
            # broker can outlive us in detached mode. We therefore always stop it explicitly.
            process = subprocess.Popen(
                command,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._process = process
        atexit.register(self.stop)  # Last resort if the caller never reaches stop().
        launched = time.monotonic()
        try:
            answered = _wait_until_answering(bootstrap, timeout_s, still_running=lambda: process.poll() is None)
        except BaseException:
            self.stop()
            raise
        if answered:
            self.started_in_s = round(time.monotonic() - launched, 2)
            self._bootstrap = bootstrap
            _log.info("Kafka on %s ready in %.1fs (pid %d)", bootstrap, self.started_in_s, process.pid)
            return True

        exit_code = process.poll()
        self._process = None
        atexit.unregister(self.stop)
        _terminate(process)
        tail = _log_tail(self.log_path, log_offset)
        port_taken = exit_code is not None and "Address already in use" in tail
        if port_taken and self._ports_are_automatic():
            return False
        what = (
            f"exited with code {exit_code}"
            if exit_code is not None
            else f"did not answer on {bootstrap} within {timeout_s:g}s"
        )
        raise KafkaUnavailableError(f"The local Kafka broker {what}. {self.log_path} ends with:\n{tail}")


def use_local_admin(data_dir: Path, bootstrap: str) -> bool:
    """Use the admin credentials of the secured local broker in ``data_dir`` for ``bootstrap``
    in this process (the CLI's direct admin path to its home's broker); False if it has none."""
    if not (data_dir / CREDENTIALS_FILE).exists():
        return False
    register_credentials(bootstrap, load_or_create_credentials(data_dir).admin)
    return True


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (a secured broker's config holds its passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _wait_until_answering(bootstrap: str, timeout_s: float, still_running: Callable[[], bool]) -> bool:
    admin = admin_client(
        bootstrap,
        **{
            # librdkafka would log "Connection refused" on every retry while the broker is still
            # starting; the outcome is reported by our return value instead.
            "log_level": 0,
            # Retry quickly so readiness (and started_in_s) is noticed within ~0.5 s.
            "reconnect.backoff.max.ms": 500,
        },
    )
    deadline = time.monotonic() + timeout_s
    while still_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            if admin.list_topics(timeout=min(remaining, 1.0)).brokers:
                return True
        except KafkaException:
            pass  # Not up yet: list_topics waited out its timeout, so this loop does not spin.
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    # Popen.terminate/kill signal by PID and skip a process that was already reaped, so a
    # recycled PID is never hit.
    process.terminate()
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _log.warning("Kafka (pid %d) ignored SIGTERM for %gs; killing it", process.pid, _STOP_GRACE_S)
        process.kill()
        process.wait()


def _terminate_pid(pid: int) -> None:
    """Like ``_terminate`` for a broker that may not be our child (detached mode)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, _STOP_GRACE_S):
        return
    _log.warning("Kafka (pid %d) ignored SIGTERM for %gs; killing it", pid, _STOP_GRACE_S)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid, 5.0)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        # If the broker is our own child (started detached by this process), reap it: a zombie
        # still "exists" for kill(pid, 0) and would look alive forever.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # Not our child; its parent (usually init) reaps it.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Exists, owned by someone else.
    return True


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is alive and is the broker of ``data_dir`` (not a recycled PID)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        # Either it exited just now, or there is no procfs (non-Linux): then trust the live PID.
        return not Path("/proc/self").exists()
    except PermissionError:
        return False
    return b"kafka.Kafka" in cmdline and str(data_dir / "server.properties").encode() in cmdline


def _write_state(path: Path, info: DetachedKafka) -> None:
    record = {
        "format_version": _STATE_FORMAT_VERSION,
        "pid": info.pid,
        "bootstrap": info.bootstrap,
        "log_path": str(info.log_path),
        "data_dir": str(info.data_dir),
        "started_in_s": info.started_in_s,
        "started_at": info.started_at,
    }
    atomic_write(path, json.dumps(record, indent=2) + "\n")  # A crash never leaves a torn state file behind.


def _read_state(path: Path) -> DetachedKafka | None:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StoreFormatError(f"{path} is not valid JSON ({exc}); delete it") from exc
    if not isinstance(record, dict) or record.get("format_version") != _STATE_FORMAT_VERSION:
        version = record.get("format_version") if isinstance(record, dict) else None
        raise StoreFormatError(
            f"{path} has format_version {version!r}, this featurebus "
            f"reads {_STATE_FORMAT_VERSION}; stop that broker by its pid and delete the file"
        )
    return DetachedKafka(
        pid=int(record["pid"]),
        bootstrap=str(record["bootstrap"]),
        log_path=Path(record["log_path"]),
        data_dir=Path(record["data_dir"]),
        started_in_s=float(record["started_in_s"]),
        started_at=float(record["started_at"]),
    )


def _log_tail(path: Path, offset: int) -> str:
    """The last lines written to ``path`` since ``offset`` (this start's output only)."""
    with path.open("rb") as log:
        log.seek(max(offset, _size(path) - 64 * 1024))
        lines = log.read().decode(errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(no output)"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
