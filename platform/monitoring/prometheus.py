"""Alert rules as a Prometheus alerting-rules file, for teams that run Alertmanager.

Each rule becomes one alert over the series its kind's exporter publishes (``KIND_INFO``),
selected by the target's label, with the same threshold, ``for`` and repeat interval (as an
annotation: repeats are Alertmanager's ``repeat_interval``, configured there). Strings are
written as JSON strings, which YAML reads as double-quoted scalars, so no YAML library is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from featurebus.platform.monitoring.rules import KIND_INFO, AlertRule

__all__ = ["prometheus_expression", "to_prometheus_rules"]


def _label_value(value: str) -> str:
    return json.dumps(value)  # PromQL string literals share JSON's escapes for \\ and "


def prometheus_expression(rule: AlertRule) -> str:
    info = KIND_INFO[rule.kind]
    selectors = [f"{info.target_label}={_label_value(rule.target)}"]
    selectors += [f"{name}={_label_value(value)}" for name, value in rule.labels]
    return f"{info.metric}{{{','.join(selectors)}}} {info.comparison.value} {rule.limit!r}"


def _duration(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def to_prometheus_rules(rules: Sequence[AlertRule], group: str = "featurebus") -> str:
    lines = ["groups:", f"  - name: {json.dumps(group)}", "    rules:"]
    if not rules:
        lines[-1] = "    rules: []"
    for rule in rules:
        info = KIND_INFO[rule.kind]
        lines += [
            f"      - alert: {json.dumps(rule.name)}",
            f"        expr: {json.dumps(prometheus_expression(rule))}",
            f"        for: {json.dumps(_duration(rule.for_s))}",
            "        labels:",
            f"          featurebus_kind: {json.dumps(rule.kind.value)}",
            f"          {info.target_label}: {json.dumps(rule.target)}",
        ]
        lines += [f"          {json.dumps(name)}: {json.dumps(value)}" for name, value in rule.labels]
        lines += [
            "        annotations:",
            f"          summary: {json.dumps(f'{rule.kind.value} of {rule.target} {info.comparison.value} {rule.limit:g} {info.unit}')}",
            f"          repeat_interval: {json.dumps(_duration(rule.repeat_interval_s))}",
            f"          channels: {json.dumps(','.join(rule.channels))}",
        ]
    return "\n".join(lines) + "\n"
