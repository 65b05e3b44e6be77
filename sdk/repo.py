"""Loading a feature repository: a folder of Python files whose definitions form a workspace.

The repository is the folder ``plan`` runs in (``--repo``), or the nearest parent of it holding
a marker file: ``.featurebus-repo`` (empty; featurebus's own) or ``.tecton`` (what ``tecton init``
writes, so a ported Tecton repository needs no new file). Files import each other as packages
rooted at the repository folder (``from fraud.entities import user``), as in Tecton repositories;
``tests/`` folders, ``test_*.py``/``*_test.py``/``conftest.py`` files and hidden folders are skipped.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from featurebus.compile import compile_workspace
from featurebus.definitions import BatchSource, Entity, FeatureService, FeatureView, StreamSource
from featurebus.exceptions import DefinitionError
from featurebus.locations import relative_to_repository
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["REPO_MARKERS", "find_repo_root", "load_repo", "repo_files"]

REPO_MARKERS = (".featurebus-repo", ".tecton")

# FeatureView covers every kind of view: stream, batch and realtime.
_DEFINITION_TYPES = (Entity, StreamSource, BatchSource, FeatureView, FeatureService)
_SKIPPED_DIRS = {"tests", "test", "__pycache__", ".venv", "venv", "build", "dist"}


def find_repo_root(start: Path) -> Path:
    """The nearest folder from ``start`` upwards that holds a marker file, else ``start``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in REPO_MARKERS):
            return folder
    return start


def repo_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if rel.name.startswith("test_") or rel.name.endswith("_test.py") or rel.name == "conftest.py":
            continue
        files.append(path)
    return files


def load_repo(root: Path, workspace: str) -> WorkspaceSpec:
    """Import every definition file of the repository holding ``root`` and compile what they define."""
    if not root.resolve().is_dir():
        raise DefinitionError(f"feature repository {root.resolve()} is not a directory; pass --repo <folder>")
    root = find_repo_root(root)
    # A repository folder that is itself a package (has __init__.py) names its modules under its
    # own name (``fraud.entities``), so its parent is the import root; otherwise the folder is.
    import_root = root.parent if (root / "__init__.py").exists() else root
    objects: list[Any] = []
    files = repo_files(root)
    # The repository's modules are imported fresh and forgotten afterwards: a second load (after
    # an edit, or of another repository with a module of the same name) never sees stale ones,
    # and modules of the same names imported elsewhere in this process are put back untouched.
    tops = {_module_name(import_root, p).split(".")[0] for p in files}
    stashed = {n: m for n, m in sys.modules.items() if n.split(".")[0] in tops}
    for name in stashed:
        del sys.modules[name]
    sys.path.insert(0, str(import_root))
    try:
        for path in files:
            module = _import_file(import_root, path)
            objects.extend(v for v in vars(module).values() if isinstance(v, _DEFINITION_TYPES))
    finally:
        sys.path.remove(str(import_root))
        for name in [n for n in sys.modules if n.split(".")[0] in tops]:
            del sys.modules[name]
        sys.modules.update(stashed)
    if not objects:
        raise DefinitionError(
            f"no featurebus definitions found under {root}; define Entity, StreamSource, "
            "stream_feature_view and FeatureService objects at module level"
        )
    return relative_to_repository(compile_workspace(workspace, objects), root)


def _module_name(import_root: Path, path: Path) -> str:
    parts = list(path.relative_to(import_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_file(import_root: Path, path: Path) -> ModuleType:
    name = _module_name(import_root, path)
    try:
        return importlib.import_module(name)
    except DefinitionError:
        raise
    except Exception as exc:  # a user's module failed to import: say which and why, briefly
        raise DefinitionError(f"{path}: importing this file failed: {type(exc).__name__}: {exc}") from exc
