"""Print the public names of Tecton 1.x's ``tecton`` and ``tecton.types`` modules.

The list is vendored as ``tests/fixtures/tecton_public_names.txt`` so the import-swap test
(``tests/unit/test_tecton_names.py``) runs without the wheel. To refresh it::

    pip download tecton==1.2.13 --no-deps -d /tmp/tecton && cd /tmp/tecton && unzip -q *.whl
    python tools/tecton_public_names.py /tmp/tecton > tests/fixtures/tecton_public_names.txt

The modules are read with ``ast``, never imported (importing ``tecton`` looks for Spark).
A public name is one without a leading underscore that the module binds at top level:
for ``tecton/__init__.py`` (a re-export module) every imported or assigned name; for
``tecton/types.py`` the names it defines (classes and assignments), not the helpers it imports
(``Sequence``, ``pyspark.sql.types``, ...), which are not part of its API.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _bound_names(path: Path, include_imports: bool) -> list[str]:
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom | ast.Import) and include_imports:
            names.extend((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return sorted({n for n in names if not n.startswith("_")})


def main(wheel_dir: str) -> None:
    root = Path(wheel_dir) / "tecton"
    for module, path, imports in (("tecton", root / "__init__.py", True), ("tecton.types", root / "types.py", False)):
        for name in _bound_names(path, imports):
            print(f"{module} {name}")


if __name__ == "__main__":
    main(sys.argv[1])
