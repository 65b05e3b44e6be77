"""Checks that featurebus's layers flow one way and that no two packages import each other.

    schemas  <-  streams (pure kernel)  <-  platform  <-  runtimes (streams.runtime, serving)  <-  sdk

A module may import its own layer and the layers left of it; the two runtimes do not import each
other; and the package graph (each module counted in the package that holds it) has no cycle.
Every import counts: module level, inside functions, and under ``TYPE_CHECKING`` (a type-only
import is still a dependency a reader must follow). ``make lint`` runs this file; the unit tests
run it too and prove it rejects an upward and a cyclic import.

Usage: ``python tools/check_layers.py [REPO_ROOT]`` -- prints each violation, exits 1 if any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["LAYERS", "Violation", "check", "discover_modules", "main"]

# Source directory -> the import name it installs as (pyproject.toml's package-dir).
PACKAGE_DIRS: dict[str, str] = {
    "schemas": "featurebus.schemas",
    "streams": "featurebus.streams",
    "platform": "featurebus.platform",
    "serving": "featurebus.serving",
    "sdk": "featurebus",
}

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("schemas", ("featurebus.schemas",)),
    ("kernel", ("featurebus.streams",)),
    ("platform", ("featurebus.platform",)),
    ("runtimes", ("featurebus.streams.runtime", "featurebus.serving")),
    ("sdk", ("featurebus",)),
)

Violation = str


def _prefix_of(module: str) -> tuple[int, str]:
    """(layer index, the longest matching prefix) of a featurebus module."""
    best = (-1, "")
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (index, prefix)
    return best


def discover_modules(root: Path) -> dict[str, str]:
    """Import name -> source text of every module under the package directories."""
    modules: dict[str, str] = {}
    for directory, package in PACKAGE_DIRS.items():
        base = root / directory
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path.read_text(encoding="utf-8")
    return modules


def _imports(module: str, source: str, is_package: bool) -> Iterable[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from featurebus.x import y` may name a submodule y: count it as the module it is.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def _package(module: str, packages: set[str]) -> str:
    return module if module in packages else module.rsplit(".", 1)[0]


def check(modules: Mapping[str, str]) -> list[Violation]:
    """Every layering violation and package cycle among ``modules`` (name -> source)."""
    packages = {name for name in modules if any(other.startswith(name + ".") for other in modules)}
    packages |= set(PACKAGE_DIRS.values())
    violations: list[Violation] = []
    package_edges: dict[str, set[str]] = {}
    for module, source in sorted(modules.items()):
        importer_layer, importer_prefix = _prefix_of(module)
        for target in set(_imports(module, source, module in packages)):
            if target not in modules:
                continue  # third-party, or `from pkg import name` where name is not a module
            layer, prefix = _prefix_of(target)
            if layer > importer_layer:
                violations.append(
                    f"{module} imports {target}: layer '{LAYERS[importer_layer][0]}' may not import the "
                    f"higher layer '{LAYERS[layer][0]}'"
                )
            elif layer == importer_layer and prefix != importer_prefix:
                violations.append(
                    f"{module} imports {target}: the runtimes {importer_prefix} and {prefix} are "
                    f"independent and may not import each other"
                )
            source_package = _package(module, packages)
            target_package = _package(target, packages)
            if source_package != target_package:
                package_edges.setdefault(source_package, set()).add(target_package)
    violations.extend(_cycles(package_edges))
    return violations


def _cycles(edges: Mapping[str, set[str]]) -> list[Violation]:
    """One line per strongly connected group of packages (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[Violation] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(f"import cycle between packages: {' <-> '.join(sorted(group))}")

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    violations = check(discover_modules(root))
    for violation in violations:
        print(violation)
    if violations:
        print(f"{len(violations)} layering violation(s); see tools/check_layers.py for the rules")
        return 1
    print(f"layers ok: {' <- '.join(name for name, _ in LAYERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
