"""Where a view's materialization stands, read from the bus: its source and feature topics with
their partitions' end offsets, and how far the stream worker's consumer group lags behind its
sources. The object page shows it; Kafka being unreachable is reported, not raised, so the rest
of the page still renders."""

from __future__ import annotations

from typing import Any

from featurebus.platform.kafka.admin import group_lag, topic_end_offsets
from featurebus.platform.kafka.topics import feature_topic, push_topic, worker_group
from featurebus.schemas.errors import FeaturebusError
from featurebus.schemas.specs import StreamFeatureViewSpec, WorkspaceSpec

__all__ = ["materialization_state", "source_topics"]


def source_topics(spec: WorkspaceSpec, view: StreamFeatureViewSpec) -> list[str]:
    source = next((s for s in spec.stream_sources if s.name == view.source), None)
    if source is None:
        return []
    return [push_topic(spec.name, source.name)] if source.push else list(source.kafka.topics)


def materialization_state(
    bootstrap: str, spec: WorkspaceSpec, view: StreamFeatureViewSpec, timeout_s: float = 3.0
) -> dict[str, Any]:
    """``{"topics": [{"topic", "role", "partitions": [{"partition", "low", "high"}]}], "workerLag",
    "error"}``; ``error`` says why the figures are missing when the bus did not answer."""
    sources = source_topics(spec, view)
    named = [(t, "source") for t in sources] + [(feature_topic(spec.name, view.name), "features")]
    state: dict[str, Any] = {"topics": [], "workerLag": None, "error": ""}
    try:
        for topic, role in named:
            ends = topic_end_offsets(bootstrap, topic, timeout_s)
            partitions = [{"partition": p, "low": low, "high": high} for p, (low, high) in sorted(ends.items())]
            state["topics"].append({"topic": topic, "role": role, "partitions": partitions})
        if spec.live and sources:
            state["workerLag"] = group_lag(bootstrap, worker_group(spec.name), sources, timeout_s)
    except FeaturebusError as exc:
        state["error"] = str(exc)
    except Exception as exc:  # confluent_kafka's own errors: the page says the bus is down
        state["error"] = f"Kafka did not answer: {type(exc).__name__}: {exc}"
    return state
