"""Which offline data a workspace's sources read: their own, or a live workspace's.

The offline materializer writes a source's records under ``sources/<workspace>/<source>`` for live
workspaces only. A development workspace is never materialized, so its ad hoc queries
(``get_features_for_events``, ``get_features_in_range``) read what live workspaces materialized:

- a Kafka source reads every live workspace's source on the same topics of the same cluster
  (the files hold the topics' records, each with its Kafka address; the training query keeps
  one copy of a record materialized twice);
- a push source (its topic is per workspace, and nothing is pushed to a development workspace)
  reads the live workspaces' push sources of the same name.

Either way the live source must have every column of the development source with the same type,
or it is not a match. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from featurebus.schemas.errors import NotFoundError
from featurebus.schemas.specs import StreamSourceSpec, WorkspaceSpec

__all__ = ["OfflineLocations", "offline_locations", "require_locations"]

# Per source of the workspace: the (workspace, source) folders of the offline store it reads.
OfflineLocations = Mapping[str, tuple[tuple[str, str], ...]]


def offline_locations(
    spec: WorkspaceSpec, registry: Mapping[str, WorkspaceSpec]
) -> dict[str, tuple[tuple[str, str], ...]]:
    if spec.live:
        return {s.name: ((spec.name, s.name),) for s in spec.stream_sources}
    live = sorted((ws for ws in registry.values() if ws.live and ws.name != spec.name), key=lambda ws: ws.name)
    return {
        source.name: tuple(
            (ws.name, other.name)
            for ws in live
            for other in ws.stream_sources
            if other.log_offline and _same_data(source, other) and _has_columns(other, source)
        )
        for source in spec.stream_sources
    }


def require_locations(
    locations: OfflineLocations, workspace: str, source: StreamSourceSpec
) -> tuple[tuple[str, str], ...]:
    """The source's locations, or an error saying why a development workspace has no data for it."""
    found = locations.get(source.name, ())
    if not found:
        where = (
            f"a push source named {source.name!r}"
            if source.push
            else f"a source reading topics {list(source.kafka.topics)}"
        )
        raise NotFoundError(
            f"source {source.name!r} of development workspace {workspace!r} has no offline data: no live workspace "
            f"has {where} with its columns {[f.name for f in source.schema]}. Apply the source to a live workspace "
            "(`featurebus workspace create NAME --live`, then `featurebus apply`) so it is materialized"
        )
    return found


def _same_data(source: StreamSourceSpec, other: StreamSourceSpec) -> bool:
    if source.push or other.push:
        return source.push and other.push and source.name == other.name
    return (
        set(source.kafka.topics) == set(other.kafka.topics)
        and source.kafka.bootstrap_servers == other.kafka.bootstrap_servers
    )


def _has_columns(live: StreamSourceSpec, wanted: StreamSourceSpec) -> bool:
    available = {f.name: f.dtype for f in live.schema}
    return all(available.get(f.name) == f.dtype for f in wanted.schema)
