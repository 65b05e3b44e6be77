"""Every ``docs/design.md §N`` a docstring or comment cites exists, so renumbering the design
(or citing a section that was never written) fails here rather than misleading a reader."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
_CITATION = re.compile(r"design\.md`? §(\d+)", re.IGNORECASE)
_SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)
_CITING = ("sdk", "platform", "streams", "schemas", "serving", "tests", "bench", "examples", "tools")


def _citations() -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    files = [ROOT / "README.md", *(p for folder in _CITING for p in (ROOT / folder).rglob("*.py"))]
    for path in files:
        sections = {int(n) for n in _CITATION.findall(path.read_text(encoding="utf-8"))}
        if sections:
            found[str(path.relative_to(ROOT))] = sections
    return found


def test_the_design_is_cited() -> None:
    # Guards the guard: a changed citation style would otherwise make the next test pass vacuously.
    assert sum(len(s) for s in _citations().values()) >= 10


def test_every_cited_section_exists() -> None:
    sections = {int(n) for n in _SECTION.findall(DESIGN.read_text(encoding="utf-8"))}
    assert sections == set(range(1, len(sections) + 1)), f"sections must be numbered 1..n: {sorted(sections)}"
    missing = {path: cited - sections for path, cited in _citations().items() if cited - sections}
    assert not missing, f"cited sections that docs/design.md does not have: {missing}"
