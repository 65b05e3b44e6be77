"""Deleting entities' values through the control plane: the editor role, and an audit record.

The audit record names the view, how many entities, and what changed (tombstones, files, rows),
never the keys themselves: the audit log is kept forever, and a delete's keys are often exactly
the personal data the delete is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.deletes.service import DeleteOptions, delete_keys
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError, NotFoundError

__all__ = ["Deletes"]


class Deletes:
    def __init__(self, registry: Registry, guard: Guard, bootstrap: str | None, offline_root: Path | None) -> None:
        self._registry = registry
        self._guard = guard
        self._bootstrap = bootstrap
        self._offline_root = offline_root

    def delete_keys(
        self, call: Call, workspace: str, view: str, rows: Sequence[Mapping[str, Any]], options: DeleteOptions
    ) -> dict[str, Any]:
        def change(_caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            spec = self._registry.get(workspace)
            if spec is None:
                raise NotFoundError(f"workspace {workspace!r} does not exist")
            if self._bootstrap is None or self._offline_root is None:
                raise InvalidRequestError(
                    "this control plane runs without a Kafka cluster and offline store (an in-memory registry); "
                    "start it with `featurebus control --bootstrap HOST:PORT --home DIR` to delete keys"
                )
            receipt = delete_keys(
                self._bootstrap, self._offline_root, spec, view, rows, options, request_id=call.request_id
            ).to_json()
            detail = {
                key: receipt[key]
                for key in ("view", "entities", "online", "offline", "includeSources", "tombstones", "rowsRemoved")
            }
            detail["files"] = len(receipt["files"])
            detail["notDeleted"] = len(receipt["notDeleted"])
            return receipt, detail

        return self._guard.mutate(call, workspace, Action.DELETE_KEYS, "keys.delete", change)
