"""Realtime feature views: definitions, compilation to specs, plan diffs and validation errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from featurebus import (
    Attribute,
    Calculation,
    FeatureService,
    Field,
    RealtimeFeatureView,
    RequestSource,
    realtime_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError, StoreFormatError
from featurebus.plan import plan
from featurebus.repo import load_repo
from featurebus.schemas.specs import CalculationSpec, RealtimeInputSpec, WorkspaceSpec
from featurebus.streams.realtime import DependencyCycleError, check_realtime_views, realtime_order
from featurebus.types import Float64, Int64, String
from tests.support.realtime_repo import OBJECTS, SPEC, txn, user_spending

HERE = Path(__file__).name


def test_compiled_specs() -> None:
    ratio = SPEC.realtime_view("ratio")
    assert ratio.mode == "no_transformation" and ratio.transformation is None
    assert [(c.name, c.dtype) for c in ratio.calculations] == [
        ("amount_ratio", "float64"),
        ("big", "bool"),
        ("seen_plus", "int64"),
        ("app_or_web", "bool"),
    ]
    assert ratio.inputs[0] == RealtimeInputSpec("request", "txn", ratio.inputs[0].fields, "")
    assert [f.name for f in ratio.inputs[1].fields] == [
        "amount_mean_1h_continuous",
        "amount_count_1h_continuous",
        "amount_sum_1h_continuous",
    ]
    py = SPEC.realtime_view("py_view")
    assert py.transformation is not None and py.transformation.code.startswith("def py_view(")
    assert py.context_parameter == "context"
    assert [i.parameter for i in SPEC.realtime_view("pd_view").inputs] == ["txn", "spend"]
    assert SPEC.service("scoring").selections[-1].features == ("score",)


def test_specs_round_trip_and_older_documents_still_read() -> None:
    assert WorkspaceSpec.from_json(SPEC.to_json()) == SPEC
    old = dataclasses.replace(SPEC, realtime_feature_views=(), format_version=1)
    document = old.to_json().replace(b',"realtime_feature_views":[]', b"")
    assert WorkspaceSpec.from_json(document).realtime_feature_views == ()
    with pytest.raises(StoreFormatError):
        WorkspaceSpec.from_json(dataclasses.replace(SPEC, format_version=99).to_json())


def test_plan_creates_updates_and_deletes_realtime_views() -> None:
    created = plan(None, SPEC)
    assert ("realtime_feature_view", "ratio", "create") in [(c.kind, c.name, c.action) for c in created.changes]
    assert created.apply_to(None) == SPEC
    ratio = SPEC.realtime_view("ratio")
    edited = dataclasses.replace(
        ratio, calculations=(dataclasses.replace(ratio.calculations[0], expr="txn.amount"), *ratio.calculations[1:])
    )
    desired = dataclasses.replace(
        SPEC,
        realtime_feature_views=tuple(
            edited if v.name == "ratio" else v for v in SPEC.realtime_feature_views if v.name != "request_only"
        ),
    )
    diff = plan(SPEC, desired)
    changes = {(c.kind, c.name): c for c in diff.changes}
    update = changes[("realtime_feature_view", "ratio")]
    assert update.action == "update" and not update.rematerialize
    assert [fc.path for fc in update.changed_fields] == ["calculations[amount_ratio].expr"]
    assert changes[("realtime_feature_view", "request_only")].action == "delete"
    assert diff.apply_to(SPEC) == dataclasses.replace(desired, version=SPEC.version)


def test_the_fraud_example_compiles_with_its_realtime_view() -> None:
    spec = load_repo(Path(__file__).parents[2] / "examples" / "fraud", "w")
    view = spec.realtime_view("transaction_vs_history")
    assert [(f.name, f.dtype) for f in view.features] == [("amount_to_daily_mean", "float64"), ("is_unusual", "bool")]
    assert "transaction_vs_history" in [s.view for s in spec.service("fraud_scoring").selections]


def _compile(*extra: Any) -> WorkspaceSpec:
    return compile_workspace("w", [*OBJECTS, *extra])


def test_a_calculation_naming_an_unknown_column_points_at_its_line() -> None:
    view = RealtimeFeatureView(name="bad", sources=[txn], features=[Calculation(name="x", expr="txn.missing * 2")])
    with pytest.raises(DefinitionError) as info:
        _compile(view)
    message = str(info.value)
    assert message.startswith("Calculation 'x' of RealtimeFeatureView 'bad' (")
    assert f"{HERE}:" in message and "unknown column `txn.missing`" in message and "Fix expr=" in message


def test_a_calculation_with_mismatched_types_is_refused() -> None:
    view = RealtimeFeatureView(name="bad", sources=[txn], features=[Calculation(name="x", expr="txn.merchant + 1")])
    with pytest.raises(DefinitionError, match="cannot perform addition on non-numeric type string"):
        _compile(view)


def test_reading_a_feature_that_does_not_exist() -> None:
    view = RealtimeFeatureView(
        name="bad", sources=[user_spending[["nope"]]], features=[Calculation(name="x", expr="1")]
    )
    with pytest.raises(
        DefinitionError,
        match=rf"RealtimeFeatureView 'bad' \(.*{HERE}:\d+\): source 'user_spending' "
        r"has no feature 'nope'. Choose from: amount_count_1h_continuous",
    ):
        _compile(view)


def test_a_service_selecting_an_unknown_realtime_feature() -> None:
    from tests.support.realtime_repo import ratio

    service = FeatureService(name="bad", features=[ratio[["nope"]]])
    with pytest.raises(DefinitionError, match=r"view 'ratio' has no feature 'nope'. Choose from: amount_ratio"):
        _compile(service)


def test_dependency_cycles_are_named() -> None:
    assert realtime_order({"a": ["b", "stream"], "b": [], "c": ["a"]}) == ["b", "a", "c"]
    with pytest.raises(DependencyCycleError, match="a -> b -> c -> a") as info:
        realtime_order({"a": ["b"], "b": ["c"], "c": ["a"]})
    assert info.value.cycle == ["a", "b", "c", "a"]
    chained = SPEC.realtime_view("chained")
    py = SPEC.realtime_view("py_view")
    chained_fields = chained.features
    cyclic_py = dataclasses.replace(
        py, inputs=(*py.inputs, RealtimeInputSpec("feature_view", "chained", chained_fields))
    )
    cyclic = dataclasses.replace(
        SPEC, realtime_feature_views=tuple(cyclic_py if v.name == "py_view" else v for v in SPEC.realtime_feature_views)
    )
    with pytest.raises(DefinitionError, match=r"cycle: .*chained.*py_view|cycle: .*py_view.*chained"):
        check_realtime_views(cyclic)


def test_spec_level_checks_find_missing_views_and_features() -> None:
    ratio = SPEC.realtime_view("ratio")
    gone = dataclasses.replace(SPEC, stream_feature_views=())
    with pytest.raises(DefinitionError, match="reads view 'user_spending', which the workspace does not define"):
        check_realtime_views(gone)
    renamed = dataclasses.replace(
        ratio,
        inputs=(
            ratio.inputs[0],
            dataclasses.replace(
                ratio.inputs[1], fields=(dataclasses.replace(ratio.inputs[1].fields[0], name="other"),)
            ),
        ),
    )
    with pytest.raises(DefinitionError, match=r"reads user_spending.other \(float64\)"):
        check_realtime_views(dataclasses.replace(SPEC, realtime_feature_views=(renamed,)))
    assert CalculationSpec("x", "1", "int64").dtype == "int64"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: RealtimeFeatureView(name="v", sources=[txn], features=[Attribute("a", Int64)]),
            "Attribute features need a transformation function",
        ),
        (
            lambda: RealtimeFeatureView(
                name="v", sources=[txn], features=[Attribute("a", Int64), Calculation(name="b", expr="1")]
            ),
            "cannot be mixed",
        ),
        (
            lambda: RealtimeFeatureView(name="v", sources=[], features=[Calculation(name="b", expr="1")]),
            "sources is empty",
        ),
        (
            lambda: RealtimeFeatureView(
                name="v",
                sources=[txn, RequestSource([Field("amount", Float64)], name="txn")],
                features=[Calculation(name="b", expr="1")],
            ),
            "two sources are both named",
        ),
        (
            lambda: RealtimeFeatureView(name="v", sources=["nope"], features=[Calculation(name="b", expr="1")]),
            "neither a RequestSource nor a feature view",
        ),
        (
            lambda: RealtimeFeatureView(
                name="v", sources=[txn], features=[Calculation(name="b", expr="1")], secrets={"k": "v"}
            ),
            "secrets are not supported yet",
        ),
        (
            lambda: RealtimeFeatureView(
                name="v", sources=[txn], features=[Calculation(name="b", expr="1"), Calculation(name="b", expr="2")]
            ),
            "two features are both named",
        ),
        (lambda: RequestSource(schema=[]), "schema must be a non-empty list of Field"),
        (lambda: Calculation(name="c", expr=" "), "expr must be a non-empty string"),
        (lambda: Attribute("a", "int"), "dtype must be a featurebus.types type"),
    ],
)
def test_definitions_are_validated_on_construction(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message) as info:
        build()
    assert f"{HERE}:" in str(info.value)


def test_transformations_bind_one_parameter_per_source() -> None:
    with pytest.raises(DefinitionError, match=r"takes 1 source parameter\(s\) but the view has 2 source\(s\)"):

        @realtime_feature_view(sources=[txn, user_spending], mode="python", features=[Attribute("a", Int64)])
        def too_few(txn: Any) -> Any:
            return {"a": 1}

    with pytest.raises(DefinitionError, match="mode 'sql' is not supported"):

        @realtime_feature_view(sources=[txn], mode="sql", features=[Attribute("a", Int64)])
        def wrong_mode(txn: Any) -> Any:
            return {"a": 1}

    @realtime_feature_view(
        sources=[txn], mode="python", features=[Attribute("a", String)], context_parameter_name="ctx"
    )
    def named_context(ctx: Any, request: Any) -> Any:
        return {"a": request["merchant"]}

    assert named_context.parameters == ("request",) and named_context.takes_context


def test_a_function_reading_a_field_its_source_lacks_is_refused_at_compile_time() -> None:
    @realtime_feature_view(
        sources=[txn, user_spending[["amount_mean_1h_continuous"]]], mode="python", features=[Attribute("a", Float64)]
    )
    def typo(txn: Any, spend: Any) -> Any:
        return {"a": txn["amount"] + (spend.get("amount_mean_1d_continuous") or 0.0)}

    with pytest.raises(
        DefinitionError,
        match=rf"RealtimeFeatureView 'typo' \(.*{HERE}:\d+\): the function reads "
        r"spend\['amount_mean_1d_continuous'\], which source 'user_spending' "
        r"does not have. Use one of: amount_mean_1h_continuous",
    ):
        _compile(typo)

    @realtime_feature_view(sources=[txn], mode="pandas", features=[Attribute("a", Float64)])
    def missing_request_field(txn: Any) -> Any:
        return txn[["amount"]].assign(a=txn["amount_usd"])

    with pytest.raises(DefinitionError, match=r"reads txn\['amount_usd'\], which source 'txn' does not have"):
        _compile(missing_request_field)


def test_plan_renders_realtime_views() -> None:
    from featurebus.plan_render import render_plan

    text = render_plan(plan(None, SPEC), color=False)
    assert "+ create realtime_feature_view ratio" in text
