"""``/metrics`` as one caller may see it: the series of the workspaces its principal holds a role in
(any role: viewer and up may read metrics), unless it is an instance admin.

A series belongs to a workspace when it has a ``workspace`` label, or a ``topic`` label naming one
of that workspace's topics (``featurebus.<workspace>.<kind>.<object>``, see
``platform/kafka/topics.py``). Series of no workspace (process, registry and API-key topics, the
authentication failure counter) are shown to every caller: they name no workspace. An instance
admin (a principal with the instance ``admin`` role, ``featurebus.platform.access``) sees
everything, as a Prometheus scraper of the whole instance needs to.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.platform.access.view import AccessView, Caller

__all__ = ["metrics_for"]


def metrics_for(caller: Caller, access: AccessView) -> bytes:
    """The Prometheus text exposition of every series ``caller`` may see."""
    if caller.admin:
        return generate_latest()
    workspaces = frozenset(binding.workspace for binding in access.bindings(principal=caller.principal))
    if caller.legacy_scope is not None:
        workspaces |= {caller.legacy_scope[0]}
    return generate_latest(_WorkspaceMetrics(workspaces))  # type: ignore[arg-type]


def _workspace_of(labels: dict[str, str]) -> str | None:
    workspace = labels.get("workspace")
    if workspace:  # "": a request refused before it named one (serving/request_metrics.py)
        return workspace
    topic = labels.get("topic")
    if topic is not None and topic.startswith("featurebus."):
        parts = topic.split(".")
        if len(parts) >= 3:  # featurebus.<workspace>.<kind>[.<object>]; the global topics have 2 parts
            return parts[1]
    return None


class _WorkspaceMetrics(Collector):
    """The default registry's metrics with other workspaces' samples left out."""

    def __init__(self, workspaces: frozenset[str]) -> None:
        self._workspaces = workspaces

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            samples = [
                s
                for s in metric.samples
                if (_workspace_of(s.labels) is None or _workspace_of(s.labels) in self._workspaces)
            ]
            if not samples and metric.samples:
                continue  # only other workspaces' series: not even the family's name is theirs to see
            visible = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            visible.samples = samples
            yield visible
