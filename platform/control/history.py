"""One object's registry history: every applied version that changed it, the fields it changed
(old and new values) and who applied it, for the object page."""

from __future__ import annotations

from typing import Any

from featurebus.platform.control.guard import Call
from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.plan.diff import plan
from featurebus.platform.plan.document import plan_to_json

__all__ = ["object_history"]


def object_history(plane: ControlPlane, call: Call, workspace: str, name: str) -> list[dict[str, Any]]:
    """Newest first: ``{"version", "appliedAtMs", "appliedBy", "action", "changedFields"}``."""
    log = {row["version"]: row for row in plane.definitions.log(call, workspace)}  # checks the viewer role
    rows: list[dict[str, Any]] = []
    previous = None
    for spec in plane.registry.history(workspace):
        document = plan_to_json(plan(previous, spec))
        for change in document["changes"]:
            if change["name"] == name and change["action"] != "unchanged":
                applied = log.get(spec.version, {})
                rows.append(
                    {
                        "version": spec.version,
                        "appliedAtMs": spec.applied_at_ms,
                        "appliedBy": applied.get("appliedBy", ""),
                        "action": change["action"],
                        "changedFields": change["changed_fields"],
                    }
                )
        previous = spec
    return rows[::-1]
