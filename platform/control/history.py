"""One object's registry history: every applied version that changed it, the fields it changed
(old and new values) and who applied it, for the object page.

Diffing every version of a 1,000-view workspace takes seconds, and versions never change once
applied, so the per-object index is built once per (workspace, latest version) and kept.
"""

from __future__ import annotations

import threading
from typing import Any

from featurebus.platform.access.roles import Action
from featurebus.platform.control.audit import Outcome
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.plan.diff import Change, Plan, plan
from featurebus.platform.plan.document import plan_to_json
from featurebus.platform.registry.base import Registry

__all__ = ["History"]


def _change_rows(change: Change, version: int, applied_at_ms: int, applied_by: str) -> dict[str, Any]:
    document = plan_to_json(Plan("", (change,)))["changes"][0]
    return {
        "version": version,
        "appliedAtMs": applied_at_ms,
        "appliedBy": applied_by,
        "action": change.action,
        "changedFields": document["changed_fields"],
    }


class History:
    def __init__(self, registry: Registry, guard: Guard) -> None:
        self._registry = registry
        self._guard = guard
        self._lock = threading.Lock()
        # workspace -> (latest version indexed, object name -> rows oldest first)
        self._index: dict[str, tuple[int, dict[str, list[dict[str, Any]]]]] = {}

    def of(self, call: Call, workspace: str, name: str, latest_version: int) -> list[dict[str, Any]]:
        """Newest first: ``{"version", "appliedAtMs", "appliedBy", "action", "changedFields"}``."""
        self._guard.check(call, workspace, Action.READ_DEFINITIONS, "registry.history")
        with self._lock:
            cached = self._index.get(workspace)
        if cached is None or cached[0] != latest_version:
            cached = (latest_version, self._build(workspace))
            with self._lock:
                self._index[workspace] = cached
        return cached[1].get(name, [])[::-1]

    def _build(self, workspace: str) -> dict[str, list[dict[str, Any]]]:
        applied_by = {
            int(r.detail["version"]): r.principal
            for r in self._guard.audit.records()
            if r.workspace == workspace
            and r.action in ("apply", "rollback")
            and r.outcome is Outcome.OK
            and isinstance(r.detail.get("version"), int)
        }
        index: dict[str, list[dict[str, Any]]] = {}
        previous = None
        for spec in self._registry.history(workspace):
            for change in plan(previous, spec).changes:
                if change.action != "unchanged":
                    row = _change_rows(change, spec.version, spec.applied_at_ms, applied_by.get(spec.version, ""))
                    index.setdefault(change.name, []).append(row)
            previous = spec
        return index
