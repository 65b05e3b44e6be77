"""Where the platform keeps its local state and which Kafka cluster it talks to.

Resolution order for the cluster: ``--bootstrap``, then ``FEATUREBUS_KAFKA_BOOTSTRAP``, then the
local broker started by ``featurebus kafka start`` / ``featurebus up`` (recorded in the home).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from featurebus.platform.kafka.broker import LocalKafka, kafka_bootstrap_from_env
from featurebus.schemas.errors import InvalidRequestError, KafkaUnavailableError

__all__ = ["home_dir", "kafka_state_dir", "resolve_bootstrap", "select_workspace", "selected_workspace", "DEFAULT_WORKSPACE",
           "DEFAULT_CONTROL_URL", "control_login", "save_control_login"]

DEFAULT_WORKSPACE = "default"
DEFAULT_CONTROL_URL = "http://127.0.0.1:8090"


def home_dir() -> Path:
    """``FEATUREBUS_HOME``, or ``.featurebus`` in the current directory."""
    return Path(os.environ.get("FEATUREBUS_HOME", ".featurebus")).resolve()


def kafka_state_dir() -> Path:
    return home_dir() / "kafka"


def resolve_bootstrap(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    from_env = kafka_bootstrap_from_env()
    if from_env:
        return from_env
    running = LocalKafka.status_detached(kafka_state_dir())
    if running is not None:
        return running.bootstrap
    raise KafkaUnavailableError(
        "no Kafka cluster configured: run `featurebus up` (or `featurebus kafka start`), "
        "or set FEATUREBUS_KAFKA_BOOTSTRAP=host:port"
    )


def _settings_path(home: Path | None) -> Path:
    return (home or home_dir()) / "config.json"


def selected_workspace(home: Path | None = None) -> str:
    """The workspace `featurebus workspace select` chose, the default of every ``--workspace``."""
    path = _settings_path(home)
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        return DEFAULT_WORKSPACE
    except ValueError as exc:
        raise InvalidRequestError(f"{path} is not valid JSON ({exc}); fix it or delete it") from exc
    workspace = settings.get("workspace") if isinstance(settings, dict) else None
    return workspace if isinstance(workspace, str) and workspace else DEFAULT_WORKSPACE


def select_workspace(name: str, home: Path | None = None) -> Path:
    return _update_settings({"workspace": name}, home)


def _update_settings(changes: dict[str, object], home: Path | None) -> Path:
    path = _settings_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            settings = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            settings = {}  # replaced by a valid file below
    settings.update(changes)
    tmp = path.with_suffix(".tmp")
    # The file may hold an API key: readable by its owner only, from the moment it exists.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(settings, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)  # atomic: a concurrent command reads the old or the new choice
    return path


def control_login(home: Path | None = None) -> tuple[str, str | None]:
    """The control plane's URL and the API key `featurebus login` (or the first `featurebus up`)
    stored; ``FEATUREBUS_CONTROL_URL`` / ``FEATUREBUS_API_KEY`` override them."""
    path = _settings_path(home)
    settings: dict[str, object] = {}
    try:
        loaded = json.loads(path.read_text())
        settings = loaded if isinstance(loaded, dict) else {}
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise InvalidRequestError(f"{path} is not valid JSON ({exc}); fix it or delete it") from exc
    url = os.environ.get("FEATUREBUS_CONTROL_URL") or settings.get("control_url") or DEFAULT_CONTROL_URL
    key = os.environ.get("FEATUREBUS_API_KEY") or settings.get("api_key")
    return str(url), (str(key) if key else None)


def save_control_login(url: str, key: str | None, home: Path | None = None) -> Path:
    changes: dict[str, object] = {"control_url": url.rstrip("/")}
    if key:
        changes["api_key"] = key
    return _update_settings(changes, home)
