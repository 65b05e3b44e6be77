"""FeatureTable: compiled onto a push source and a view of Attribute features, planned and
described as one object of kind ``feature_table``, ingested under its own name."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from featurebus import Attribute, Calculation, Entity, FeatureService, FeatureTable, Field, RealtimeFeatureView
from featurebus.compile import compile_workspace
from featurebus.describe import describe_document, find_object, lineage
from featurebus.exceptions import InvalidRequestError, RecordValidationError
from featurebus.feature_table import table_records
from featurebus.plan import plan
from featurebus.platform.kafka.topics import push_topic
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.serving.ingest import IngestService, MemoryRecordSink
from featurebus.types import Float64, Int64, String, Timestamp
from featurebus.workspace import Workspace
from tests.support.push_repo import push_workspace, user
from tests.support.table_repo import TTL, scores_table, table_workspace, user_scores

SPEC = table_workspace("w")


def test_a_table_compiles_to_its_spec_a_push_source_and_a_view_of_attributes() -> None:
    table = SPEC.feature_table("user_scores")
    assert [f.name for f in table.features] == ["score", "segment", "visits"]
    assert table.ttl_ms == TTL // timedelta(milliseconds=1) and table.online and table.offline
    assert table.tags == (("team", "growth"),) and table.owner == "ml@example.com"
    source = SPEC.source("user_scores")
    assert source.feature_table and source.push and source.log_offline
    assert [f.name for f in source.schema] == ["user_id", "score", "segment", "visits", "ts"]
    assert source.kafka.topics == (push_topic("w", "user_scores"),) and source.kafka.timestamp_field == "ts"
    view = SPEC.view("user_scores")
    assert view.feature_table and view.source == "user_scores" and view.join_keys == ("user_id",)
    assert [(a.name, a.function, a.window_ms, a.attribute) for a in view.aggregations] == [
        (name, "last", table.ttl_ms, True) for name in ("score", "segment", "visits")
    ]
    assert [a.output_dtype for a in view.aggregations] == ["float64", "string", "int64"]
    # Derived objects come after the others, so plan's apply_to rebuilds the very same spec.
    assert SPEC.stream_sources[-1].name == "user_scores" and SPEC.stream_feature_views[-1].name == "user_scores"


def test_a_service_selects_table_features_like_view_features() -> None:
    service = SPEC.service("scored_clicks")
    assert [(s.view, s.features) for s in service.selections] == [
        ("user_clicks", ("price_count_1h_continuous", "quantity_sum_1h_continuous")),
        ("user_scores", ("score", "visits")),
    ]


def test_schema_form_takes_features_from_the_columns_besides_keys_and_timestamp() -> None:
    table = FeatureTable(
        name="legacy",
        entities=[user],
        ttl=timedelta(days=1),
        schema=[Field("user_id", String), Field("ts", Timestamp), Field("n", Int64)],
    )
    spec = compile_workspace("w", [table])
    assert [f.name for f in spec.feature_table("legacy").features] == ["n"]
    assert spec.feature_table("legacy").timestamp_field == "ts"
    assert not spec.source("legacy").log_offline and not spec.view("legacy").online  # Tecton's defaults: off


def test_specs_round_trip_through_json() -> None:
    assert WorkspaceSpec.from_json(SPEC.to_json()) == SPEC


def test_plan_shows_the_table_as_one_object() -> None:
    changes = plan(None, SPEC).changes
    assert [(c.kind, c.name) for c in changes if c.name == "user_scores"] == [("feature_table", "user_scores")]
    assert plan(None, SPEC).apply_to(None) == dataclasses.replace(SPEC, name="w")


def test_changing_the_ttl_rematerializes_and_metadata_does_not() -> None:
    longer = compile_workspace("w", [scores_table(ttl=timedelta(hours=5))])
    base = compile_workspace("w", [scores_table()])
    change = next(c for c in plan(base, longer).changes if c.kind == "feature_table")
    assert change.action == "update" and change.rematerialize and "ttl_ms" in change.reason
    assert plan(base, longer).apply_to(base) == longer
    assert plan(base, longer).apply_to(base).view("user_scores").aggregations[0].window_ms == 5 * 3_600_000
    described = compile_workspace("w", [scores_table(description="new words", online=False)])
    harmless = next(c for c in plan(base, described).changes if c.kind == "feature_table")
    assert harmless.action == "update" and not harmless.rematerialize
    assert plan(base, described).apply_to(base) == described


def test_removing_the_table_deletes_it_and_its_derived_objects() -> None:
    plain = push_workspace("w")
    result = plan(SPEC, plain)
    deleted = [(c.kind, c.name) for c in result.changes if c.action == "delete"]
    assert deleted == [("feature_table", "user_scores"), ("feature_service", "scored_clicks")]
    after = result.apply_to(SPEC)
    assert after.feature_tables == () and all(not s.feature_table for s in after.stream_sources)
    assert [v.name for v in after.stream_feature_views] == ["user_clicks"]


def test_describe_finds_the_table_not_its_derived_objects() -> None:
    kind, obj = find_object(SPEC, "user_scores")
    assert kind == "feature_table"
    assert lineage(SPEC, kind, "user_scores") == {
        "sources": ["user_scores"],
        "entities": ["user"],
        "feature_views": ["user_scores"],
        "feature_services": ["scored_clicks"],
    }
    doc = describe_document(SPEC, kind, obj, None, "applied")
    assert doc["metadata"]["owner"] == "ml@example.com" and doc["spec"]["ttl_ms"] == TTL // timedelta(milliseconds=1)
    assert doc["materialization"]["online"] is True


def test_records_are_ingested_under_the_table_name() -> None:
    sink = MemoryRecordSink()
    service = IngestService(lambda: {"w": SPEC}, sink)
    record = {"user_id": "u1", "score": 0.5, "segment": "a", "visits": 3, "ts": "2026-11-26T10:00:00Z"}
    result = service.ingest("w", {"user_scores": [{"record": record}]}, dry_run=False)
    assert sink.records[0][0] == push_topic("w", "user_scores") and sink.records[0][1] == b'["u1"]'
    assert result["ingestMetrics"]["featureViewIngestMetrics"] == [
        {"featureViewName": "user_scores", "onlineRecordIngestCount": "1", "offlineRecordIngestCount": "1"}
    ]
    with pytest.raises(RecordValidationError):
        service.ingest("w", {"user_scores": [{"record": {**record, "visits": "many"}}]}, dry_run=False)
    assert len(sink.records) == 1


def test_dataframe_rows_become_records_with_nulls_for_missing_values() -> None:
    table = SPEC.feature_table("user_scores")
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "score": [0.5, float("nan")],
            "visits": pd.array([3, None], dtype="Int64"),
            "ts": pd.to_datetime(["2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"], utc=True),
        }
    )
    items = table_records(table, df)
    assert items[1]["record"]["score"] is None and items[1]["record"]["visits"] is None
    assert type(items[0]["record"]["visits"]) is int
    with pytest.raises(InvalidRequestError, match=r"missing columns \['ts'\]; unknown columns \['color'\]"):
        table_records(table, df.drop(columns=["ts"]).assign(color="red"))


def test_the_workspace_client_lists_tables_apart_from_views() -> None:
    ws = Workspace(SPEC, offline_root=Path("/nonexistent"))
    assert ws.list_feature_tables() == ["user_scores"]
    assert "user_scores" not in ws.list_feature_views()
    assert ws.get_feature_table("user_scores").name == "user_scores"


def test_table_and_entity_with_several_join_keys() -> None:
    pair = Entity(name="pair", join_keys=[Field("a", String), Field("b", Int64)])
    table = FeatureTable(
        name="pairs",
        entities=[pair],
        timestamp_field="ts",
        ttl=timedelta(days=1),
        features=[Attribute("x", Float64)],
        online=True,
    )
    spec = compile_workspace("w", [table])
    assert spec.view("pairs").join_keys == ("a", "b")
    assert [f.name for f in spec.source("pairs").schema] == ["a", "b", "x", "ts"]


def test_a_realtime_view_reads_table_features() -> None:
    doubled = RealtimeFeatureView(
        name="doubled",
        sources=[user_scores[["score"]]],
        features=[Calculation(name="score_x2", expr="user_scores.score * 2")],
    )
    spec = compile_workspace("w", [doubled, FeatureService(name="s", features=[doubled])])
    assert [t.name for t in spec.feature_tables] == ["user_scores"]  # pulled in by the realtime view
    inputs = spec.realtime_view("doubled").inputs
    assert [(i.kind, i.name, [f.name for f in i.fields]) for i in inputs] == [
        ("feature_view", "user_scores", ["score"])
    ]
    assert spec.realtime_view("doubled").features[0].dtype == "float64"
