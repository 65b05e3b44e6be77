"""Tecton 1.x public names that featurebus does not act on, kept importable so that porting a
repository by swapping ``tecton`` for ``featurebus`` never fails at import time.

Each name is a real placeholder built from the one table below: a class whose instantiation
(or attribute access, for Tecton's enums) raises, a function that raises when called, or an
object that raises on any use. The error names the object, where it was used and what to do
instead, so nothing a user wrote is ever silently ignored. Type checkers do not see these names
(they are generated), which is on purpose: mypy flags their use before the runtime error does.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NoReturn

from featurebus.exceptions import DefinitionError

__all__ = ["UNSUPPORTED", "UnsupportedNameError", "unsupported_error"]

_Kind = Literal["class", "function", "object"]

_SPARK = "featurebus runs no Spark or Databricks/EMR cluster; transformations run in the stream worker (mode='pandas' or 'python')"
_BATCH_CONFIG = "batch configs are built with FileConfig(uri=..., file_format='parquet', timestamp_field=...) or the @pandas_batch_config / @pyarrow_batch_config decorators, not instantiated"
_STORE = "featurebus's stores are fixed (RocksDB online, Parquet offline); remove this option"
_WAREHOUSE = "featurebus reads no data warehouse; export the table to Parquet and use FileConfig(...), or stream it to Kafka and use KafkaConfig(...)"
_WORKSPACE_GETTER = "there is no current workspace; use featurebus.get_workspace('<name>') and its methods"
_LOGIN = "featurebus has no login; serving and ingestion use API keys (`featurebus api-key create`)"
_JOBS = "featurebus has no job classes to construct; call fv.trigger_materialization_job(...) / fv.get_materialization_job(id) (or `featurebus materialize`, `featurebus jobs`)"
_SERVER_GROUP = "featurebus has no server groups; scale serving by running more `featurebus serve` replicas"

# name -> (what kind of placeholder, why featurebus does not support it and what to use instead)
_TABLE: dict[str, tuple[_Kind, str]] = {
    "AutoscalingConfig": ("class", _SPARK),
    "BigQueryConfig": ("class", _WAREHOUSE),
    "BigtableConfig": ("class", _STORE),
    "CacheConfig": ("class", "featurebus has no serving cache; the online store is a local RocksDB per replica"),
    "ComputeMode": ("class", "featurebus has one compute mode (its stream worker); remove compute_mode"),
    "DataFrame": ("class", "featurebus returns pandas DataFrames; use pandas directly"),
    "Dataset": (
        "class",
        "datasets are saved and read through the workspace: ws.save_dataset(name, df) and ws.get_dataset(name)",
    ),
    "DatasetJob": ("class", _JOBS),
    "DatabricksClusterConfig": ("class", _SPARK),
    "DatabricksJsonClusterConfig": ("class", _SPARK),
    "DatetimePartitionColumn": (
        "class",
        "partition columns of Hive/Delta tables are not read; use FileConfig over Parquet",
    ),
    "DeltaConfig": ("class", _STORE),
    "DynamoConfig": ("class", _STORE),
    "EMRClusterConfig": ("class", _SPARK),
    "EMRJsonClusterConfig": ("class", _SPARK),
    "Embedding": (
        "class",
        "featurebus computes no embeddings; compute them upstream and aggregate or serve them as features",
    ),
    "FeatureMetadata": ("class", "per-feature metadata objects are not supported; pass description=/tags= to the view"),
    "FeatureServerGroup": ("class", _SERVER_GROUP),
    "FeatureVector": ("class", "the serving API returns plain JSON and the SDK returns pandas DataFrames"),
    "HiveConfig": ("class", _WAREHOUSE),
    "Inference": ("class", "featurebus runs no model inference; call the model from your application"),
    "KafkaOutputStream": (
        "class",
        "feature topics are written by featurebus itself (see `featurebus describe <view>`); remove output_stream",
    ),
    "KinesisConfig": (
        "class",
        "featurebus reads streams from Kafka only; use KafkaConfig(topics=..., timestamp_field=...)",
    ),
    "KinesisOutputStream": ("class", "feature topics are Kafka topics written by featurebus; remove output_stream"),
    "MaterializationAttempt": ("class", _JOBS),
    "MaterializationJob": ("class", _JOBS),
    "ModelConfig": ("class", "featurebus hosts no models; call the model from your application"),
    "OfflineStoreConfig": ("class", _STORE),
    "OnlineServingIndex": (
        "class",
        "the online store is keyed by the entities' join keys; remove online_serving_index",
    ),
    "PandasBatchConfig": ("class", _BATCH_CONFIG),
    "ParquetConfig": ("class", "offline data is always Parquet; remove offline_store"),
    "ProvisionedScalingConfig": ("class", _STORE),
    "PyArrowBatchConfig": ("class", _BATCH_CONFIG),
    "RedisConfig": ("class", _STORE),
    "RedshiftConfig": ("class", _WAREHOUSE),
    "RiftBatchConfig": ("class", _SPARK),
    "Secret": ("class", "featurebus has no secret store; pass credentials through the environment of the process"),
    "SnowflakeConfig": ("class", _WAREHOUSE),
    "SparkBatchConfig": ("class", _SPARK),
    "SparkStreamConfig": ("class", _SPARK),
    "TestRepo": ("class", "test a repository with `featurebus plan` and pytest over featurebus.repo.load_repo"),
    "TransformServerGroup": ("class", _SERVER_GROUP),
    "Transformation": ("class", "reusable transformations are not supported; put the logic in the view's function"),
    "UnityCatalogAccessMode": ("class", _SPARK),
    "UnityConfig": ("class", _WAREHOUSE),
    "complete_login": ("function", _LOGIN),
    "conf": ("object", "featurebus is configured by FEATUREBUS_* environment variables and CLI options"),
    "const": ("function", "reusable transformations are not supported; write the constant inside the view's function"),
    "get_caller_identity": ("function", _LOGIN),
    "get_current_workspace": ("function", _WORKSPACE_GETTER),
    "get_data_source": ("function", _WORKSPACE_GETTER),
    "get_dataset": ("function", _WORKSPACE_GETTER),
    "get_entity": ("function", _WORKSPACE_GETTER),
    "get_feature_service": ("function", _WORKSPACE_GETTER),
    "get_feature_table": ("function", _WORKSPACE_GETTER),
    "get_feature_view": ("function", _WORKSPACE_GETTER),
    "get_transformation": ("function", _WORKSPACE_GETTER),
    "list_workspaces": (
        "function",
        "list workspaces with `featurebus registry log` or featurebus.platform.registry.KafkaRegistry(...).list()",
    ),
    "login": ("function", _LOGIN),
    "logout": ("function", _LOGIN),
    "resource_provider": ("function", "resource providers are not supported; create clients inside the transformation"),
    "set_tecton_spark_session": ("function", _SPARK),
    "spark_batch_config": ("function", _SPARK),
    "spark_stream_config": ("function", _SPARK),
    "transformation": ("function", "reusable transformations are not supported; put the logic in the view's function"),
}


class UnsupportedNameError(DefinitionError):
    """A Tecton name featurebus keeps importable but does not act on was used."""


def unsupported_error(name: str, reason: str, depth: int = 2) -> UnsupportedNameError:
    # The frame is only read to say where the name was used, as definition errors do.
    frame = sys._getframe(depth)
    return UnsupportedNameError(
        f"featurebus does not support {name} (used at {frame.f_code.co_filename}:{frame.f_lineno}): {reason}."
    )


class _UnsupportedType(type):
    """Metaclass of the placeholder classes: Tecton's enums are used by attribute
    (``ComputeMode.SPARK``), so a missing class attribute raises the same error as a call."""

    _reason: str

    def __getattr__(cls, attribute: str) -> NoReturn:
        if attribute.startswith("__"):  # keep copy, pickle and introspection protocols working
            raise AttributeError(attribute)
        raise unsupported_error(f"{cls.__name__}.{attribute}", cls._reason)


def _make_class(name: str, reason: str) -> type:
    def refuse(self: object, *args: Any, **kwargs: Any) -> None:
        raise unsupported_error(name, reason)

    doc = f"Tecton's ``{name}``: not supported by featurebus ({reason}). Instantiating it raises."
    return _UnsupportedType(
        name, (), {"__init__": refuse, "__doc__": doc, "__module__": "featurebus", "_reason": reason}
    )


def _make_function(name: str, reason: str) -> Any:
    def placeholder(*args: Any, **kwargs: Any) -> NoReturn:
        raise unsupported_error(name, reason)

    placeholder.__name__ = placeholder.__qualname__ = name
    placeholder.__module__ = "featurebus"
    placeholder.__doc__ = f"Tecton's ``{name}``: not supported by featurebus ({reason}). Calling it raises."
    return placeholder


class _UnsupportedObject:
    """A module-like object (``tecton.conf``): any attribute or call raises."""

    def __init__(self, name: str, reason: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_reason", reason)

    def __getattr__(self, attribute: str) -> NoReturn:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise unsupported_error(f"{self._name}.{attribute}", self._reason)

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise unsupported_error(self._name, self._reason)

    def __repr__(self) -> str:
        return f"<unsupported Tecton name {self._name}>"


def _make(name: str, kind: _Kind, reason: str) -> Any:
    if kind == "class":
        return _make_class(name, reason)
    if kind == "function":
        return _make_function(name, reason)
    return _UnsupportedObject(name, reason)


UNSUPPORTED: Mapping[str, Any] = MappingProxyType(
    {name: _make(name, kind, why) for name, (kind, why) in _TABLE.items()}
)
"""Every placeholder by its Tecton name; ``featurebus`` exports each of them."""
