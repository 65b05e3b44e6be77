"""Small workspace specs for tests, built from the spec dataclasses directly."""

from __future__ import annotations

from featurebus.schemas.specs import (
    AggregationSpec,
    EntitySpec,
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    KafkaConfigSpec,
    StreamFeatureViewSpec,
    StreamSourceSpec,
    TransformationSpec,
    WorkspaceSpec,
)

MINUTE = 60_000
HOUR = 60 * MINUTE

IDENTITY = TransformationSpec("pandas", "passthrough", "def passthrough(df):\n    return df\n")


def spending_workspace(
    topic: str = "transactions", interval_ms: int | None = None, watermark_delay_ms: int = HOUR, name: str = "test"
) -> WorkspaceSpec:
    windows = [("1m", MINUTE), ("1h", HOUR)] if interval_ms is None else [("1h", HOUR), ("2h", 2 * HOUR)]
    suffix = "continuous" if interval_ms is None else "10m"
    aggregations = tuple(
        AggregationSpec(
            f"amount_{fn}_{label}_{suffix}", fn, "amount", "float64", window, "int64" if fn == "count" else "float64"
        )
        for label, window in windows
        for fn in ("count", "sum", "mean")
    )
    view = StreamFeatureViewSpec(
        name="user_spending",
        source="transactions",
        entities=("user",),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=IDENTITY,
        aggregations=aggregations,
        aggregation_interval_ms=interval_ms,
    )
    return WorkspaceSpec(
        name=name,
        entities=(EntitySpec("user", (FieldSpec("user_id", "string"),)),),
        stream_sources=(
            StreamSourceSpec(
                "transactions",
                (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
                KafkaConfigSpec((topic,), "ts", watermark_delay_ms=watermark_delay_ms),
            ),
        ),
        stream_feature_views=(view,),
        feature_services=(
            FeatureServiceSpec(
                "spending", (FeatureSelectionSpec("user_spending", tuple(a.name for a in aggregations)),)
            ),
        ),
    )
