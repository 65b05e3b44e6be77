"""featurebus: a streaming-first feature platform. Definitions mirror Tecton 1.x's SDK."""

from __future__ import annotations

from featurebus.definitions import (
    Aggregate,
    Entity,
    FeatureReference,
    FeatureService,
    FeatureView,
    KafkaConfig,
    PushConfig,
    StreamFeatureView,
    StreamProcessingMode,
    StreamSource,
    TimeWindow,
    stream_feature_view,
)
from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.realtime import Attribute, Calculation, RealtimeFeatureView, RequestSource, realtime_feature_view
from featurebus.types import Field
from featurebus.workspace import get_workspace

__all__ = [
    "Aggregate",
    "Attribute",
    "Calculation",
    "DefinitionError",
    "Entity",
    "FeatureReference",
    "FeatureService",
    "FeatureView",
    "FeaturebusError",
    "Field",
    "KafkaConfig",
    "PushConfig",
    "RealtimeFeatureView",
    "RequestSource",
    "StreamFeatureView",
    "StreamProcessingMode",
    "StreamSource",
    "TimeWindow",
    "get_workspace",
    "realtime_feature_view",
    "stream_feature_view",
]

__version__ = "0.1.0"
