"""Applying, reading and waiting for workspace specs, over any ``Registry``.

Workspaces are these same records (see ``featurebus.platform.workspaces``): ``workspace create``
writes version 0, an empty spec carrying the ``live`` flag; every apply keeps the flag of the
version it replaces; ``workspace delete`` writes deletions of the registry record and every
history record. One collection is the single source of truth, so a reader never sees a workspace
without its flag, or a spec of a workspace that does not exist.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from featurebus.platform.kafka.admin import TopicConfig
from featurebus.platform.kafka.topics import REGISTRY_HISTORY_TOPIC, REGISTRY_TOPIC
from featurebus.platform.registry.base import Registry, history_key
from featurebus.platform.registry.cutover import earliest_retained_event_ms, fix_cutovers
from featurebus.schemas.errors import NotFoundError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms

__all__ = ["PUSH_TOPIC_PARTITIONS", "apply_workspace", "read_version", "wait_for_workspace"]

log = logging.getLogger(__name__)

PUSH_TOPIC_PARTITIONS = 4


def read_version(registry: Registry, workspace: str, version: int) -> WorkspaceSpec:
    history = registry.history(workspace)
    for spec in history:
        if spec.version == version:
            return spec
    known = ", ".join(f"v{s.version}" for s in history) or "none"
    raise NotFoundError(f"workspace {workspace!r} has no version {version} (applied versions: {known})")


def apply_workspace(registry: Registry, spec: WorkspaceSpec, *, create_live: bool = True) -> WorkspaceSpec:
    """Publish ``spec`` as the workspace's next version, atomically with its history record.

    The workspace keeps the ``live`` flag it was created with. Applying to a workspace that does
    not exist creates it live (this library call backs ``featurebus up``, the demo and tests),
    unless ``create_live=False``: then it fails as ``featurebus apply`` does, naming the command
    that creates it.
    """
    current = registry.get(spec.name)
    if current is None and not create_live:
        raise NotFoundError(
            f"workspace {spec.name!r} does not exist; create it first with `featurebus workspace create {spec.name}` "
            f"(development: definitions only) or `featurebus workspace create {spec.name} --live` (materialized and served)"
        )
    applied_at = now_ms()
    # Stream views given batch history by this apply get their cut-over to the stream, from the
    # source topics on the registry's bus (the apply time without one: an in-memory registry).
    bus = getattr(registry, "bootstrap", None)
    probe = earliest_retained_event_ms(bus) if isinstance(bus, str) else None
    versioned = dataclasses.replace(
        fix_cutovers(spec, applied_at, probe),
        version=(current.version if current else 0) + 1,
        applied_at_ms=applied_at,
        live=current.live if current else True,
    )
    payload = versioned.to_json()
    # Push topics exist from the moment a push source is applied, so ingestion can write at once.
    push_topics = [TopicConfig(t, PUSH_TOPIC_PARTITIONS) for s in spec.stream_sources if s.push for t in s.kafka.topics]
    registry.apply(
        spec.name,
        [
            (REGISTRY_HISTORY_TOPIC, history_key(spec.name, versioned.version), payload),
            (REGISTRY_TOPIC, spec.name.encode("utf-8"), payload),
        ],
        "applying",
        push_topics,
    )
    return versioned


def wait_for_workspace(
    registry: Registry, workspace: str, poll_s: float = 1.0, stop: threading.Event | None = None
) -> WorkspaceSpec | None:
    """Block until the workspace has been applied: processes may start before ``apply``.

    A development workspace is returned as soon as it exists (callers refuse to materialize
    it); a live one once its first version is applied (version 0 is the empty created record).
    Returns None if ``stop`` is set first.
    """
    announced = False
    while stop is None or not stop.is_set():
        spec = registry.get(workspace)
        if spec is not None and (spec.version > 0 or not spec.live):
            return spec
        if not announced:
            log.warning("waiting for workspace %r to be applied (`featurebus apply`)", workspace)
            announced = True
        if stop is None:
            time.sleep(poll_s)
        else:
            stop.wait(poll_s)
    return None
