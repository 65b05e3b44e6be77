"""featurebus: a streaming-first feature platform. Definitions mirror Tecton 1.x's SDK.

Every public name of Tecton 1.x's ``tecton`` module is importable from here. The ones featurebus
does not act on are placeholders (``featurebus.unsupported``) that raise a DefinitionError naming
them, where they are used, with what to do instead.

This package is also the import root of every layer (``featurebus.schemas``, ``.streams``,
``.platform``, ``.serving``), and Python imports it before any of them. So it imports nothing
itself: each public name is loaded on first use (PEP 562), and ``import featurebus.schemas.specs``
or the serving app load neither the SDK nor pandas unless they need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "FilterContext",
            "MaterializationContext",
            "materialization_context",
            "pandas_batch_config",
            "pyarrow_batch_config",
        ),
        "featurebus.batch_config",
    ),
    **dict.fromkeys(
        (
            "PANDAS_MODE",
            "PYSPARK_MODE",
            "PYTHON_MODE",
            "SNOWFLAKE_SQL_MODE",
            "SPARK_SQL_MODE",
            "Aggregate",
            "AggregationLeadingEdge",
            "Attribute",
            "BatchFeatureView",
            "BatchSource",
            "BatchTriggerType",
            "DataSource",
            "Entity",
            "FeatureReference",
            "FeatureService",
            "FeatureView",
            "FileConfig",
            "KafkaConfig",
            "LifetimeWindow",
            "MaterializedFeatureView",
            "PushConfig",
            "StreamFeatureView",
            "StreamProcessingMode",
            "StreamSource",
            "TimeWindow",
            "TimeWindowSeries",
            "batch_feature_view",
            "stream_feature_view",
        ),
        "featurebus.definitions",
    ),
    "DefinitionError": "featurebus.exceptions",
    "FeaturebusError": "featurebus.exceptions",
    "FeatureTable": "featurebus.feature_table",
    **dict.fromkeys(
        ("Calculation", "RealtimeFeatureView", "RequestSource", "realtime_feature_view"), "featurebus.realtime"
    ),
    "Field": "featurebus.types",
    **dict.fromkeys(("Expectation", "LoggingConfig"), "featurebus.monitoring"),
    "MockContext": "featurebus.local_testing",
    "RealtimeContext": "featurebus.local_testing",
    "TectonDataFrame": "featurebus.frames",
    "TectonTimeConstant": "featurebus.time_constants",
    "Workspace": "featurebus.workspace",
    "get_workspace": "featurebus.workspace",
}


def _unsupported() -> dict[str, Any]:
    # Placeholders for Tecton names featurebus does not act on, generated from one table.
    from featurebus.unsupported import UNSUPPORTED

    return dict(UNSUPPORTED)


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted([*_LAZY, "aggregation_functions", *_unsupported()])
    module = _LAZY.get(name)
    if name == "aggregation_functions":  # a module, not a name in one
        value: Any = importlib.import_module("featurebus.aggregation_functions")
    elif module is not None:
        value = getattr(importlib.import_module(module), name)
    else:
        placeholders = _unsupported()
        if name not in placeholders:
            raise AttributeError(f"module 'featurebus' has no attribute {name!r}")
        value = placeholders[name]
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "aggregation_functions", *_unsupported()})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time every name comes from __getattr__
    from featurebus import aggregation_functions as aggregation_functions
    from featurebus.batch_config import (
        FilterContext as FilterContext,
    )
    from featurebus.batch_config import (
        MaterializationContext as MaterializationContext,
    )
    from featurebus.batch_config import (
        materialization_context as materialization_context,
    )
    from featurebus.batch_config import (
        pandas_batch_config as pandas_batch_config,
    )
    from featurebus.batch_config import (
        pyarrow_batch_config as pyarrow_batch_config,
    )
    from featurebus.definitions import (
        PANDAS_MODE as PANDAS_MODE,
    )
    from featurebus.definitions import (
        PYSPARK_MODE as PYSPARK_MODE,
    )
    from featurebus.definitions import (
        PYTHON_MODE as PYTHON_MODE,
    )
    from featurebus.definitions import (
        SNOWFLAKE_SQL_MODE as SNOWFLAKE_SQL_MODE,
    )
    from featurebus.definitions import (
        SPARK_SQL_MODE as SPARK_SQL_MODE,
    )
    from featurebus.definitions import (
        Aggregate as Aggregate,
    )
    from featurebus.definitions import (
        AggregationLeadingEdge as AggregationLeadingEdge,
    )
    from featurebus.definitions import (
        Attribute as Attribute,
    )
    from featurebus.definitions import (
        BatchFeatureView as BatchFeatureView,
    )
    from featurebus.definitions import (
        BatchSource as BatchSource,
    )
    from featurebus.definitions import (
        BatchTriggerType as BatchTriggerType,
    )
    from featurebus.definitions import (
        DataSource as DataSource,
    )
    from featurebus.definitions import (
        Entity as Entity,
    )
    from featurebus.definitions import (
        FeatureReference as FeatureReference,
    )
    from featurebus.definitions import (
        FeatureService as FeatureService,
    )
    from featurebus.definitions import (
        FeatureView as FeatureView,
    )
    from featurebus.definitions import (
        FileConfig as FileConfig,
    )
    from featurebus.definitions import (
        KafkaConfig as KafkaConfig,
    )
    from featurebus.definitions import (
        LifetimeWindow as LifetimeWindow,
    )
    from featurebus.definitions import (
        MaterializedFeatureView as MaterializedFeatureView,
    )
    from featurebus.definitions import (
        PushConfig as PushConfig,
    )
    from featurebus.definitions import (
        StreamFeatureView as StreamFeatureView,
    )
    from featurebus.definitions import (
        StreamProcessingMode as StreamProcessingMode,
    )
    from featurebus.definitions import (
        StreamSource as StreamSource,
    )
    from featurebus.definitions import (
        TimeWindow as TimeWindow,
    )
    from featurebus.definitions import (
        TimeWindowSeries as TimeWindowSeries,
    )
    from featurebus.definitions import (
        batch_feature_view as batch_feature_view,
    )
    from featurebus.definitions import (
        stream_feature_view as stream_feature_view,
    )
    from featurebus.exceptions import (
        DefinitionError as DefinitionError,
    )
    from featurebus.exceptions import (
        FeaturebusError as FeaturebusError,
    )
    from featurebus.feature_table import (
        FeatureTable as FeatureTable,
    )
    from featurebus.frames import (
        TectonDataFrame as TectonDataFrame,
    )
    from featurebus.local_testing import (
        MockContext as MockContext,
    )
    from featurebus.local_testing import (
        RealtimeContext as RealtimeContext,
    )
    from featurebus.monitoring import Expectation as Expectation
    from featurebus.monitoring import LoggingConfig as LoggingConfig
    from featurebus.realtime import (
        Calculation as Calculation,
    )
    from featurebus.realtime import (
        RealtimeFeatureView as RealtimeFeatureView,
    )
    from featurebus.realtime import (
        RequestSource as RequestSource,
    )
    from featurebus.realtime import (
        realtime_feature_view as realtime_feature_view,
    )
    from featurebus.time_constants import (
        TectonTimeConstant as TectonTimeConstant,
    )
    from featurebus.types import (
        Field as Field,
    )
    from featurebus.workspace import (
        Workspace as Workspace,
    )
    from featurebus.workspace import (
        get_workspace as get_workspace,
    )
