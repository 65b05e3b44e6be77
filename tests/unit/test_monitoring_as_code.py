"""Monitoring as code: Tecton's view parameters and ``AlertRule`` compile into the spec, bad ones
fail naming the object and its file:line, and the evaluator derives its rules from the spec."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from featurebus import (
    Aggregate,
    AlertRule,
    Entity,
    FeatureService,
    Field,
    KafkaConfig,
    StreamSource,
    stream_feature_view,
)
from featurebus.compile import compile_workspace
from featurebus.exceptions import DefinitionError
from featurebus.platform.monitoring.history import MetricHistory
from featurebus.platform.monitoring.monitor import observe
from featurebus.platform.monitoring.prometheus import to_prometheus_rules
from featurebus.platform.monitoring.rules import RuleKind
from featurebus.platform.monitoring.scrape import Sample, parse_samples
from featurebus.platform.monitoring.workspace_rules import component_rules, default_freshness_ms, workspace_rules
from featurebus.schemas.materialization import fingerprint
from featurebus.schemas.specs import ViewMonitoringSpec, WorkspaceSpec
from featurebus.types import Float64, String, Timestamp

user = Entity(name="user", join_keys=[Field("user_id", String)])
transactions = StreamSource(
    name="transactions",
    schema=[Field("user_id", String), Field("amount", Float64), Field("ts", Timestamp)],
    stream_config=KafkaConfig(topics="transactions", timestamp_field="ts"),
)
AMOUNT_SUM = Aggregate(function="sum", time_window=timedelta(hours=1), input_column=Field("amount", Float64))


@stream_feature_view(
    source=transactions,
    entities=[user],
    mode="pandas",
    features=[AMOUNT_SUM],
    online=True,
    monitor_freshness=True,
    expected_feature_freshness=timedelta(minutes=5),
    alert_email="oncall@example.com",
)
def user_spending(transactions):  # type: ignore[no-untyped-def]
    return transactions


@stream_feature_view(source=transactions, entities=[user], mode="pandas", features=[AMOUNT_SUM], online=True)
def quiet_view(transactions):  # type: ignore[no-untyped-def]
    return transactions


spending = FeatureService(name="spending", features=[user_spending])
slow_serving = AlertRule(
    "spending_p99", "serving_p99", "spending", threshold=50, for_duration=timedelta(minutes=1), alert_email=["a@b.io"]
)


def _spec() -> WorkspaceSpec:
    return compile_workspace("prod", [user, transactions, user_spending, quiet_view, spending, slow_serving])


def test_the_tecton_parameters_and_alert_rules_compile_into_the_spec() -> None:
    spec = _spec()
    assert spec.view("user_spending").monitoring == ViewMonitoringSpec(True, 300_000, ("oncall@example.com",))
    assert spec.view("quiet_view").monitoring is None
    [rule] = spec.alert_rules
    assert (rule.name, rule.kind, rule.target, rule.threshold, rule.for_s) == (
        "spending_p99",
        "serving_p99",
        "spending",
        50.0,
        60.0,
    )
    assert WorkspaceSpec.from_json(spec.to_json()) == spec


def test_plan_and_apply_carry_alert_rules_created_changed_and_removed() -> None:
    """``featurebus apply`` of a repository whose only change is an AlertRule changes the registry."""
    from featurebus.plan import plan

    without = compile_workspace("prod", [user, transactions, user_spending, quiet_view, spending])
    created = plan(without, _spec())
    assert [(c.kind, c.name, c.action) for c in created.changes if c.kind == "alert_rule"] == [
        ("alert_rule", "spending_p99", "create")
    ]
    assert created.apply_to(without).alert_rules == _spec().alert_rules
    stricter = dataclasses.replace(_spec(), alert_rules=(dataclasses.replace(_spec().alert_rules[0], threshold=20.0),))
    changed = plan(_spec(), stricter)
    assert [(c.name, c.action) for c in changed.changes if c.kind == "alert_rule"] == [("spending_p99", "update")]
    assert changed.apply_to(_spec()).alert_rules[0].threshold == 20.0
    removed = plan(_spec(), without)
    assert [(c.name, c.action) for c in removed.changes if c.kind == "alert_rule"] == [("spending_p99", "delete")]
    assert removed.apply_to(_spec()).alert_rules == ()


def test_monitoring_parameters_never_change_what_the_tiles_are() -> None:
    spec = _spec()
    view, source = spec.view("user_spending"), spec.source("transactions")
    assert fingerprint(view, source) == fingerprint(dataclasses.replace(view, monitoring=None), source)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"alert_email": "not-an-address"}, "alert_email must be an email address"),
        ({"monitor_freshness": "yes"}, "monitor_freshness must be True or False"),
        ({"expected_feature_freshness": 300}, "expected_feature_freshness must be a positive timedelta"),
        ({"expected_feature_freshness": timedelta(0)}, "expected_feature_freshness must be a positive timedelta"),
    ],
)
def test_bad_monitoring_parameters_name_the_view_and_its_line(options: dict[str, object], problem: str) -> None:
    with pytest.raises(
        DefinitionError, match=rf"StreamFeatureView 'bad' \(.*test_monitoring_as_code\.py:\d+\): {problem}"
    ):

        @stream_feature_view(source=transactions, entities=[user], mode="pandas", features=[AMOUNT_SUM], **options)  # type: ignore[arg-type]
        def bad(transactions):  # type: ignore[no-untyped-def]
            return transactions


def test_an_alert_rule_on_an_unknown_target_fails_the_plan() -> None:
    stray = AlertRule("stale_other", "freshness", "no_such_view", threshold=60)
    with pytest.raises(
        DefinitionError, match=r"AlertRule 'stale_other' \(.*:\d+\): target 'no_such_view' is no feature view"
    ):
        compile_workspace("prod", [user, transactions, user_spending, stray])
    with pytest.raises(DefinitionError, match="kind must be one of"):
        AlertRule("typo", "freshnes", "user_spending")


def test_rules_derived_from_the_spec() -> None:
    rules = {rule.name: rule for rule in workspace_rules(_spec(), shared=("webhook",))}
    assert set(rules) == {"prod.user_spending.freshness", "prod.spending_p99"}
    freshness = rules["prod.user_spending.freshness"]
    assert freshness.kind is RuleKind.FRESHNESS and freshness.limit == 300.0
    assert freshness.channels == ("email:oncall@example.com", "webhook")
    assert freshness.labels == (("workspace", "prod"),)
    assert rules["prod.spending_p99"].channels == ("email:a@b.io", "webhook")
    exported = to_prometheus_rules(list(rules.values()))
    assert (
        'featurebus_feature_freshness_seconds{feature_view=\\"user_spending\\",workspace=\\"prod\\"} > 300.0'
        in exported
    )
    offline = dataclasses.replace(
        _spec(),
        stream_feature_views=tuple(
            dataclasses.replace(v, offline=True, data_quality_enabled=True) for v in _spec().stream_feature_views
        ),
    )
    derived = {r.name: r.kind for r in workspace_rules(offline)}
    assert derived["prod.quiet_view.data_quality"] is RuleKind.DATA_QUALITY  # offline, data quality on
    [down] = component_rules(["worker"], down_after_s=10)
    assert (down.name, down.kind, down.limit) == ("component.worker.down", RuleKind.COMPONENT_DOWN, 10.0)


def test_default_freshness_is_twice_the_interval_and_at_least_two_hours_for_streams() -> None:
    view = _spec().view("quiet_view")
    assert default_freshness_ms(view) == 2 * 3600 * 1000
    assert default_freshness_ms(dataclasses.replace(view, aggregation_interval_ms=4 * 3600 * 1000)) == 8 * 3600 * 1000


def test_observe_takes_the_worst_matching_sample() -> None:
    [rule] = [r for r in workspace_rules(_spec()) if r.kind is RuleKind.FRESHNESS]
    samples = parse_samples(
        'featurebus_feature_freshness_seconds{workspace="prod",feature_view="user_spending"} 12\n'
        'featurebus_feature_freshness_seconds{workspace="prod",feature_view="user_spending"} 40\n'
        'featurebus_feature_freshness_seconds{workspace="dev",feature_view="user_spending"} 900\n'
        'featurebus_feature_freshness_seconds{workspace="prod",feature_view="quiet_view"} 900\n'
    )
    assert observe(rule, samples) == 40.0
    assert observe(rule, samples[2:]) is None  # nothing of this view in this workspace: no observation


def test_history_keeps_a_bounded_window_and_series_count() -> None:
    history = MetricHistory(window_s=10, max_series=2)

    def sample(name: str, value: float) -> Sample:
        return Sample(name, (("workspace", "prod"),), value)

    history.record("serving", [sample("a", 1), sample("b", 2), sample("c", 3), sample("a_bucket", 4)], 0)
    history.record("serving", [sample("a", 5)], 11_000)
    assert history.dropped_series == 1  # "c": no room; "_bucket" series are never kept
    [a] = history.query(metric="a")
    assert a.points == [(11_000, 5.0)]  # the point older than the window is gone
    assert [s.metric for s in history.query(component="serving", since_ms=0)] == ["a", "b"]
    assert history.query(component="worker") == []


def test_describe_shows_the_served_freshness() -> None:
    from featurebus.describe import describe_document, render_description

    spec = _spec()
    freshness = {
        "feature_view": "user_spending",
        "freshness_seconds": 2.5,
        "partitions": {"1": 4.0, "0": 2.5},
        "threshold_seconds": 300.0,
        "monitored": True,
    }
    doc = describe_document(spec, "stream_feature_view", spec.view("user_spending"), None, "applied", freshness)
    assert doc["materialization"]["freshness"] == freshness
    text = render_description(doc)
    assert "freshness: 2.5 s (threshold 300 s, alerting; per partition: p0=2.5 s, p1=4.0 s)" in text
    unknown = render_description(
        describe_document(
            spec,
            "stream_feature_view",
            spec.view("quiet_view"),
            None,
            "applied",
            {**freshness, "freshness_seconds": None, "monitored": False},
        )
    )
    assert "freshness: unknown (serving has applied no update of it yet; threshold 300 s, not monitored)" in unknown
