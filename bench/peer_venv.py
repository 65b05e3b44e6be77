"""Where the peers run. Quix Streams: featurebus's venv if that is safe, else a venv of its own.
Feast: always ``bench/.venvs/feast`` (``feast_python``), since Feast pins its own FastAPI, pandas
and pyarrow ranges and must never change what featurebus is measured with. It gets Feast's
``duckdb`` extra (ibis + DuckDB) too: the offline benchmark compares both of Feast's local
offline stores, the default file store and the DuckDB store.

Quix pins ``confluent-kafka`` (3.28: ``<2.13``) below what featurebus is built against. Installing
it next to featurebus would silently downgrade featurebus's client and skew the comparison the
other way, so the harness asks pip (dry run) first and, on a conflict, builds
``bench/.venvs/quix`` (gitignored) once and reuses it. Idempotent: a venv with the pinned version
is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.harness import BENCH_DIR

__all__ = ["FEAST_VERSION", "QUIX_VERSION", "feast_python", "quix_python"]

QUIX_VERSION = "3.28.1"  # pinned so that figures from different days compare the same peer
_SPEC = f"quixstreams=={QUIX_VERSION}"
PEER_VENV = BENCH_DIR / ".venvs" / "quix"
FEAST_VERSION = "0.67.0"  # the latest Feast 0.x when the serving benchmark was written
FEAST_VENV = BENCH_DIR / ".venvs" / "feast"
# The DuckDB offline store needs ibis-framework[duckdb]; the file store needs nothing extra.
_FEAST_SPEC = f"feast[duckdb]=={FEAST_VERSION}"

log = logging.getLogger(__name__)


def _installed_version(python: Path | str, dist: str) -> str | None:
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _would_change_confluent_kafka() -> bool:
    """Ask pip what installing Quix into this interpreter would do (nothing is installed)."""
    report = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", _SPEC],
        capture_output=True,
        text=True,
        check=True,
    )
    mine = metadata.version("confluent-kafka")
    for item in json.loads(report.stdout).get("install", []):
        meta = item.get("metadata", {})
        if meta.get("name", "").lower().replace("_", "-") == "confluent-kafka" and meta.get("version") != mine:
            log.info(
                "quixstreams %s wants confluent-kafka %s, featurebus has %s: using a separate venv",
                QUIX_VERSION,
                meta.get("version"),
                mine,
            )
            return True
    return False


def _base_python() -> str:
    """A python3.11 to build the peer venv from (the project's interpreter version)."""
    found = shutil.which("python3.11") or getattr(sys, "_base_executable", None)
    return str(found or sys.executable)


def quix_python() -> Path:
    """An interpreter that can ``import quixstreams`` at the pinned version, installing if needed."""
    if _installed_version(sys.executable, "quixstreams") == QUIX_VERSION:
        return Path(sys.executable)
    python = PEER_VENV / "bin" / "python"
    if python.exists() and _installed_version(python, "quixstreams") == QUIX_VERSION:
        return python
    if not _would_change_confluent_kafka():
        log.info("installing %s into %s", _SPEC, sys.prefix)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _SPEC], check=True)
        return Path(sys.executable)
    log.info("creating the Quix peer venv %s", PEER_VENV)
    PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([_base_python(), "-m", "venv", str(PEER_VENV)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", _SPEC], check=True, env=env)
    return python


def _imports(python: Path | str, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, check=False).returncode == 0


def feast_python() -> Path:
    """The interpreter of ``bench/.venvs/feast`` with Feast at the pinned version and its DuckDB
    offline store (built once; a few minutes on first use)."""
    python = FEAST_VENV / "bin" / "python"
    if python.exists() and _installed_version(python, "feast") == FEAST_VERSION and _imports(python, "ibis"):
        return python
    log.info("creating the Feast peer venv %s (%s)", FEAST_VENV, _FEAST_SPEC)
    FEAST_VENV.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([_base_python(), "-m", "venv", str(FEAST_VENV)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", _FEAST_SPEC], check=True, env=env)
    return python
