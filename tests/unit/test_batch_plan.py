"""Plans over batch feature views (sdk/plan.py): what invalidates their materialized data."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from featurebus import Aggregate, BatchSource, Entity, Field, FileConfig, batch_feature_view
from featurebus.compile import compile_workspace
from featurebus.plan import plan
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.types import Float64, String

user = Entity(name="user", join_keys=[Field("user_id", String)])


def _workspace(
    window_h: int = 3, uri: str = "/data/tx", schedule_days: int = 1, owner: str | None = None, doubled: bool = False
) -> WorkspaceSpec:
    tx = BatchSource(name="tx", batch_config=FileConfig(uri=uri, timestamp_field="ts"))

    def spend(tx):  # type: ignore[no-untyped-def]
        return tx

    def spend2(tx):  # type: ignore[no-untyped-def]
        return tx.assign(amount=tx.amount * 2)

    function: Any = spend2 if doubled else spend
    view = batch_feature_view(
        name="spend",
        sources=[tx],
        entities=[user],
        mode="pandas",
        online=True,
        offline=True,
        owner=owner,
        aggregation_interval=timedelta(hours=1),
        batch_schedule=timedelta(days=schedule_days),
        features=[
            Aggregate(function="sum", time_window=timedelta(hours=window_h), input_column=Field("amount", Float64))
        ],
    )(function)
    return compile_workspace("w", [user, tx, view])


def _change(before: WorkspaceSpec, after: WorkspaceSpec) -> Any:
    return next(c for c in plan(before, after).changes if c.kind == "batch_feature_view")


def test_creating_and_round_tripping_a_batch_view() -> None:
    desired = _workspace()
    result = plan(None, desired)
    assert [(c.kind, c.action) for c in result.changes] == [
        ("entity", "create"),
        ("batch_source", "create"),
        ("batch_feature_view", "create"),
    ]
    assert result.apply_to(None) == dataclasses.replace(desired, version=0)
    assert WorkspaceSpec.from_json(desired.to_json()) == desired


def test_what_invalidates_a_batch_views_materialized_data() -> None:
    base = _workspace()
    assert _change(base, _workspace(window_h=4)).rematerialize
    assert "amount_sum_" in _change(base, _workspace(window_h=4)).reason
    assert _change(base, _workspace(doubled=True)).rematerialize  # the transformation's code
    source_changed = _change(base, _workspace(uri="/data/tx2"))
    assert source_changed.rematerialize and "source 'tx' changed: batch_config.uri" in source_changed.reason
    for harmless in (_workspace(schedule_days=2), _workspace(owner="team")):
        change = _change(base, harmless)
        assert change.action == "update" and not change.rematerialize
    assert _change(base, _workspace()).action == "unchanged"


def test_applying_a_plan_yields_the_desired_workspace() -> None:
    before, after = _workspace(), _workspace(window_h=4, uri="/data/tx2")
    assert plan(before, after).apply_to(before) == after


def test_describe_shows_a_batch_views_lineage() -> None:
    from featurebus.describe import describe_document, lineage

    spec = _workspace()
    expected = {"sources": ["tx"], "entities": ["user"], "feature_views": ["spend"], "feature_services": []}
    assert lineage(spec, "batch_feature_view", "spend") == expected
    assert lineage(spec, "batch_source", "tx") == expected
    assert lineage(spec, "entity", "user") == expected
    document = describe_document(spec, "batch_feature_view", spec.batch_view("spend"), None, "test")
    assert document["materialization"]["feature_topic"] == "featurebus.w.features.spend"
