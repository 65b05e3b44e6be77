"""What applying a repository would change: ``featurebus.platform.plan.diff`` (moved below the SDK
so the control plane computes the same plan), re-exported under its public name."""

from featurebus.platform.plan.diff import WORKSPACE_FIELD, Action, Change, FieldChange, Kind, Plan, plan

__all__ = ["WORKSPACE_FIELD", "Action", "Change", "FieldChange", "Kind", "Plan", "plan"]
