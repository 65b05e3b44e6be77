"""A feature table's derived objects: the push source and the view of Attribute features that
the worker, the stores and serving run for it. Pure; shared by the SDK's compiler and the
control plane's plan/apply (a plan rebuilds them from the tables it applies)."""

from __future__ import annotations

import dataclasses
from typing import Any

from featurebus.platform.kafka.topics import push_topic
from featurebus.schemas.kinds import AggregationFunction, TransformationMode
from featurebus.schemas.specs import (
    AggregationSpec,
    FeatureTableSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)
from featurebus.streams.aggregations import output_dtype

__all__ = ["attribute_aggregation", "table_objects", "with_table_objects"]


def attribute_aggregation(feature: FieldSpec, ttl_ms: int) -> AggregationSpec:
    # As a stream view's Attribute: ``last`` over [T - ttl, T), keeping nulls (docs/design.md §4).
    return AggregationSpec(
        feature.name,
        AggregationFunction.LAST,
        feature.name,
        feature.dtype,
        ttl_ms,
        output_dtype(AggregationFunction.LAST, feature.dtype),
        attribute=True,
    )


def table_objects(workspace: str, table: FeatureTableSpec) -> tuple[StreamSourceSpec, StreamFeatureViewSpec]:
    """What the worker, the stores and serving run for the table: its push source (records in
    the order join keys, features, timestamp) and its view of Attribute features."""
    metadata: dict[str, Any] = {
        "description": table.description,
        "owner": table.owner,
        "tags": table.tags,
        "prevent_destroy": table.prevent_destroy,
        "defined_at": table.defined_at,
    }
    timestamp = FieldSpec(table.timestamp_field, "timestamp")
    source = StreamSourceSpec(
        table.name,
        (*table.join_keys, *table.features, timestamp),
        KafkaConfigSpec(topics=(push_topic(workspace, table.name),), timestamp_field=table.timestamp_field),
        push=True,
        log_offline=table.offline,
        feature_table=True,
        **metadata,
    )
    view = StreamFeatureViewSpec(
        name=table.name,
        source=table.name,
        entities=table.entities,
        join_keys=tuple(k.name for k in table.join_keys),
        timestamp_field=table.timestamp_field,
        # The records are the features already: the identity, in the worker's cheapest mode.
        transformation=TransformationSpec(
            TransformationMode.PANDAS, table.name, f"def {table.name}(df):\n    return df\n"
        ),
        aggregations=tuple(attribute_aggregation(f, table.ttl_ms) for f in table.features),
        online=table.online,
        offline=table.offline,
        feature_table=True,
        **metadata,
    )
    return source, view


def with_table_objects(spec: WorkspaceSpec) -> WorkspaceSpec:
    """``spec`` with its tables' derived sources and views rebuilt from ``feature_tables``: the
    others first (as they are), then the tables', in table order."""
    derived = [table_objects(spec.name, t) for t in spec.feature_tables]
    return dataclasses.replace(
        spec,
        stream_sources=(*(s for s in spec.stream_sources if not s.feature_table), *(s for s, _ in derived)),
        stream_feature_views=(*(v for v in spec.stream_feature_views if not v.feature_table), *(v for _, v in derived)),
    )
