"""plan() is a pure diff of two workspace specs: table-driven cases for what operators see,
hypothesis properties for the algebra (plan(A, B) applied to A gives B), and the renderers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurebus.exceptions import FeaturebusError
from featurebus.plan import Plan, plan
from featurebus.plan_render import plan_to_json, render_plan
from featurebus.repo import load_repo
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

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000

USER = EntitySpec("user", (FieldSpec("user_id", "string"),))
TRANSACTIONS = StreamSourceSpec(
    "transactions",
    (FieldSpec("user_id", "string"), FieldSpec("amount", "float64"), FieldSpec("ts", "timestamp")),
    KafkaConfigSpec(("transactions",), "ts"),
)
CLICKS = StreamSourceSpec(
    "clicks", (FieldSpec("user_id", "string"), FieldSpec("ts", "timestamp")), KafkaConfigSpec(("clicks",), "ts")
)
CODE = "def stats(transactions):\n    return transactions\n"


def _agg(name: str, window_ms: int, function: str = "sum", column: str = "amount") -> AggregationSpec:
    return AggregationSpec(name, function, column, "float64", window_ms, "float64")


STATS = StreamFeatureViewSpec(
    name="user_stats",
    source="transactions",
    entities=("user",),
    join_keys=("user_id",),
    timestamp_field="ts",
    transformation=TransformationSpec("pandas", "stats", CODE),
    aggregations=(_agg("amount_sum_1h_continuous", HOUR_MS), _agg("amount_count_1h_continuous", HOUR_MS, "count")),
)
CLICK_COUNTS = StreamFeatureViewSpec(
    name="user_clicks",
    source="clicks",
    entities=("user",),
    join_keys=("user_id",),
    timestamp_field="ts",
    transformation=TransformationSpec("python", "clicks", "def clicks(row):\n    return row\n"),
    aggregations=(_agg("ts_count_1h_continuous", HOUR_MS, "count", "ts"),),
)
SPENDING = FeatureServiceSpec("spending", (FeatureSelectionSpec("user_stats", ("amount_sum_1h_continuous",)),))
BASE = WorkspaceSpec("w", (USER,), (CLICKS, TRANSACTIONS), (CLICK_COUNTS, STATS), (SPENDING,), version=7)


def _views(ws: WorkspaceSpec, *views: StreamFeatureViewSpec) -> WorkspaceSpec:
    return dataclasses.replace(ws, stream_feature_views=views)


Edit = Callable[[WorkspaceSpec], WorkspaceSpec]
# (what the user did, the edit, {(kind, name): (action, rematerialize)} for every changed object,
#  field paths expected among the changes)
CASES: list[tuple[str, Edit, dict[tuple[str, str], tuple[str, bool]], set[str]]] = [
    ("identical", lambda ws: ws, {}, set()),
    (
        "delete a view",
        lambda ws: _views(ws, CLICK_COUNTS),
        {("stream_feature_view", "user_stats"): ("delete", False)},
        set(),
    ),
    (
        "rename a service",
        lambda ws: dataclasses.replace(ws, feature_services=(dataclasses.replace(SPENDING, name="spend"),)),
        {("feature_service", "spending"): ("delete", False), ("feature_service", "spend"): ("create", False)},
        set(),
    ),
    (
        "change a window",
        lambda ws: _views(
            ws,
            CLICK_COUNTS,
            dataclasses.replace(
                STATS, aggregations=(_agg("amount_sum_1h_continuous", 2 * HOUR_MS), STATS.aggregations[1])
            ),
        ),
        {("stream_feature_view", "user_stats"): ("update", True)},
        {"aggregations[amount_sum_1h_continuous].window_ms"},
    ),
    (
        "change only a description",
        lambda ws: _views(ws, CLICK_COUNTS, dataclasses.replace(STATS, description="per user")),
        {("stream_feature_view", "user_stats"): ("update", False)},
        {"description"},
    ),
    (
        "change a source schema",
        lambda ws: dataclasses.replace(
            ws,
            stream_sources=(
                CLICKS,
                dataclasses.replace(
                    TRANSACTIONS,
                    schema=(*TRANSACTIONS.schema[:1], FieldSpec("amount", "int64"), TRANSACTIONS.schema[2]),
                ),
            ),
        ),
        # the view's own definition is unchanged, yet the data it was computed from is not
        {
            ("stream_source", "transactions"): ("update", False),
            ("stream_feature_view", "user_stats"): ("unchanged", True),
        },
        {"schema[amount].dtype"},
    ),
    (
        "change transformation code",
        lambda ws: _views(
            ws,
            CLICK_COUNTS,
            dataclasses.replace(
                STATS,
                transformation=dataclasses.replace(STATS.transformation, code=CODE.replace("return", "return 1 +")),
            ),
        ),
        {("stream_feature_view", "user_stats"): ("update", True)},
        {"transformation.code"},
    ),
    (
        "add a served feature",
        lambda ws: dataclasses.replace(
            ws,
            feature_services=(
                dataclasses.replace(
                    SPENDING,
                    selections=(
                        FeatureSelectionSpec("user_stats", ("amount_sum_1h_continuous", "amount_count_1h_continuous")),
                    ),
                ),
            ),
        ),
        {("feature_service", "spending"): ("update", False)},
        {"selections[0].features"},
    ),
]


@pytest.mark.parametrize(("edit", "expected", "paths"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_reports_each_change(
    edit: Edit, expected: dict[tuple[str, str], tuple[str, bool]], paths: set[str]
) -> None:
    desired = edit(BASE)
    result = plan(BASE, desired)
    reported = {
        (c.kind, c.name): (c.action, c.rematerialize)
        for c in result.changes
        if c.action != "unchanged" or c.rematerialize
    }
    assert reported == expected
    assert paths <= {fc.path for c in result.changes for fc in c.changed_fields}
    assert result.is_empty == (not expected)
    assert _same_objects(result.apply_to(BASE), desired)


def test_rematerialization_and_delete_reasons_name_the_cause() -> None:
    shrunk = dataclasses.replace(STATS, timestamp_field="event_ts", description="x")
    changes = {c.name: c for c in plan(BASE, _views(BASE, shrunk)).changes}
    assert changes["user_stats"].reason == "changed: timestamp_field"
    assert changes["user_clicks"].reason == "it is no longer computed or served (its feature topic stays on the bus)"
    topics = dataclasses.replace(TRANSACTIONS, kafka=dataclasses.replace(TRANSACTIONS.kafka, topics=("tx2",)))
    view = {c.name: c for c in plan(BASE, dataclasses.replace(BASE, stream_sources=(CLICKS, topics))).changes}[
        "user_stats"
    ]
    assert view.reason == "source 'transactions' changed: kafka.topics"
    harmless = dataclasses.replace(TRANSACTIONS, kafka=dataclasses.replace(TRANSACTIONS.kafka, watermark_delay_ms=1))
    assert not any(
        c.rematerialize for c in plan(BASE, dataclasses.replace(BASE, stream_sources=(CLICKS, harmless))).changes
    )


def test_plan_from_nothing_creates_the_example_repository() -> None:
    fraud = load_repo(ROOT / "examples" / "fraud", "w")
    result = plan(None, fraud)
    assert {c.action for c in result.changes} == {"create"}
    assert result.apply_to(None) == fraud


def test_apply_to_refuses_a_workspace_the_plan_was_not_made_from() -> None:
    with pytest.raises(FeaturebusError, match="re-run plan"):
        plan(BASE, _views(BASE, STATS)).apply_to(_views(BASE, STATS))


# -- properties over random workspaces -------------------------------------------------------------
ENTITY_POOL = [
    USER,
    EntitySpec("merchant", (FieldSpec("merchant_id", "string"),)),
    EntitySpec("card", (FieldSpec("card_id", "string"), FieldSpec("bin", "string"))),
]
FIELD_POOL = [
    FieldSpec("user_id", "string"),
    FieldSpec("amount", "float64"),
    FieldSpec("amount", "int64"),
    FieldSpec("ts", "timestamp"),
    FieldSpec("country", "string"),
]
TEXT = st.sampled_from(["", "a", "b", "a long description that the renderer has to cut short " * 2])
CODES = st.sampled_from([CODE, CODE.replace("return", "return 2 *"), "def stats(t):\n    t = t.copy()\n    return t\n"])
WINDOWS = st.sampled_from([600_000, HOUR_MS, 24 * HOUR_MS])


def _subset(pool: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(pool), unique=True, max_size=len(pool))


@st.composite
def _fields(draw: st.DrawFn) -> tuple[FieldSpec, ...]:
    chosen = draw(st.lists(st.sampled_from(FIELD_POOL), unique_by=lambda f: f.name, max_size=4))
    return tuple(chosen)


@st.composite
def _source(draw: st.DrawFn, name: str) -> StreamSourceSpec:
    kafka = KafkaConfigSpec(
        tuple(draw(_subset(["a", "b", "c"]))),
        draw(st.sampled_from(["ts", "event_ts"])),
        watermark_delay_ms=draw(st.sampled_from([0, 60_000])),
    )
    return StreamSourceSpec(name, draw(_fields()), kafka, draw(TEXT))


@st.composite
def _view(draw: st.DrawFn, name: str) -> StreamFeatureViewSpec:
    aggregations = tuple(
        _agg(n, draw(WINDOWS), draw(st.sampled_from(["sum", "count"]))) for n in draw(_subset(["s1", "s2", "s3"]))
    )
    return StreamFeatureViewSpec(
        name=name,
        source=draw(st.sampled_from(["src_a", "src_b"])),
        entities=tuple(draw(_subset(["user", "card"]))),
        join_keys=("user_id",),
        timestamp_field="ts",
        transformation=TransformationSpec("pandas", "stats", draw(CODES)),
        aggregations=aggregations,
        aggregation_interval_ms=draw(st.sampled_from([None, 300_000])),
        online=draw(st.booleans()),
        description=draw(TEXT),
    )


@st.composite
def _service(draw: st.DrawFn, name: str) -> FeatureServiceSpec:
    selections = draw(
        st.lists(
            st.builds(
                FeatureSelectionSpec,
                st.sampled_from(["v1", "v2"]),
                st.lists(st.sampled_from(["s1", "s2", "s3"]), unique=True).map(tuple),
            ),
            max_size=3,
        )
    )
    return FeatureServiceSpec(name, tuple(selections), description=draw(TEXT))


@st.composite
def workspaces(draw: st.DrawFn) -> WorkspaceSpec:
    # Sorted by name, as compile_workspace sorts them (the plan compares objects, not their order).
    entities = sorted(
        (
            dataclasses.replace(e, description=draw(TEXT))
            for e in draw(st.lists(st.sampled_from(ENTITY_POOL), unique=True))
        ),
        key=lambda e: e.name,
    )
    return WorkspaceSpec(
        "w",
        tuple(entities),
        tuple(draw(_source(n)) for n in sorted(draw(_subset(["src_a", "src_b"])))),
        tuple(draw(_view(n)) for n in sorted(draw(_subset(["v1", "v2", "v3"])))),
        tuple(draw(_service(n)) for n in sorted(draw(_subset(["svc1", "svc2"])))),
        version=draw(st.integers(0, 9)),
    )


def _same_objects(a: WorkspaceSpec, b: WorkspaceSpec) -> bool:
    return dataclasses.replace(a, version=b.version) == b


@settings(max_examples=300, deadline=None)
@given(workspaces(), workspaces())
def test_applying_the_plan_yields_the_desired_workspace(a: WorkspaceSpec, b: WorkspaceSpec) -> None:
    result = plan(a, b)
    assert _same_objects(result.apply_to(a), b)
    assert result.is_empty == _same_objects(a, b)
    assert all(not c.rematerialize for c in result.changes if c.kind != "stream_feature_view")
    json.dumps(plan_to_json(result))  # every value the diff can hold is JSON-ready
    render_plan(result, color=True)


@given(workspaces())
def test_a_workspace_against_itself_is_an_empty_plan(a: WorkspaceSpec) -> None:
    assert plan(a, dataclasses.replace(a, version=a.version + 1)).is_empty
    assert render_plan(plan(a, a), color=False) == "No changes."


@given(workspaces())
def test_planning_from_nothing_creates_everything(b: WorkspaceSpec) -> None:
    result = plan(None, b)
    assert all(c.action == "create" for c in result.changes)
    assert result.summary()["create"] == sum(
        len(getattr(b, f)) for f in ("entities", "stream_sources", "stream_feature_views", "feature_services")
    )
    assert _same_objects(result.apply_to(None), b)


# -- rendering ------------------------------------------------------------------------------------------
def _mixed_plan() -> Plan:
    desired = dataclasses.replace(
        BASE,
        stream_feature_views=(
            dataclasses.replace(
                STATS,
                aggregations=(
                    _agg("amount_sum_1h_continuous", 2 * HOUR_MS),
                    _agg("amount_max_1h_continuous", HOUR_MS, "max"),
                ),
                transformation=dataclasses.replace(STATS.transformation, code=CODE.replace("return", "return [1] +")),
            ),
        ),
        feature_services=(SPENDING, FeatureServiceSpec("new_service", ())),
    )
    return plan(BASE, desired)


def test_plain_rendering_lists_every_change_and_a_summary() -> None:
    text = render_plan(_mixed_plan(), color=False)
    lines = text.splitlines()
    assert "~ update stream_feature_view user_stats" in lines
    assert "    aggregations[amount_sum_1h_continuous].window_ms: 3600000 -> 7200000" in lines
    assert "    aggregations[amount_count_1h_continuous]: removed" in lines
    assert any(
        line.startswith("    aggregations[amount_max_1h_continuous]: added {name='amount_max_1h_continuous'")
        for line in lines
    )
    assert "    transformation.code: line 2: '    return transactions' -> '    return [1] + transactions'" in lines
    assert "- delete stream_feature_view user_clicks" in lines
    assert "    it is no longer computed or served (its feature topic stays on the bus)" in lines
    assert "+ create feature_service new_service" in lines
    assert any(
        line.startswith(
            "    invalidates materialized features: changed: transformation.code, aggregations[amount_count_1h_continuous], "
        )
        for line in lines
    )
    assert lines[-1] == (
        "Plan for workspace w: 1 to create, 1 to update, 1 to delete, 4 unchanged; "
        "1 feature view(s) to recompute from their sources' history."
    )
    assert "[" not in text.replace("aggregations[", "").replace("'    return [1]", "")  # no markup


def test_colour_rendering_escapes_values_that_look_like_markup() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(render_plan(_mixed_plan(), color=True), soft_wrap=True)
    assert console.export_text().strip() == render_plan(_mixed_plan(), color=False)


def test_json_document_is_stable_and_serialisable() -> None:
    document = plan_to_json(_mixed_plan())
    assert json.loads(json.dumps(document)) == document
    assert document["summary"] == {"create": 1, "update": 1, "delete": 1, "unchanged": 4}
    view = next(c for c in document["changes"] if c["name"] == "user_stats")
    assert {"path": "aggregations[amount_sum_1h_continuous].window_ms", "old": HOUR_MS, "new": 2 * HOUR_MS} in view[
        "changed_fields"
    ]
    assert view["rematerialize"] is True
    assert plan_to_json(_mixed_plan()) == document


def test_long_values_are_cut_around_their_first_difference() -> None:
    long = "x" * 100
    desired = _views(BASE, CLICK_COUNTS, dataclasses.replace(STATS, description=long + " old"))
    edited = _views(BASE, CLICK_COUNTS, dataclasses.replace(STATS, description=long + " new"))
    lines = render_plan(plan(desired, edited), color=False).splitlines()
    assert f"    description: '…{'x' * 19} old' -> '…{'x' * 19} new'" in lines  # 20 chars of context
