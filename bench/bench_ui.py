"""The web UI at scale: a generated workspace of 1,000 stream feature views and 10,000 features
(100 feature services), served by the control plane's app in process (no network, so the figures
are server-side: routing, the guard, the catalog query and template rendering).

Figures: p95 of the browse page (first page of everything), of a text search, of a filtered,
sorted deep page, and of an object page; the lineage payload's size and p95 time. Target: list
and search pages under 300 ms p95. No peer: Feast's UI is a client-side SPA over its registry.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from bench.harness import BenchContext, emit, median, percentile
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.control.audit import MemoryAuditLog
from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
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
from featurebus.serving.control.app import create_control_app

VIEWS = 1_000
FEATURES_PER_VIEW = 10
SERVICES = 100
HOUR = 3_600_000
_IDENTITY = TransformationSpec("pandas", "passthrough", "def passthrough(df):\n    return df\n")


def generated_workspace(name: str, views: int = VIEWS) -> WorkspaceSpec:
    functions = ("count", "sum", "mean", "min", "max")
    source = StreamSourceSpec(
        "events",
        (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
        KafkaConfigSpec(("events",), "ts"),
    )
    view_specs = tuple(
        StreamFeatureViewSpec(
            name=f"view_{i:04d}",
            source="events",
            entities=("user",),
            join_keys=("user_id",),
            timestamp_field="ts",
            transformation=_IDENTITY,
            aggregations=tuple(
                AggregationSpec(
                    f"amount_{fn}_{h}h_continuous",
                    fn,
                    "amount",
                    "float64",
                    h * HOUR,
                    "int64" if fn == "count" else "float64",
                )
                for fn in functions
                for h in (1, 24)
            ),
            description=f"generated view {i} of team {i % 17}",
            owner=f"team-{i % 17}@example.com",
            tags=(("tier", str(i % 3)),),
        )
        for i in range(views)
    )
    per_service = views // SERVICES
    services = tuple(
        FeatureServiceSpec(
            f"service_{s:03d}",
            tuple(
                FeatureSelectionSpec(v.name, tuple(a.name for a in v.aggregations))
                for v in view_specs[s * per_service : (s + 1) * per_service]
            ),
        )
        for s in range(SERVICES)
    )
    return WorkspaceSpec(
        name=name,
        entities=(EntitySpec("user", (FieldSpec("user_id", "string"),)),),
        stream_sources=(source,),
        stream_feature_views=view_specs,
        feature_services=services,
    )


def _timed(client: TestClient, url: str, repeats: int) -> tuple[list[float], int]:
    samples: list[float] = []
    size = 0
    for _ in range(repeats):
        start = time.perf_counter()
        answer = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:300]}")
        size = len(answer.content)
    return samples, size


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    registry = MemoryRegistry()
    plane = ControlPlane(registry, MemoryAuditLog())
    create_workspace(registry, "big", live=True)
    spec = generated_workspace("big")
    apply_workspace(registry, spec)
    plane.guard.access.create_principal("bench", PrincipalKind.SERVICE_ACCOUNT, admin=True)
    secret = plane.guard.access.create_key("bench")[1]
    client = TestClient(create_control_app(plane))
    client.cookies.set("featurebus_session", secret)
    repeats = 10 if ctx.quick else 40
    # The first calls flatten the spec into catalog rows and diff its versions for the history
    # (both cached per version): timed apart, as the cold figure.
    cold_start = time.perf_counter()
    client.get("/ui/browse")
    client.get("/ui/w/big/objects/view_0000")
    cold_ms = (time.perf_counter() - cold_start) * 1000
    pages = {
        "browse": "/ui/browse?workspace=big",
        "search": "/ui/browse?q=amount_sum_24h&workspace=big",
        "filtered_deep_page": "/ui/browse?kind=feature&sort=owner&desc=true&tag=tier%3D1&page=40",
        "object_page": "/ui/w/big/objects/view_0500",
    }
    features = sum(len(v.aggregations) for v in spec.stream_feature_views)
    detail = {"views": len(spec.stream_feature_views), "features": features, "repeats": repeats, "target_ms": 300}
    results = []
    for name, url in pages.items():
        samples, size = _timed(client, url, repeats)
        results.append(
            emit(
                "ui",
                f"{name}_p95_ms",
                percentile(samples, 95),
                "ms",
                None,
                None,
                {**detail, "bytes": size, "median_ms": round(median(samples), 2)},
            )
        )
    results.append(emit("ui", "first_view_cold_ms", cold_ms, "ms", None, None, detail))
    samples, size = _timed(client, "/ui/w/big/lineage.json", max(3, repeats // 4))
    results.append(emit("ui", "lineage_payload_bytes", size, "bytes", None, None, detail))
    results.append(emit("ui", "lineage_p95_ms", percentile(samples, 95), "ms", None, None, detail))
    return results
