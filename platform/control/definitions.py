"""Workspaces, plan and apply, rollback and the registry log, as the control plane serves them.

Plan/apply is the CLI's as before (``prevent_destroy``, recompute-on-apply, version history,
rollback as a new version), with one addition the registry alone could not give: an apply names
the version it was planned against (``base_version``) and is refused with ``ConflictError`` (409)
when the workspace has moved on. Applies to one workspace are serialised by a lock held from that
check to the write, so of two concurrent applies planned against the same version exactly one
lands; the control plane is the only writer of the registry, so the lock is enough (run one
control-plane process per registry).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson

from featurebus.platform.access.roles import Action
from featurebus.platform.control.audit import Outcome
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.jobs.client import enqueue_apply_backfills, enqueue_stream_backfills
from featurebus.platform.plan.diff import Plan, plan
from featurebus.platform.plan.document import plan_to_json
from featurebus.platform.registry.base import Registry
from featurebus.platform.registry.specs import apply_workspace, read_version
from featurebus.platform.workspaces import create_workspace, delete_workspace, list_workspaces, object_count
from featurebus.schemas.errors import ConflictError, InvalidRequestError, NotFoundError, StoreFormatError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["Definitions", "parse_spec", "workspace_summary"]


def parse_spec(document: Any, workspace: str) -> WorkspaceSpec:
    """An uploaded compiled repository (``WorkspaceSpec`` as JSON) for ``workspace``."""
    if not isinstance(document, dict):
        raise InvalidRequestError("spec must be a JSON object: the compiled repository (WorkspaceSpec)")
    try:
        spec = WorkspaceSpec.from_json(orjson.dumps({**document, "name": workspace}))
    except StoreFormatError as exc:
        raise InvalidRequestError(str(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidRequestError(f"spec is not a compiled workspace spec: {type(exc).__name__}: {exc}") from None
    return spec


def workspace_summary(spec: WorkspaceSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "live": spec.live,
        "version": spec.version,
        "appliedAtMs": spec.applied_at_ms,
        "objects": object_count(spec),
    }


class Definitions:
    def __init__(self, registry: Registry, guard: Guard) -> None:
        self._registry = registry
        self._guard = guard
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, workspace: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(workspace, threading.Lock())

    def _require(self, workspace: str) -> WorkspaceSpec:
        current = self._registry.get(workspace)
        if current is None:
            raise NotFoundError(
                f"workspace {workspace!r} does not exist; an admin creates it with "
                f"`featurebus workspace create {workspace} [--live]`"
            )
        return current

    # -- workspaces ----------------------------------------------------------------------------------
    def workspaces(self, call: Call) -> list[dict[str, Any]]:
        """The workspaces the caller may read (every one for the admin)."""
        caller = self._guard.authenticate(call, "workspace.list")
        view = self._guard.access.view
        return [
            workspace_summary(spec)
            for spec in list_workspaces(self._registry)
            if caller.admin or view.role_of(caller, spec.name) is not None
        ]

    def create(self, call: Call, name: str, live: bool) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            created = workspace_summary(create_workspace(self._registry, name, live))
            return created, {"live": live}

        return self._guard.mutate(call, name, Action.CREATE_WORKSPACE, "workspace.create", change)

    def get(self, call: Call, workspace: str) -> dict[str, Any]:
        self._guard.check(call, workspace, Action.READ_DEFINITIONS)
        spec = self._require(workspace)
        return {**workspace_summary(spec), "spec": orjson.loads(spec.to_json())}

    def delete(self, call: Call, workspace: str, force: bool) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            with self._lock(workspace):
                deleted = delete_workspace(self._registry, workspace, force)
            return workspace_summary(deleted), {"version": deleted.version, "force": force}

        return self._guard.mutate(call, workspace, Action.DELETE_WORKSPACE, "workspace.delete", change)

    # -- plan and apply ------------------------------------------------------------------------------
    def plan(self, call: Call, workspace: str, document: Any) -> dict[str, Any]:
        self._guard.check(call, workspace, Action.APPLY, "plan")
        current = self._require(workspace)
        return self._plan_document(current, plan(current, parse_spec(document, workspace)))

    def apply(self, call: Call, workspace: str, document: Any, base_version: int) -> dict[str, Any]:
        return self._apply(call, workspace, base_version, lambda: parse_spec(document, workspace), "apply")

    def rollback(self, call: Call, workspace: str, version: int, base_version: int) -> dict[str, Any]:
        return self._apply(
            call,
            workspace,
            base_version,
            lambda: read_version(self._registry, workspace, version),
            "rollback",
            {"restored": version},
        )

    def _apply(
        self,
        call: Call,
        workspace: str,
        base_version: int,
        desired_of: Callable[[], WorkspaceSpec],
        name: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            desired: WorkspaceSpec = desired_of()
            with self._lock(workspace):
                current = self._require(workspace)
                if current.version != base_version:
                    raise ConflictError(
                        f"workspace {workspace!r} is at v{current.version}, but this plan was made against "
                        f"v{base_version}; someone applied since. Run `featurebus plan` again and review it",
                        current.version,
                    )
                changes = plan(current, desired)  # DefinitionError when prevent_destroy blocks it
                document = self._plan_document(current, changes)
                if changes.is_empty:
                    return {**document, "applied": False, "version": current.version}, {
                        "version": current.version,
                        "summary": document["plan"]["summary"],
                        **(extra or {}),
                    }
                applied = apply_workspace(self._registry, changes.apply_to(current), create_live=False)
            jobs, notes = self._enqueue_backfills(applied, changes)
            result = {**document, "applied": True, "version": applied.version, "backfillJobs": jobs, "notes": notes}
            return result, {"version": applied.version, "summary": document["plan"]["summary"], **(extra or {})}

        return self._guard.mutate(call, workspace, Action.APPLY, name, change)

    @staticmethod
    def _plan_document(current: WorkspaceSpec, changes: Plan) -> dict[str, Any]:
        return {"baseVersion": current.version, "plan": plan_to_json(changes)}

    def _enqueue_backfills(self, applied: WorkspaceSpec, changes: Plan) -> tuple[list[str], list[str]]:
        """Backfills of the batch views the plan created or must recompute, and of the batch
        history of such stream views (their stream part is recomputed inside the stream worker)."""

        def touched(kind: str) -> list[tuple[str, bool]]:
            return [
                (c.name, c.action != "create")
                for c in changes.changes
                if c.kind == kind and c.action != "delete" and (c.action == "create" or c.rematerialize)
            ]

        views, stream_views = touched("batch_feature_view"), touched("stream_feature_view")
        if not (views or stream_views) or not applied.live:
            return [], []
        store = self._registry.jobs(applied.name)
        try:
            jobs, notes = enqueue_apply_backfills(store, applied, views, now_ms())
            stream_jobs, stream_notes = enqueue_stream_backfills(store, applied, stream_views, now_ms())
        finally:
            store.close()
        return [job.id for job in [*jobs, *stream_jobs]], [*notes, *stream_notes]

    # -- history -----------------------------------------------------------------------------------
    def log(self, call: Call, workspace: str) -> list[dict[str, Any]]:
        """Every applied version, oldest first, with what it changed and who applied it (from
        the audit log: the registry records keep the spec only)."""
        self._guard.check(call, workspace, Action.READ_DEFINITIONS, "registry.log")
        history = self._registry.history(workspace)
        applied_by = {
            int(r.detail["version"]): r.principal
            for r in self._guard.audit.records()
            if r.workspace == workspace
            and r.action in ("apply", "rollback")
            and r.outcome is Outcome.OK
            and isinstance(r.detail.get("version"), int)
        }
        rows = []
        previous = None
        for spec in history:
            summary = plan(previous, spec).summary()
            rows.append(
                {
                    "version": spec.version,
                    "appliedAtMs": spec.applied_at_ms,
                    "appliedBy": applied_by.get(spec.version, ""),
                    "views": len(spec.stream_feature_views),
                    "services": len(spec.feature_services),
                    "summary": dict(summary),
                }
            )
            previous = spec
        return rows
