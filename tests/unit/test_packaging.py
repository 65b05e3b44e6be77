"""Guards for the repository layout (docs/design.md §2): the top-level ``platform/`` folder must never
shadow the standard library's ``platform`` module, and ``python -m`` must work from the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_stdlib_platform_is_not_shadowed_from_the_repository_root() -> None:
    result = _run("-c", "import platform, sys; print(platform.python_version()); print(platform.__file__)")
    assert result.returncode == 0, result.stderr
    version, location = result.stdout.split()
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert not location.startswith(str(ROOT / "platform"))


def test_platform_folder_is_a_namespace_portion_not_a_regular_package() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_python_m_pytest_and_python_m_featurebus_work_from_the_root() -> None:
    assert _run("-m", "pytest", "--version").returncode == 0
    result = _run("-m", "featurebus", "--help")
    assert result.returncode == 0, result.stderr
    assert "training-set" in result.stdout


def test_featurebus_platform_subpackage_imports() -> None:
    result = _run("-c", "import featurebus.platform.kv, featurebus.platform.kafka.topics; print('ok')")
    assert result.stdout.strip() == "ok", result.stderr
