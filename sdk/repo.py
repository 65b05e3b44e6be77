"""Loading a feature repository: a folder of Python files whose definitions form a workspace.

Files import each other as packages rooted at the repository folder (``from fraud.entities
import user``), as in Tecton repositories; ``tests/`` folders and private files are skipped.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from featurebus.compile import compile_workspace
from featurebus.definitions import Entity, FeatureService, FeatureView, StreamSource
from featurebus.exceptions import DefinitionError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["load_repo", "repo_files"]

_DEFINITION_TYPES = (Entity, StreamSource, FeatureView, FeatureService)
_SKIPPED_DIRS = {"tests", "test", "__pycache__", ".venv", "venv", "build", "dist"}


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
    """Import every definition file under ``root`` and compile what they define."""
    root = root.resolve()
    if not root.is_dir():
        raise DefinitionError(f"feature repository {root} is not a directory")
    # A repository folder that is itself a package (has __init__.py) names its modules under its
    # own name (``fraud.entities``), so its parent is the import root; otherwise the folder is.
    import_root = root.parent if (root / "__init__.py").exists() else root
    objects: list[Any] = []
    sys.path.insert(0, str(import_root))
    try:
        for path in repo_files(root):
            module = _import_file(import_root, path)
            objects.extend(v for v in vars(module).values() if isinstance(v, _DEFINITION_TYPES))
    finally:
        sys.path.remove(str(import_root))
    if not objects:
        raise DefinitionError(f"no featurebus definitions found under {root}; define Entity, StreamSource, "
                              "stream_feature_view and FeatureService objects at module level")
    return compile_workspace(workspace, objects)


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
