"""A plan as a JSON document for tools and the control plane's API (``featurebus plan --json``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from featurebus.platform.plan.diff import Change, Plan

__all__ = ["PLAN_JSON_FORMAT_VERSION", "plan_to_json"]

PLAN_JSON_FORMAT_VERSION = 1


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A JSON-ready document (``json.dumps`` accepts it) listing every object, unchanged ones too."""
    return {
        "format_version": PLAN_JSON_FORMAT_VERSION,
        "workspace": plan.workspace,
        "changes": [_change_json(c) for c in plan.changes],
        "summary": dict(plan.summary()),
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "name": change.name,
        "action": change.action,
        "rematerialize": change.rematerialize,
        "reason": change.reason,
        "changed_fields": [
            {"path": fc.path, "old": _jsonable(fc.old), "new": _jsonable(fc.new)} for fc in change.changed_fields
        ],
    }


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
