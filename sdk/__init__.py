"""featurebus: a streaming-first feature platform. Definitions mirror Tecton 1.x's SDK.

Every public name of Tecton 1.x's ``tecton`` module is importable from here. The ones featurebus
does not act on are placeholders (``featurebus.unsupported``) that raise a DefinitionError naming
them, where they are used, with what to do instead.
"""

from __future__ import annotations

from featurebus import aggregation_functions
from featurebus.batch_config import (
    FilterContext,
    MaterializationContext,
    materialization_context,
    pandas_batch_config,
    pyarrow_batch_config,
)
from featurebus.definitions import (
    PANDAS_MODE,
    PYSPARK_MODE,
    PYTHON_MODE,
    SNOWFLAKE_SQL_MODE,
    SPARK_SQL_MODE,
    Aggregate,
    AggregationLeadingEdge,
    Attribute,
    BatchFeatureView,
    BatchSource,
    BatchTriggerType,
    DataSource,
    Entity,
    FeatureReference,
    FeatureService,
    FeatureView,
    FileConfig,
    KafkaConfig,
    LifetimeWindow,
    MaterializedFeatureView,
    PushConfig,
    StreamFeatureView,
    StreamProcessingMode,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
    batch_feature_view,
    stream_feature_view,
)
from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.feature_table import FeatureTable
from featurebus.realtime import Calculation, RealtimeFeatureView, RequestSource, realtime_feature_view
from featurebus.types import Field
from featurebus.unsupported import UNSUPPORTED as _UNSUPPORTED
from featurebus.workspace import Workspace, get_workspace

# Generated placeholders (one table in featurebus.unsupported); type checkers do not see them.
globals().update(_UNSUPPORTED)

__all__ = [
    "Aggregate",
    "BatchFeatureView",
    "BatchSource",
    "BatchTriggerType",
    "DataSource",
    "Attribute",
    "Calculation",
    "AggregationLeadingEdge",
    "DefinitionError",
    "Entity",
    "FeatureReference",
    "FeatureService",
    "FeatureTable",
    "FeatureView",
    "FeaturebusError",
    "Field",
    "FileConfig",
    "FilterContext",
    "KafkaConfig",
    "MaterializationContext",
    "materialization_context",
    "pandas_batch_config",
    "pyarrow_batch_config",
    "MaterializedFeatureView",
    "PANDAS_MODE",
    "PYSPARK_MODE",
    "PYTHON_MODE",
    "LifetimeWindow",
    "PushConfig",
    "SNOWFLAKE_SQL_MODE",
    "SPARK_SQL_MODE",
    "RealtimeFeatureView",
    "RequestSource",
    "StreamFeatureView",
    "StreamProcessingMode",
    "StreamSource",
    "TimeWindow",
    "TectonDataFrame",
    "Workspace",
    "batch_feature_view",
    "aggregation_functions",
    "TimeWindowSeries",
    "get_workspace",
    "realtime_feature_view",
    "stream_feature_view",
    *_UNSUPPORTED,
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Imported on first use: it needs pandas and pyarrow, which definitions alone never load.
    if name == "TectonDataFrame":
        from featurebus.frames import TectonDataFrame

        return TectonDataFrame
    raise AttributeError(f"module 'featurebus' has no attribute {name!r}")
