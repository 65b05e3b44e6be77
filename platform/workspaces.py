"""Workspaces: named sets of applied definitions, live (materialized and served) or development.

A workspace is its record in the registry (``featurebus.platform.registry``): creating one
writes version 0, an empty ``WorkspaceSpec`` carrying the ``live`` flag, so the stream worker, the
serving replicas and the offline materializer learn which workspaces to materialize from the one
topic they already follow. As in Tecton, the flag is fixed at creation: a development workspace
is made live by applying its repository to a live workspace.
"""

from __future__ import annotations

from featurebus.platform.kafka.topics import REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.platform.registry.base import Registry, SpecRecord, history_key
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["create_workspace", "delete_workspace", "list_workspaces", "object_count", "validate_workspace_name"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def validate_workspace_name(name: str) -> None:
    """Names go into topic names (``featurebus.<workspace>.features.<view>``) and file paths."""
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise InvalidRequestError(
            f"invalid workspace name {name!r}: use 1 to 100 letters, digits, '_' or '-' "
            "(the name becomes part of Kafka topic names and file paths)"
        )


def object_count(spec: WorkspaceSpec) -> int:
    return (
        len(spec.entities)
        + len(spec.stream_sources)
        + len(spec.batch_sources)
        + len(spec.stream_feature_views)
        + len(spec.realtime_feature_views)
        + len(spec.feature_services)
    )


def create_workspace(registry: Registry, name: str, live: bool) -> WorkspaceSpec:
    validate_workspace_name(name)
    existing = registry.get(name)
    if existing is not None:
        kind = "live" if existing.live else "development"
        raise InvalidRequestError(
            f"workspace {name!r} already exists ({kind}); pick another name, "
            f"or `featurebus workspace delete {name}` first"
        )
    created = WorkspaceSpec(name, live=live, applied_at_ms=now_ms())
    # Version 0 goes to the registry only: history lists applied versions, and the first apply
    # keeps the flag (the registry copies it from the record it replaces).
    registry.apply(name, [(REGISTRY_TOPIC, name.encode("utf-8"), created.to_json())], "creating")
    return created


def list_workspaces(registry: Registry) -> list[WorkspaceSpec]:
    return sorted(registry.list().values(), key=lambda spec: spec.name)


def delete_workspace(registry: Registry, name: str, force: bool = False) -> WorkspaceSpec:
    """Remove the workspace's registry record and its history (tombstones, one transaction).

    Refuses while it holds objects unless ``force``: deleting a live workspace stops its
    materialization and serving at once. Feature and push topics, the offline store's files and
    API keys stay: they are data, not definitions. Delete them by hand before creating a workspace
    of the same name again, or it starts from the old workspace's tiles."""
    workspaces = registry.list()
    current = workspaces.get(name)
    if current is None:
        known = ", ".join(sorted(workspaces)) or "none"
        raise NotFoundError(f"no workspace named {name!r} (known: {known})")
    objects = object_count(current)
    if objects and not force:
        raise InvalidRequestError(
            f"workspace {name!r} holds {objects} objects (v{current.version}); apply an empty repository to it "
            f"first, or pass --force to delete it with its definitions"
        )
    tombstones: list[SpecRecord] = [
        (REGISTRY_HISTORY_TOPIC, history_key(name, spec.version), None) for spec in registry.history(name)
    ]
    tombstones.append((REGISTRY_TOPIC, name.encode("utf-8"), None))
    registry.apply(name, tombstones, "deleting")
    return current
