"""Where each definition was written, recorded in its spec as ``defined_at`` (file:line).

The SDK notes the call site of every definition (``DefinitionSite``) for its error messages; the
compiled spec keeps it too, so the registry, ``featurebus describe`` and the web UI can point at
the source. Paths are made relative to the repository root, so the same repository applied from
two checkouts records the same locations (and plans no update for them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from featurebus.definition_base import DefinitionSite
from featurebus.schemas.specs import DefinitionLocationSpec, DescribedSpec, WorkspaceSpec

__all__ = ["location_of", "relative_to_repository"]


def location_of(site: DefinitionSite) -> DefinitionLocationSpec:
    return DefinitionLocationSpec(site.file, site.line)


def relative_to_repository(spec: WorkspaceSpec, root: Path) -> WorkspaceSpec:
    """``spec`` with every object's ``defined_at`` path relative to ``root``; a file outside it
    (a definition imported from an installed package) keeps the path Python gave it."""
    base = root.resolve()
    changed: dict[str, Any] = {}
    for field in dataclasses.fields(spec):
        objects = getattr(spec, field.name)
        if isinstance(objects, tuple) and objects and isinstance(objects[0], DescribedSpec):
            changed[field.name] = tuple(_relative(o, base) for o in objects)
    return dataclasses.replace(spec, **changed)


def _relative(obj: DescribedSpec, base: Path) -> DescribedSpec:
    location = obj.defined_at
    if location is None:
        return obj
    try:
        path = Path(location.path).resolve().relative_to(base).as_posix()
    except ValueError:
        return obj
    return dataclasses.replace(obj, defined_at=DefinitionLocationSpec(path, location.line))
