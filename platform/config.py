"""Where the platform keeps its local state and which Kafka cluster it talks to.

Resolution order for the cluster: ``--bootstrap``, then ``FEATUREBUS_KAFKA_BOOTSTRAP``, then the
platform ``featurebus up`` runs (it records its broker and serving address in the home's
``config.json`` while it runs), then the broker ``featurebus kafka start`` left running.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from featurebus.platform.files.atomic import atomic_write_with
from featurebus.platform.kafka.broker import LocalKafka, kafka_bootstrap_from_env, use_local_admin
from featurebus.platform.kafka.security import KafkaSecurity
from featurebus.schemas.errors import InvalidRequestError, KafkaUnavailableError

__all__ = [
    "DEFAULT_CONTROL_URL",
    "DEFAULT_WORKSPACE",
    "Cluster",
    "RunningPlatform",
    "clear_platform",
    "control_login",
    "home_dir",
    "kafka_state_dir",
    "record_platform",
    "resolve_bootstrap",
    "resolve_cluster",
    "running_platform",
    "save_control_login",
    "select_workspace",
    "selected_workspace",
    "serving_url_of_login",
]

DEFAULT_WORKSPACE = "default"
DEFAULT_CONTROL_URL = "http://127.0.0.1:8090"


def home_dir() -> Path:
    """``FEATUREBUS_HOME``, or ``.featurebus`` in the current directory."""
    return Path(os.environ.get("FEATUREBUS_HOME", ".featurebus")).resolve()


def kafka_state_dir() -> Path:
    return home_dir() / "kafka"


@dataclass(frozen=True)
class RunningPlatform:
    """What a running ``featurebus up`` tells every other command of the same home."""

    bootstrap: str
    serving_url: str
    local_broker: bool  # a development broker `up` started itself (topics may be created freely)
    pid: int  # the `featurebus up` process: a record whose process is gone is ignored


@dataclass(frozen=True)
class Cluster:
    bootstrap: str
    local: bool  # a local development broker (`featurebus up` or `featurebus kafka start`)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def running_platform(home: Path | None = None) -> RunningPlatform | None:
    """The platform `featurebus up` runs from this home, if it still runs."""
    record = _read_settings(home).get("up")
    if not isinstance(record, dict):
        return None
    try:
        platform = RunningPlatform(
            str(record["bootstrap"]), str(record["serving_url"]), bool(record["local_broker"]), int(record["pid"])
        )
    except (KeyError, TypeError, ValueError):
        return None  # written by another featurebus version: ignored, as if absent
    return platform if _process_alive(platform.pid) else None


def record_platform(platform: RunningPlatform, home: Path | None = None) -> Path:
    return _update_settings(home, up=asdict(platform))


def clear_platform(pid: int, home: Path | None = None) -> None:
    """Forget the record of ``up`` process ``pid`` (a newer `up`'s record is left alone)."""
    record = _read_settings(home).get("up")
    if isinstance(record, dict) and record.get("pid") == pid:
        _update_settings(home, up=None)


def resolve_cluster(explicit: str | None = None, home: Path | None = None) -> Cluster:
    """The Kafka cluster commands talk to, and whether it is a local development broker.

    A local broker of this home runs secured; a command that reaches it through this home (not
    with credentials of its own, as every component `featurebus up` supervises has) uses the
    broker's admin credentials: the CLI's direct admin path.
    """
    kafka_dir = (home or home_dir()) / "kafka"
    running = running_platform(home)
    detached = LocalKafka.status_detached(kafka_dir)
    local = {p.bootstrap for p in (running,) if p is not None and p.local_broker}
    local |= {detached.bootstrap} if detached is not None else set()
    chosen = explicit or kafka_bootstrap_from_env()
    if chosen:
        if chosen in local and not KafkaSecurity.from_env().username:
            use_local_admin(kafka_dir, chosen)
        return Cluster(chosen, chosen in local)
    if running is not None:
        if running.local_broker:
            use_local_admin(kafka_dir, running.bootstrap)
        return Cluster(running.bootstrap, running.local_broker)
    if detached is not None:
        use_local_admin(kafka_dir, detached.bootstrap)
        return Cluster(detached.bootstrap, True)
    raise KafkaUnavailableError(
        "no Kafka cluster configured: run `featurebus up` (or `featurebus kafka start`) from this directory, or "
        f"set FEATUREBUS_HOME to the home it runs from (this one: {home or home_dir()}), "
        "or pass --bootstrap / set FEATUREBUS_KAFKA_BOOTSTRAP=host:port"
    )


def resolve_bootstrap(explicit: str | None = None) -> str:
    """The cluster's address (``resolve_cluster``, which also picks this home's admin credentials
    when the address is this home's own secured broker)."""
    return resolve_cluster(explicit).bootstrap


def _settings_path(home: Path | None) -> Path:
    return (home or home_dir()) / "config.json"


def _read_settings(home: Path | None) -> dict[str, Any]:
    path = _settings_path(home)
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidRequestError(f"{path} is not valid JSON ({exc}); fix it or delete it") from exc
    return settings if isinstance(settings, dict) else {}


def _update_settings(home: Path | None, **changes: object) -> Path:
    """Set (or, with None, remove) top-level keys, keeping the others."""
    path = _settings_path(home)
    try:
        settings = _read_settings(home)
    except InvalidRequestError:
        settings = {}  # replaced by a valid file below
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    # Atomic, with a temporary file per process: `up` and a `workspace select` may write at once;
    # a concurrent reader sees the old or the new settings. The file may hold an API key
    # (`featurebus login`): the temporary file is readable by its owner only from its creation.
    text = json.dumps(settings, indent=2) + "\n"

    def write_private(target: Path) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(target, 0o600)  # an existing leftover temporary file keeps its old mode otherwise

    return atomic_write_with(path, write_private, temporary=path.with_suffix(f".{os.getpid()}.tmp"))


def selected_workspace(home: Path | None = None) -> str:
    """The workspace `featurebus workspace select` chose, the default of every ``--workspace``."""
    workspace = _read_settings(home).get("workspace")
    return workspace if isinstance(workspace, str) and workspace else DEFAULT_WORKSPACE


def select_workspace(name: str, home: Path | None = None) -> Path:
    return _update_settings(home, workspace=name)


def control_login(home: Path | None = None) -> tuple[str, str | None]:
    """The control plane's URL and the API key `featurebus login` (or the first `featurebus up`)
    stored; ``FEATUREBUS_CONTROL_URL`` / ``FEATUREBUS_API_KEY`` override them."""
    settings = _read_settings(home)
    url = os.environ.get("FEATUREBUS_CONTROL_URL") or settings.get("control_url") or DEFAULT_CONTROL_URL
    key = os.environ.get("FEATUREBUS_API_KEY") or settings.get("api_key")
    return str(url), (str(key) if key else None)


def save_control_login(url: str, key: str | None, home: Path | None = None, serving_url: str | None = None) -> Path:
    """Store the login; a ``serving_url`` (where the SDK sends ``FeatureTable.ingest``) is kept
    when given, and an earlier one is left as it was when not."""
    changes: dict[str, object] = {"control_url": url.rstrip("/")}
    if key:
        changes["api_key"] = key
    if serving_url:
        changes["serving_url"] = serving_url.rstrip("/")
    return _update_settings(home, **changes)


def serving_url_of_login(home: Path | None = None) -> str:
    """The serving API a logged-in SDK ingests through: ``FEATUREBUS_URL``, else the one
    `featurebus login --serving-url` stored, else that of the `featurebus up` running from this
    home. The control plane is not asked: it may run apart from serving and not know its address
    as clients reach it."""
    explicit = os.environ.get("FEATUREBUS_URL") or _read_settings(home).get("serving_url")
    if explicit:
        return str(explicit).rstrip("/")
    running = running_platform(home)
    if running is not None:
        return running.serving_url
    raise InvalidRequestError(
        "no serving API known to send the rows to: log in with it, `featurebus login --url CONTROL_URL "
        "--serving-url SERVING_URL`, or set FEATUREBUS_URL (or pass bootstrap= to get_workspace to write to the "
        "bus directly)"
    )
