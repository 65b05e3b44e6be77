"""The secrets of a secured local broker, generated on its first start and kept in one 0600 file.

``<broker dir>/credentials.json`` (under the featurebus home for ``featurebus up``) holds:

- the broker's admin (a super user, SCRAM-SHA-512, added to the storage when it is formatted, so
  the broker can authenticate to itself and ``featurebus up`` can create everything else);
- the controller listener's password (SASL/PLAIN: KRaft cannot use SCRAM on that listener,
  its credentials live in the very metadata log the controller serves);
- one SCRAM password per platform component (``Component``), each a principal of its own whose
  rights ``rights.grant_component_rights`` sets.

The file is written atomically, owner-readable only from its creation, and carries a format version.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from featurebus.platform.files.atomic import atomic_write_with
from featurebus.platform.kafka.security import KafkaSecurity
from featurebus.schemas.errors import StoreFormatError

__all__ = [
    "ADMIN_USER",
    "CONTROLLER_USER",
    "CREDENTIALS_FILE",
    "BusCredentials",
    "Component",
    "PASSWORD_ENV_PREFIX",
    "load_or_create_credentials",
    "with_passwords_from_env",
]

ADMIN_USER = "featurebus-admin"
CONTROLLER_USER = "featurebus-controller"
CREDENTIALS_FILE = "credentials.json"
_FORMAT_VERSION = 1


class Component(StrEnum):
    """The platform's processes, each its own Kafka principal ``featurebus-<component>``."""

    CONTROL = "control"
    WORKER = "worker"
    SERVING = "serving"
    OFFLINE = "offline"
    JOBS = "jobs"

    @property
    def username(self) -> str:
        return f"featurebus-{self.value}"


def _password() -> str:
    return secrets.token_urlsafe(24)  # URL-safe: no quote or backslash can break the JAAS line


@dataclass(frozen=True)
class BusCredentials:
    admin_password: str = field(default_factory=_password)
    controller_password: str = field(default_factory=_password)
    components: dict[Component, str] = field(default_factory=lambda: {c: _password() for c in Component})

    @property
    def admin(self) -> KafkaSecurity:
        return KafkaSecurity.scram(ADMIN_USER, self.admin_password)

    def component(self, component: Component) -> KafkaSecurity:
        return KafkaSecurity.scram(component.username, self.components[component])


PASSWORD_ENV_PREFIX = "FEATUREBUS_KAFKA_PASSWORD_"


def with_passwords_from_env(credentials: BusCredentials, environ: Mapping[str, str] | None = None) -> BusCredentials:
    """``credentials`` with each component's password taken from ``FEATUREBUS_KAFKA_PASSWORD_<COMPONENT>``
    where set (a deployment that hands the passwords to its services itself, as docker/compose.yaml)."""
    env = os.environ if environ is None else environ
    components = {
        c: env.get(f"{PASSWORD_ENV_PREFIX}{c.value.upper()}", "").strip() or p
        for c, p in credentials.components.items()
    }
    return BusCredentials(credentials.admin_password, credentials.controller_password, components)


def load_or_create_credentials(directory: Path) -> BusCredentials:
    """The credentials in ``directory/credentials.json``, created (mode 0600) when absent."""
    path = directory / CREDENTIALS_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        credentials = BusCredentials()
        _write(path, credentials)
        return credentials
    except ValueError as exc:
        raise StoreFormatError(f"{path} is not valid JSON ({exc}); {_RESET_HINT.format(dir=directory)}") from exc
    if not isinstance(record, dict) or record.get("format_version") != _FORMAT_VERSION:
        raise StoreFormatError(
            f"{path} is not a featurebus {_FORMAT_VERSION} credentials file; {_RESET_HINT.format(dir=directory)}"
        )
    stored = record.get("components", {})
    components = {c: str(stored[c.value]) if c.value in stored else _password() for c in Component}
    credentials = BusCredentials(str(record["admin_password"]), str(record["controller_password"]), components)
    if any(c.value not in stored for c in Component):
        _write(path, credentials)  # a component added by a newer featurebus gets its password now
    return credentials


_RESET_HINT = (
    "stop the broker and delete {dir} (its topics go with it; the admin password is formatted into its storage)"
)


def _write(path: Path, credentials: BusCredentials) -> None:
    text = json.dumps(
        {
            "format_version": _FORMAT_VERSION,
            "admin_user": ADMIN_USER,
            "admin_password": credentials.admin_password,
            "controller_password": credentials.controller_password,
            "components": {c.value: p for c, p in credentials.components.items()},
        },
        indent=2,
    )

    def write_private(target: Path) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        os.chmod(target, 0o600)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, write_private, temporary=path.with_suffix(f".{os.getpid()}.tmp"))
