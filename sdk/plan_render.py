"""Rendering a ``Plan``: text for people (rich markup or plain) and a stable JSON document for
tools. Kept apart from ``featurebus.plan`` so the diff stays data and imports no terminal code."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.markup import escape

from featurebus.plan import Change, FieldChange, Plan
from featurebus.platform.plan.document import PLAN_JSON_FORMAT_VERSION, plan_to_json
from featurebus.schemas.specs import METADATA_FIELDS

__all__ = ["PLAN_JSON_FORMAT_VERSION", "plan_to_json", "render_plan"]

_MAX_VALUE_CHARS = 60
_HEADERS = {"create": ("+ create", "green"), "update": ("~ update", "yellow"), "delete": ("- delete", "red")}


def render_plan(plan: Plan, color: bool) -> str:
    """The plan as lines of text; with ``color`` as rich markup (values escaped), else plain."""
    if plan.is_empty:
        return "No changes."
    lines: list[tuple[str | None, str]] = []  # (rich style, text)
    for change in plan.changes:
        if change.action == "unchanged" and not change.rematerialize:
            continue
        if change.action == "unchanged":  # its definition is the same but its source's data is not
            lines.append(("magenta", f"! {change.kind} {change.name} (definition unchanged)"))
        else:
            label, style = _HEADERS[change.action]
            lines.append((style, f"{label} {change.kind} {change.name}"))
        if change.action == "update":
            lines.extend((None, f"    {fc.path}: {_describe(fc)}") for fc in change.changed_fields)
        if change.action == "create":
            lines.extend((None, f"    {line}") for line in _metadata_lines(change))
        if change.rematerialize:
            lines.append(("bold magenta", f"    invalidates materialized features: {change.reason}"))
            lines.append(("magenta", "    apply recomputes them from the source's history"))
        elif change.reason:
            lines.append(("red", f"    {change.reason}"))
    lines.append((None, ""))
    lines.append(("bold", _summary_line(plan)))
    if not color:
        return "\n".join(text for _, text in lines)
    return "\n".join(f"[{style}]{escape(text)}[/]" if style else escape(text) for style, text in lines)


_METADATA_FIELDS = METADATA_FIELDS


def _metadata_lines(change: Change) -> list[str]:
    """A created object's descriptive metadata, the fields that are set."""
    values = {fc.path: fc.new for fc in change.changed_fields if fc.path in _METADATA_FIELDS}
    lines = []
    for name in _METADATA_FIELDS:
        value = values.get(name)
        if not value:
            continue
        if name == "tags":
            value = ", ".join(f"{k}={v}" for k, v in value)
        lines.append(f"{name}: {_truncate(str(value)) if name != 'prevent_destroy' else 'true'}")
    return lines


def _summary_line(plan: Plan) -> str:
    counts = plan.summary()
    text = (
        f"Plan for workspace {plan.workspace}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete, {counts['unchanged']} unchanged"
    )
    rematerialize = sum(c.rematerialize for c in plan.changes)
    return (
        f"{text}; {rematerialize} feature view(s) to recompute from their sources' history."
        if rematerialize
        else f"{text}."
    )


def _describe(fc: FieldChange) -> str:
    if fc.old is None and dataclasses.is_dataclass(fc.new):
        return f"added {_brief(fc.new)}"
    if fc.new is None and dataclasses.is_dataclass(fc.old):
        return "removed"
    if isinstance(fc.old, str) and isinstance(fc.new, str) and (_is_long(fc.old) or _is_long(fc.new)):
        return _first_difference(fc.old, fc.new)
    return f"{_brief(fc.old)} -> {_brief(fc.new)}"


def _is_long(text: str) -> bool:
    return "\n" in text or len(text) > _MAX_VALUE_CHARS


def _first_difference(old: str, new: str) -> str:
    """Code and other long text: only the first line that differs, like the head of a diff."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    if old_lines == new_lines:
        return "only line endings or a trailing newline differ"
    i = next(
        (i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b),
        min(len(old_lines), len(new_lines)),
    )
    if i < len(old_lines) and i < len(new_lines):
        before, after = _excerpts(old_lines[i], new_lines[i])
    else:
        before = repr(_truncate(old_lines[i])) if i < len(old_lines) else "(end)"
        after = repr(_truncate(new_lines[i])) if i < len(new_lines) else "(end)"
    if len(old_lines) == len(new_lines) == 1:
        return f"{before} -> {after}"
    size = f" ({len(old_lines)} -> {len(new_lines)} lines)" if len(old_lines) != len(new_lines) else ""
    return f"line {i + 1}: {before} -> {after}{size}"


def _excerpts(old: str, new: str) -> tuple[str, str]:
    """Both texts cut to start shortly before their first differing character, so two long
    values that differ late do not truncate to the same text."""
    common = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    start = max(0, common - _MAX_VALUE_CHARS // 3)

    def cut(text: str) -> str:
        return repr(("…" if start else "") + _truncate(text[start:]))

    return cut(old), cut(new)


def _brief(value: Any) -> str:
    if value is None:
        return "none"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={_brief(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return _truncate(f"{{{inner}}}", 2 * _MAX_VALUE_CHARS)
    if isinstance(value, tuple):
        # Elements that have a name are shown by it: a reordering reads as a list of names.
        return _truncate("[" + ", ".join(getattr(v, "name", None) or _brief(v) for v in value) + "]")
    if isinstance(value, str):
        return repr(_truncate(str(value)))  # str(): an enum member as its value
    return str(value)


def _truncate(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
