"""What the Flink engine needs on this machine, checked up front with what to install.

``ensure_flink_jars()`` resolves ``pom.xml`` (shipped next to this module: the Kafka SQL
connector built for this Flink minor) with Maven into the featurebus cache folder, once::

    <cache>/flink-connectors-5.0.0-2.2/libs/*.jar   the connector jars
    <cache>/flink-connectors-5.0.0-2.2/.complete    sha256 of the pom, written after Maven succeeded

``check_flink_installed()`` refuses a missing Java, a missing or different ``apache-flink`` (the
connector is built for one Flink minor; another fails deep inside the JVM at job start) before a
job is built.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import shutil
from importlib import resources
from pathlib import Path

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.files.maven import copy_dependencies
from featurebus.platform.kafka.runtime import default_cache_dir
from featurebus.schemas.errors import FlinkUnavailableError, KafkaUnavailableError

__all__ = [
    "FLINK_CONNECTOR_VERSION",
    "FLINK_PYTHON_ENV",
    "FLINK_VERSION",
    "check_flink_installed",
    "ensure_flink_jars",
    "flink_home",
    "flink_python",
]

FLINK_VERSION = "2.2.1"
"""The ``apache-flink`` the connector is built for (``pyproject.toml``'s ``flink`` extra)."""

FLINK_CONNECTOR_VERSION = "5.0.0-2.2"
"""``flink-sql-connector-kafka``'s version in ``pom.xml``; it names the cache folder."""

FLINK_PYTHON_ENV = "FEATUREBUS_FLINK_PYTHON"
"""A Python with ``featurebus[flink]`` installed, when it is not this one (``make bootstrap``
makes ``.venv-flink`` beside ``.venv``: apache-flink's apache-beam pins numpy<2.2, pyarrow<17)."""

_INSTALL_HINT = (
    f"install the Flink extra in a Python of its own: pip install 'featurebus[flink]' (apache-flink=={FLINK_VERSION}; "
    f"`make bootstrap` makes .venv-flink) and point {FLINK_PYTHON_ENV} at that python"
)
_MAVEN_TIMEOUT_S = 900
_log = logging.getLogger(__name__)


def check_flink_installed() -> None:
    """Raise ``FlinkUnavailableError`` naming what to install unless Java and the right
    ``apache-flink`` are present."""
    try:
        from featurebus.platform.kafka.runtime import find_java

        find_java()
    except KafkaUnavailableError as exc:
        raise FlinkUnavailableError(f"the Flink engine runs on a JVM: {exc}") from exc
    try:
        installed = importlib.metadata.version("apache-flink")
    except importlib.metadata.PackageNotFoundError:
        raise FlinkUnavailableError(f"apache-flink is not installed; {_INSTALL_HINT}") from None
    if installed != FLINK_VERSION:
        raise FlinkUnavailableError(
            f"apache-flink {installed} is installed, but the Kafka connector {FLINK_CONNECTOR_VERSION} is built for "
            f"Flink {FLINK_VERSION}; {_INSTALL_HINT}"
        )


def flink_python() -> str:
    """The interpreter that runs the Flink engine: this one if it has the right apache-flink, else
    ``$FEATUREBUS_FLINK_PYTHON``, else the ``.venv-flink`` beside this venv (what ``make
    bootstrap`` makes); raises ``FlinkUnavailableError`` saying what to install otherwise."""
    import os
    import sys

    try:
        if importlib.metadata.version("apache-flink") == FLINK_VERSION:
            return sys.executable
    except importlib.metadata.PackageNotFoundError:
        pass
    configured = os.environ.get(FLINK_PYTHON_ENV, "").strip()
    beside = Path(sys.prefix).parent / ".venv-flink" / "bin" / "python"
    candidate = Path(configured) if configured else beside
    if os.access(candidate, os.X_OK):
        return str(candidate)
    check_flink_installed()  # raises with what is missing
    return sys.executable


def flink_home() -> Path:
    """The Flink distribution the ``apache-flink`` wheel ships (``bin/``, ``lib/``, ``conf/``)."""
    check_flink_installed()
    import pyflink

    return Path(pyflink.__file__).parent


def ensure_flink_jars(cache_dir: Path | None = None) -> list[Path]:
    """The connector jars, resolved with Maven on first use (under a lock, moved into place only
    when Maven succeeded)."""
    from featurebus.platform.kafka.runtime import find_java

    try:
        find_java()
    except KafkaUnavailableError as exc:
        raise FlinkUnavailableError(f"the Flink engine runs on a JVM: {exc}") from exc
    home = (cache_dir or default_cache_dir()) / f"flink-connectors-{FLINK_CONNECTOR_VERSION}"
    libs = home / "libs"
    pom = resources.files("featurebus.platform.flink").joinpath("pom.xml").read_bytes()
    digest = hashlib.sha256(pom).hexdigest()
    if not _is_complete(home, libs, digest):
        home.mkdir(parents=True, exist_ok=True)
        import fcntl

        with (home / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _is_complete(home, libs, digest):  # another process may have finished meanwhile
                (home / ".complete").unlink(missing_ok=True)
                (home / "pom.xml").write_bytes(pom)
                staging = home / "libs.partial"
                shutil.rmtree(staging, ignore_errors=True)
                _log.info("Resolving the Flink Kafka connector %s with Maven into %s", FLINK_CONNECTOR_VERSION, libs)
                _run_maven(home / "pom.xml", staging)
                shutil.rmtree(libs, ignore_errors=True)
                staging.rename(libs)
                atomic_write(home / ".complete", digest)
    return sorted(libs.glob("*.jar"))


def _is_complete(home: Path, libs: Path, digest: str) -> bool:
    try:
        return (home / ".complete").read_text().strip() == digest and any(libs.glob("*.jar"))
    except FileNotFoundError:
        return False


def _run_maven(pom: Path, output_dir: Path) -> None:
    copy_dependencies(
        pom,
        output_dir,
        what=f"the Flink Kafka connector (flink-sql-connector-kafka {FLINK_CONNECTOR_VERSION})",
        retry_command="featurebus flink fetch",
        error=FlinkUnavailableError,
        timeout_s=_MAVEN_TIMEOUT_S,
    )
