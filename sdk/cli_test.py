"""``featurebus test``: run a feature repository's unit tests, as ``tecton test`` does.

pytest runs in a child process from the repository folder, with the repository's import root
first on ``PYTHONPATH`` (the folder itself, or its parent when the folder is a package), so tests
import definitions the way the repository's files import each other (``from fraud.features
import ...``). Arguments after the options go to pytest unchanged (``featurebus test -- -k high``).
The exit status is pytest's: 0 when every test passed, 5 when none was found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["repo_test_command", "run_repo_tests"]


def run_repo_tests(repo: Path, pytest_args: list[str]) -> int:
    """Run pytest over the repository holding ``repo``; returns pytest's exit status."""
    from featurebus.exceptions import DefinitionError
    from featurebus.repo import find_repo_root

    if not repo.resolve().is_dir():
        raise DefinitionError(f"feature repository {repo.resolve()} is not a directory; pass --repo <folder>")
    root = find_repo_root(repo)
    import_root = root.parent if (root / "__init__.py").exists() else root
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(import_root), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "pytest", str(root), "--rootdir", str(root), *pytest_args]
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


def repo_test_command(
    ctx: typer.Context,
    repo: Annotated[Path, typer.Option("--repo", help="The feature repository (default: the current folder).")] = Path(
        "."
    ),
) -> None:
    """Run the repository's unit tests with pytest (extra arguments go to pytest)."""
    # sys.exit, not typer.Exit: the CLI runs click with standalone_mode=False, where an Exit's
    # code is returned to ``main`` and lost rather than becoming the process's status.
    status = run_repo_tests(repo, list(ctx.args))
    if status:
        sys.exit(status)
