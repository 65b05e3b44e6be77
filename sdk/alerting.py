"""Alerting as code: Tecton's view parameters (``monitor_freshness``,
``expected_feature_freshness``, ``alert_email``) and ``AlertRule`` objects for the other alerts.

Both are checked where they are written (an error names the object, its file:line and the fix),
compile into the workspace spec (``ViewMonitoringSpec``, ``AlertRuleSpec``) and are read by the
alert evaluator (``featurebus monitor``, ``featurebus.platform.monitoring.workspace_rules``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from featurebus.definition_base import DefinitionSite, _caller_site, _fail, _require_name
from featurebus.schemas.specs import AlertRuleSpec, ViewMonitoringSpec

__all__ = ["MONITORING_OPTIONS", "AlertRule", "take_monitoring"]

MONITORING_OPTIONS = ("monitor_freshness", "expected_feature_freshness", "alert_email")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")
# RuleKind values (featurebus.platform.monitoring.rules); repeated here so the SDK needs no platform import.
_KINDS = (
    "freshness",
    "materialization_failure",
    "repeated_failures",
    "serving_error_rate",
    "serving_p99",
    "data_quality",
    "drift",
    "parity_mismatch",
)


def _emails(kind: str, name: str, site: DefinitionSite, value: Any) -> tuple[str, ...]:
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list | tuple) or not all(isinstance(a, str) and _EMAIL.match(a) for a in addresses):
        raise _fail(
            kind,
            name,
            site,
            f"alert_email must be an email address or a list of them, got {value!r}",
            "Pass alert_email='oncall@example.com'.",
        )
    return tuple(addresses)


def take_monitoring(kind: str, name: str, site: DefinitionSite, options: dict[str, Any]) -> ViewMonitoringSpec | None:
    """Remove the monitoring parameters from a view's extra keyword ``options`` and check them;
    None when none was given."""
    given = {key: options.pop(key) for key in MONITORING_OPTIONS if key in options}
    if not given:
        return None
    monitor = given.get("monitor_freshness", False)
    if not isinstance(monitor, bool):
        raise _fail(
            kind,
            name,
            site,
            f"monitor_freshness must be True or False, got {monitor!r}",
            "Pass monitor_freshness=True.",
        )
    expected = given.get("expected_feature_freshness")
    expected_ms = None
    if expected is not None:
        if not isinstance(expected, timedelta) or expected <= timedelta(0) or expected % timedelta(milliseconds=1):
            raise _fail(
                kind,
                name,
                site,
                f"expected_feature_freshness must be a positive timedelta of whole milliseconds, got {expected!r}",
                "Pass expected_feature_freshness=timedelta(minutes=30), or leave it out for the default "
                "(twice the materialization interval; at least 2 hours for a stream view).",
            )
        expected_ms = expected // timedelta(milliseconds=1)
    emails = _emails(kind, name, site, given["alert_email"]) if given.get("alert_email") is not None else ()
    return ViewMonitoringSpec(monitor, expected_ms, emails)


def _seconds(value: Any, what: str, name: str, site: DefinitionSite) -> float:
    if isinstance(value, timedelta) and value >= timedelta(0):
        return value.total_seconds()
    raise _fail(
        "AlertRule", name, site, f"{what} must be a timedelta >= 0, got {value!r}", f"Pass {what}=timedelta(minutes=5)."
    )


class AlertRule:
    """An alert rule declared in the repository (featurebus's own: Tecton configures these in its
    web UI). ``kind``: what is watched, one of freshness, materialization_failure,
    repeated_failures, serving_error_rate, serving_p99, data_quality, drift, parity_mismatch;
    ``target``: the feature view (or, for the serving kinds, feature service) watched;
    ``threshold``: in the kind's unit (seconds, a ratio, milliseconds, a count; the kinds with a
    natural default may leave it out); ``for_duration``: how long it must hold before firing;
    ``repeat_interval``: how often a firing alert is sent again; ``alert_email``: who is told
    (besides the evaluator's webhook and alerts topic)."""

    def __init__(
        self,
        name: str,
        kind: str,
        target: str,
        threshold: float | None = None,
        for_duration: timedelta = timedelta(0),
        repeat_interval: timedelta = timedelta(hours=1),
        alert_email: str | Sequence[str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.site = _caller_site()
        self.name = _require_name("AlertRule", name, self.site)
        if kind not in _KINDS:
            raise _fail("AlertRule", name, self.site, f"kind must be one of {list(_KINDS)}, got {kind!r}", "Pick one.")
        if not isinstance(target, str) or not target:
            raise _fail(
                "AlertRule",
                name,
                self.site,
                f"target must name a feature view or service, got {target!r}",
                "Pass target='my_view'.",
            )
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or threshold < 0
        ):
            raise _fail(
                "AlertRule",
                name,
                self.site,
                f"threshold must be a finite number >= 0, got {threshold!r}",
                "Pass threshold=0.05.",
            )
        repeat_s = _seconds(repeat_interval, "repeat_interval", name, self.site)
        if repeat_s <= 0:
            raise _fail(
                "AlertRule", name, self.site, "repeat_interval must be > 0", "Pass repeat_interval=timedelta(hours=1)."
            )
        if labels is not None and not (
            isinstance(labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise _fail(
                "AlertRule",
                name,
                self.site,
                f"labels must map strings to strings, got {labels!r}",
                "Pass labels={'feature': 'amount'}.",
            )
        self.spec = AlertRuleSpec(
            name=self.name,
            kind=kind,
            target=target,
            threshold=None if threshold is None else float(threshold),
            for_s=_seconds(for_duration, "for_duration", name, self.site),
            repeat_interval_s=repeat_s,
            alert_emails=() if alert_email is None else _emails("AlertRule", name, self.site, alert_email),
            labels=tuple(sorted((labels or {}).items())),
        )

    def error(self, problem: str, fix: str) -> Exception:
        return _fail("AlertRule", self.name, self.site, problem, fix)

    def __repr__(self) -> str:
        return f"AlertRule({self.name!r})"
