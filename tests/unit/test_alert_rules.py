"""Alert rules: validation naming the rule and the fix, evaluation per kind, the Prometheus file."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from featurebus.platform.monitoring.prometheus import prometheus_expression, to_prometheus_rules
from featurebus.platform.monitoring.rules import KIND_INFO, AlertRule, RuleKind, breached
from featurebus.schemas.errors import DefinitionError


def test_kinds_without_a_natural_default_need_a_threshold() -> None:
    with pytest.raises(DefinitionError, match=r"'stale'.*needs a threshold in seconds"):
        AlertRule("stale", RuleKind.FRESHNESS, "fraud_view")
    assert AlertRule("fails", RuleKind.REPEATED_FAILURES, "fraud_view").limit == 3.0
    assert AlertRule("down", RuleKind.COMPONENT_DOWN, "worker").limit == 30.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "1bad"}, "a name is letters"),
        ({"name": ""}, "a name is letters"),
        ({"target": ""}, "target"),
        ({"threshold": -1.0}, r"within \[0, inf\]"),
        ({"threshold": math.inf}, "finite number"),
        ({"threshold": math.nan}, "finite number"),
        ({"threshold": True}, "finite number"),
        ({"threshold": "5"}, "finite number"),
        ({"for_s": -1}, "for_s must be"),
        ({"repeat_interval_s": 0}, "repeat_interval_s must be > 0"),
        ({"repeat_interval_s": math.inf}, "repeat_interval_s must be"),
        ({"channels": ("",)}, "channels"),
        ({"labels": (("feature",),)}, "labels"),
    ],
)
def test_bad_rules_fail_naming_the_rule_and_the_field(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "stale", "kind": RuleKind.FRESHNESS, "target": "v", "threshold": 60.0}
    fields.update(changes)
    with pytest.raises(DefinitionError, match=message):
        AlertRule(**fields)


def test_ratio_kinds_refuse_thresholds_above_one() -> None:
    with pytest.raises(DefinitionError, match=r"within \[0, 1\] ratio"):
        AlertRule("errors", RuleKind.SERVING_ERROR_RATE, "svc", threshold=5.0)


def test_unknown_kind_in_a_document_names_the_choices() -> None:
    with pytest.raises(DefinitionError, match=r"'x'.*kind must be one of.*freshness"):
        AlertRule.from_dict({"name": "x", "kind": "latency", "target": "svc"})


def test_a_document_missing_fields_names_them() -> None:
    with pytest.raises(DefinitionError, match=r"'x': missing \['target'\]"):
        AlertRule.from_dict({"name": "x", "kind": "drift"})


def test_rules_round_trip_through_dicts() -> None:
    rule = AlertRule(
        "drift",
        RuleKind.DRIFT,
        "fraud",
        threshold=0.25,
        for_s=60,
        repeat_interval_s=600,
        channels=("ops@example.com",),
        labels=(("feature", "amount"),),
    )
    assert AlertRule.from_dict(rule.to_dict()) == rule


@pytest.mark.parametrize(
    ("kind", "threshold", "value", "expected"),
    [
        (RuleKind.FRESHNESS, 60.0, 60.0, False),  # "over the threshold": equal is still fresh
        (RuleKind.FRESHNESS, 60.0, 60.5, True),
        (RuleKind.FRESHNESS, 60.0, math.inf, True),  # never saw an event
        (RuleKind.FRESHNESS, 60.0, math.nan, False),
        (RuleKind.MATERIALIZATION_FAILURE, None, 0.0, False),
        (RuleKind.MATERIALIZATION_FAILURE, None, 1.0, True),
        (RuleKind.REPEATED_FAILURES, None, 2.0, False),
        (RuleKind.REPEATED_FAILURES, None, 3.0, True),  # "at least N" as Tecton's TooManyFailures
        (RuleKind.SERVING_ERROR_RATE, 0.01, 0.01, False),
        (RuleKind.SERVING_ERROR_RATE, 0.01, 0.02, True),
        (RuleKind.SERVING_P99, 50.0, 49.0, False),
        (RuleKind.SERVING_P99, 50.0, 51.0, True),
        (RuleKind.DATA_QUALITY, None, 0.0, False),
        (RuleKind.DATA_QUALITY, None, 1.0, True),
        (RuleKind.DRIFT, None, 0.1, False),
        (RuleKind.DRIFT, None, 0.3, True),
        (RuleKind.PARITY_MISMATCH, None, 0.0, False),  # any mismatch is one too many by default
        (RuleKind.PARITY_MISMATCH, None, 1e-6, True),
        (RuleKind.COMPONENT_DOWN, None, 10.0, False),
        (RuleKind.COMPONENT_DOWN, None, 31.0, True),
    ],
)
def test_breached_per_kind(kind: RuleKind, threshold: float | None, value: float, expected: bool) -> None:
    rule = AlertRule("r", kind, "t", threshold=threshold)
    assert breached(rule, value) is expected


def test_prometheus_expression_selects_the_target_and_escapes_it() -> None:
    rule = AlertRule("stale", RuleKind.FRESHNESS, 'we"ird\\view', threshold=90, labels=(("partition", "3"),))
    assert prometheus_expression(rule) == (
        'featurebus_feature_freshness_seconds{feature_view="we\\"ird\\\\view",partition="3"} > 90.0'
    )


def test_prometheus_rules_file_is_valid_yaml_with_every_rule() -> None:
    rules = [
        AlertRule(
            f"rule-{kind.value}",
            kind,
            f"target: {kind.value} #1",
            threshold=0.5,
            for_s=90.5,
            repeat_interval_s=1800,
            channels=("a@example.com", "slack"),
        )
        for kind in RuleKind
    ]
    document = yaml.safe_load(to_prometheus_rules(rules))
    [group] = document["groups"]
    assert group["name"] == "featurebus"
    assert [r["alert"] for r in group["rules"]] == [rule.name for rule in rules]
    for rule, exported in zip(rules, group["rules"], strict=True):
        info = KIND_INFO[rule.kind]
        assert exported["expr"] == prometheus_expression(rule)
        assert exported["expr"].startswith(info.metric + "{")
        assert exported["for"] == "90500ms"
        assert exported["labels"] == {"featurebus_kind": rule.kind.value, info.target_label: rule.target}
        assert exported["annotations"]["repeat_interval"] == "1800s"
        assert exported["annotations"]["channels"] == "a@example.com,slack"


def test_an_empty_rule_set_exports_an_empty_group() -> None:
    assert yaml.safe_load(to_prometheus_rules([])) == {"groups": [{"name": "featurebus", "rules": []}]}
