"""The dataflow graph of a workspace (Tecton's "Dataflow"): Kafka topics and batch sources,
through sources and feature views (and their feature topics), to feature services and the
online and offline stores. Pure over a ``WorkspaceSpec``; the control plane serves it at
``GET /v1/workspaces/{workspace}/lineage`` and the web UI draws it.

Node ids are ``kind:name`` so an object and its topic never collide; ``page`` names the object
page a node opens (None for topics and stores, which have no page).
"""

from __future__ import annotations

from typing import Any

from featurebus.platform.kafka.topics import feature_topic, push_topic
from featurebus.schemas.kinds import RealtimeInputKind
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["ONLINE_STORE", "OFFLINE_STORE", "lineage_graph"]

ONLINE_STORE = "store:online"
OFFLINE_STORE = "store:offline"


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: set[tuple[str, str]] = set()

    def node(self, kind: str, name: str, label: str | None = None, page: str | None = None) -> str:
        node_id = f"{kind}:{name}"
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label or name, "page": page})
        return node_id

    def edge(self, source: str, target: str) -> None:
        self.edges.add((source, target))

    def stores(self, origin: str, online: bool, offline: bool) -> None:
        if online:
            self.edge(origin, self.node("store", "online", "online store (RocksDB)"))
        if offline:
            self.edge(origin, self.node("store", "offline", "offline store (Parquet)"))

    def document(self) -> dict[str, Any]:
        return {
            "nodes": sorted(self.nodes.values(), key=lambda n: n["id"]),
            "edges": [{"source": s, "target": t} for s, t in sorted(self.edges)],
        }


def lineage_graph(spec: WorkspaceSpec) -> dict[str, Any]:
    """``{"nodes": [{id, kind, label, page}], "edges": [{source, target}]}`` of ``spec``."""
    graph = _Graph()
    table_names = {t.name for t in spec.feature_tables}
    for source in spec.stream_sources:
        if source.feature_table:
            continue
        source_id = graph.node("stream_source", source.name, page=source.name)
        topics = [push_topic(spec.name, source.name)] if source.push else list(source.kafka.topics)
        for topic in topics:
            graph.edge(graph.node("topic", topic), source_id)
        if source.batch_config is not None:
            graph.edge(graph.node("file", source.batch_config.uri), source_id)
    for batch in spec.batch_sources:
        batch_id = graph.node("batch_source", batch.name, page=batch.name)
        if batch.batch_config is not None:
            graph.edge(graph.node("file", batch.batch_config.uri), batch_id)
    view_ids: dict[str, str] = {}
    for view in spec.stream_feature_views:
        if view.feature_table:
            continue
        view_id = view_ids[view.name] = graph.node("stream_feature_view", view.name, page=view.name)
        graph.edge(f"stream_source:{view.source}", view_id)
        topic_id = graph.node("topic", feature_topic(spec.name, view.name))
        graph.edge(view_id, topic_id)
        graph.stores(topic_id, view.online, view.offline)
    for batch_view in spec.batch_feature_views:
        view_id = view_ids[batch_view.name] = graph.node("batch_feature_view", batch_view.name, page=batch_view.name)
        for name in batch_view.sources:
            kind = "batch_source" if f"batch_source:{name}" in graph.nodes else "stream_source"
            graph.edge(f"{kind}:{name}", view_id)
        graph.stores(view_id, batch_view.online, batch_view.offline)
    for table in spec.feature_tables:
        table_id = view_ids[table.name] = graph.node("feature_table", table.name, page=table.name)
        graph.edge(graph.node("topic", push_topic(spec.name, table.name)), table_id)
        graph.stores(table_id, table.online, table.offline)
    for realtime in spec.realtime_feature_views:
        view_id = view_ids[realtime.name] = graph.node("realtime_feature_view", realtime.name, page=realtime.name)
        for item in realtime.inputs:
            if item.kind is RealtimeInputKind.REQUEST:
                graph.edge(graph.node("request_source", item.name), view_id)
            else:
                graph.edge(view_ids.get(item.name) or graph.node("feature_view", item.name), view_id)
    for service in spec.feature_services:
        service_id = graph.node("feature_service", service.name, page=service.name)
        for selection in service.selections:
            kind = "feature_table" if selection.view in table_names else "feature_view"
            graph.edge(view_ids.get(selection.view) or graph.node(kind, selection.view), service_id)
    # Edges to sources a spec names but does not hold (an invalid spec read back): keep the node.
    for source_id, _ in list(graph.edges):
        if source_id not in graph.nodes:
            kind, _, name = source_id.partition(":")
            graph.node(kind, name)
    return graph.document()
