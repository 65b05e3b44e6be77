"""featurebus: a streaming-first feature platform. Definitions mirror Tecton 1.x's SDK."""

from __future__ import annotations

from featurebus import aggregation_functions
from featurebus.definitions import (
    Aggregate,
    Attribute,
    Entity,
    FeatureReference,
    FeatureService,
    KafkaConfig,
    PushConfig,
    StreamFeatureView,
    StreamProcessingMode,
    StreamSource,
    TimeWindow,
    stream_feature_view,
)
from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.types import Field
from featurebus.workspace import get_workspace

__all__ = [
    "Aggregate",
    "Attribute",
    "DefinitionError",
    "Entity",
    "FeatureReference",
    "FeatureService",
    "FeaturebusError",
    "Field",
    "KafkaConfig",
    "PushConfig",
    "StreamFeatureView",
    "StreamProcessingMode",
    "StreamSource",
    "TimeWindow",
    "aggregation_functions",
    "get_workspace",
    "stream_feature_view",
]

__version__ = "0.1.0"
