"""Alert rules as data: what is watched, on which object, against which threshold.

A rule names one observed quantity (``RuleKind``) of one target (a feature view, a feature
service, a component) and a threshold. The evaluator asks the metrics for the rule's current
value and hands it to ``breached``; the state machine in ``alerts`` decides what to send. Each
kind fixes its unit and comparison in one table (``KIND_INFO``) so a rule, its evaluation and
its Prometheus export (``prometheus``) cannot disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from featurebus.schemas.errors import DefinitionError

__all__ = ["AlertRule", "Comparison", "KIND_INFO", "KindInfo", "RuleKind", "breached"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")


class RuleKind(Enum):
    FRESHNESS = "freshness"  # age of the newest event served, seconds (Tecton FeatureViewNotFresh)
    MATERIALIZATION_FAILURE = "materialization_failure"  # failed stream/batch materializations in the window
    REPEATED_FAILURES = "repeated_failures"  # consecutive failed attempts (Tecton FeatureViewTooManyFailures)
    SERVING_ERROR_RATE = "serving_error_rate"  # errors / requests, 0..1
    SERVING_P99 = "serving_p99"  # p99 request latency, milliseconds
    DATA_QUALITY = "data_quality"  # expectations failed in the latest bucket
    DRIFT = "drift"  # drift statistic (PSI, KS, JS) of the latest bucket
    PARITY_MISMATCH = "parity_mismatch"  # online/offline mismatch rate, 0..1
    COMPONENT_DOWN = "component_down"  # seconds since the component last answered


class Comparison(Enum):
    ABOVE = ">"
    AT_LEAST = ">="


@dataclass(frozen=True)
class KindInfo:
    unit: str
    comparison: Comparison
    default_threshold: float | None  # None: the rule must give one
    metric: str  # the Prometheus series the exporters publish for this kind
    target_label: str  # the label of that series naming the rule's target
    max_threshold: float = math.inf


KIND_INFO: dict[RuleKind, KindInfo] = {
    RuleKind.FRESHNESS: KindInfo(
        "seconds", Comparison.ABOVE, None, "featurebus_feature_freshness_seconds", "feature_view"
    ),
    RuleKind.MATERIALIZATION_FAILURE: KindInfo(
        "failures", Comparison.AT_LEAST, 1.0, "featurebus_materialization_failures_recent", "feature_view"
    ),
    RuleKind.REPEATED_FAILURES: KindInfo(
        "consecutive failures",
        Comparison.AT_LEAST,
        3.0,
        "featurebus_materialization_consecutive_failures",
        "feature_view",
    ),
    RuleKind.SERVING_ERROR_RATE: KindInfo(
        "ratio", Comparison.ABOVE, None, "featurebus_serving_error_ratio", "feature_service", max_threshold=1.0
    ),
    RuleKind.SERVING_P99: KindInfo(
        "milliseconds", Comparison.ABOVE, None, "featurebus_serving_latency_p99_ms", "feature_service"
    ),
    RuleKind.DATA_QUALITY: KindInfo(
        "failed expectations", Comparison.AT_LEAST, 1.0, "featurebus_data_quality_failed_expectations", "feature_view"
    ),
    RuleKind.DRIFT: KindInfo("drift statistic", Comparison.ABOVE, 0.2, "featurebus_feature_drift", "feature_view"),
    RuleKind.PARITY_MISMATCH: KindInfo(
        "ratio", Comparison.ABOVE, 0.0, "featurebus_parity_mismatch_ratio", "feature_view", max_threshold=1.0
    ),
    RuleKind.COMPONENT_DOWN: KindInfo(
        "seconds", Comparison.ABOVE, 30.0, "featurebus_component_unseen_seconds", "component"
    ),
}


@dataclass(frozen=True)
class AlertRule:
    """One alert. ``for_s``: how long the condition must hold before it fires (Prometheus'
    ``for``); ``repeat_interval_s``: how often a firing alert is sent again; ``channels``: names
    of the delivery channels (email addresses, webhook names) it goes to."""

    name: str
    kind: RuleKind
    target: str
    threshold: float | None = None
    for_s: float = 0.0
    repeat_interval_s: float = 3600.0
    channels: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra labels, e.g. (("feature", "amount"),)

    def __post_init__(self) -> None:
        where = f"alert rule {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DefinitionError(f"{where}: a name is letters, digits, '_', '.', '-', starting with a letter")
        if not isinstance(self.kind, RuleKind):
            raise DefinitionError(f"{where}: kind must be one of {[k.value for k in RuleKind]}, got {self.kind!r}")
        if not isinstance(self.target, str) or not self.target:
            raise DefinitionError(
                f"{where}: target (the view, service or component watched) must be a non-empty string"
            )
        info = KIND_INFO[self.kind]
        if self.threshold is None:
            if info.default_threshold is None:
                raise DefinitionError(f"{where}: a {self.kind.value} rule needs a threshold in {info.unit}")
            object.__setattr__(self, "threshold", info.default_threshold)
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise DefinitionError(f"{where}: threshold must be a finite number of {info.unit}, got {threshold!r}")
        if not 0 <= threshold <= info.max_threshold:
            raise DefinitionError(
                f"{where}: threshold must be within [0, {info.max_threshold:g}] {info.unit}, got {threshold!r}"
            )
        object.__setattr__(self, "threshold", float(threshold))
        for field_name in ("for_s", "repeat_interval_s"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise DefinitionError(f"{where}: {field_name} must be a finite number of seconds >= 0, got {value!r}")
        if self.repeat_interval_s == 0:
            raise DefinitionError(f"{where}: repeat_interval_s must be > 0 (a firing alert repeats at that interval)")
        if not all(isinstance(c, str) and c for c in self.channels):
            raise DefinitionError(f"{where}: channels must be non-empty strings, got {self.channels!r}")
        for label in self.labels:
            if not (isinstance(label, tuple) and len(label) == 2 and all(isinstance(x, str) for x in label)):
                raise DefinitionError(f"{where}: labels must be (name, value) string pairs, got {label!r}")

    @property
    def limit(self) -> float:
        return cast(float, self.threshold)  # __post_init__ filled in the kind's default

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "target": self.target,
            "threshold": self.limit,
            "for_s": self.for_s,
            "repeat_interval_s": self.repeat_interval_s,
            "channels": list(self.channels),
            "labels": [list(pair) for pair in self.labels],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertRule:
        missing = [key for key in ("name", "kind", "target") if key not in data]
        if missing:
            raise DefinitionError(
                f"alert rule {data.get('name')!r}: missing {missing}; a rule needs a name, a kind and a target"
            )
        try:
            kind = RuleKind(data["kind"])
        except (KeyError, ValueError) as exc:
            raise DefinitionError(
                f"alert rule {data.get('name')!r}: kind must be one of "
                f"{[k.value for k in RuleKind]}, got {data.get('kind')!r}"
            ) from exc
        return cls(
            name=data["name"],
            kind=kind,
            target=data["target"],
            threshold=data.get("threshold"),
            for_s=data.get("for_s", 0.0),
            repeat_interval_s=data.get("repeat_interval_s", 3600.0),
            channels=tuple(data.get("channels", ())),
            labels=tuple((str(k), str(v)) for k, v in data.get("labels", ())),
        )


def breached(rule: AlertRule, value: float) -> bool:
    """Whether an observed ``value`` of the rule's quantity violates it. NaN never breaches (it
    is not an observation); +inf does (e.g. a component never seen)."""
    if math.isnan(value):
        return False
    if KIND_INFO[rule.kind].comparison is Comparison.AT_LEAST:
        return value >= rule.limit
    return value > rule.limit
