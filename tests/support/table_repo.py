"""A workspace with a FeatureTable next to a stream view, both in one feature service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from featurebus import Attribute, FeatureService, FeatureTable
from featurebus.compile import compile_workspace
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.types import Float64, Int64, String
from tests.support.push_repo import clicks, user, user_clicks

TTL = timedelta(hours=2)


def scores_table(**overrides: Any) -> FeatureTable:
    params: dict[str, Any] = dict(
        name="user_scores",
        entities=[user],
        timestamp_field="ts",
        ttl=TTL,
        online=True,
        offline=True,
        features=[Attribute("score", Float64), Attribute("segment", String), Attribute("visits", Int64)],
        description="scores computed by the nightly job",
        owner="ml@example.com",
        tags={"team": "growth"},
    )
    params.update(overrides)
    return FeatureTable(**params)


user_scores = scores_table()
scored_clicks = FeatureService(name="scored_clicks", features=[user_clicks, user_scores[["score", "visits"]]])


def table_workspace(name: str, *extra: Any) -> WorkspaceSpec:
    return compile_workspace(name, [user, clicks, user_clicks, user_scores, scored_clicks, *extra])
