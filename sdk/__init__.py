"""featurebus: a streaming-first feature platform. Definitions mirror Tecton 1.x's SDK."""

from __future__ import annotations

from featurebus.definitions import (
    Aggregate,
    AggregationLeadingEdge,
    Entity,
    FeatureReference,
    FeatureService,
    KafkaConfig,
    LifetimeWindow,
    PushConfig,
    StreamFeatureView,
    StreamProcessingMode,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
    stream_feature_view,
)
from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.types import Field
from featurebus.workspace import get_workspace

__all__ = [
    "Aggregate",
    "AggregationLeadingEdge",
    "DefinitionError",
    "Entity",
    "FeatureReference",
    "FeatureService",
    "FeaturebusError",
    "Field",
    "KafkaConfig",
    "LifetimeWindow",
    "PushConfig",
    "StreamFeatureView",
    "StreamProcessingMode",
    "StreamSource",
    "TimeWindow",
    "TimeWindowSeries",
    "get_workspace",
    "stream_feature_view",
]

__version__ = "0.1.0"
