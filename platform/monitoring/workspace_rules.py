"""The alert rules of a workspace, derived from its spec, plus one per watched component.

* every stream or batch view with ``monitor_freshness=True``: a FRESHNESS rule over its
  ``expected_feature_freshness``, or the default ``default_freshness_ms`` derives from the view;
* every batch view materialized online or offline: MATERIALIZATION_FAILURE (a failed job within
  the last hour) and REPEATED_FAILURES (3 in a row, Tecton's ``FeatureViewTooManyFailures``);
* every stream view with data quality on and materialized offline: DATA_QUALITY (an expectation
  failed in the latest bucket, the offline materializer's ``quality_recorder``);
* every view a service with feature logging serves: DRIFT (the worst feature's PSI over 0.2) and
  PARITY_MISMATCH (any mismatch), from the feature monitor (``platform/served/feature_monitor.py``);
* the user's ``featurebus.AlertRule`` objects (``WorkspaceSpec.alert_rules``);
* every component the evaluator scrapes: COMPONENT_DOWN.

Rule names are ``<workspace>.<view>.<kind>`` (components: ``component.<name>.down``) so one
alert state topic holds every workspace's alerts. A view's rules go to its ``alert_email``
addresses (channel ``email:<address>``) and to every rule's shared channels (the webhook, the
alerts topic), named by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from featurebus.platform.monitoring.rules import AlertRule, RuleKind
from featurebus.schemas.errors import DefinitionError
from featurebus.schemas.specs import AlertRuleSpec, BatchFeatureViewSpec, StreamFeatureViewSpec, WorkspaceSpec

__all__ = ["EMAIL_CHANNEL_PREFIX", "component_rules", "default_freshness_ms", "email_channel", "workspace_rules"]

EMAIL_CHANNEL_PREFIX = "email:"
_MIN_STREAM_FRESHNESS_MS = 2 * 3600 * 1000  # Tecton's floor for stream views


def email_channel(address: str) -> str:
    return EMAIL_CHANNEL_PREFIX + address


def default_freshness_ms(view: StreamFeatureViewSpec | BatchFeatureViewSpec) -> int:
    """Tecton's rule: twice the view's materialization period (a batch view's schedule; a stream
    view's aggregation interval), and at least 2 hours for a stream view."""
    if isinstance(view, BatchFeatureViewSpec):
        return 2 * view.batch_schedule_ms
    return max(2 * (view.aggregation_interval_ms or 0), _MIN_STREAM_FRESHNESS_MS)


def _view_rules(
    workspace: str,
    view: StreamFeatureViewSpec | BatchFeatureViewSpec,
    shared: tuple[str, ...],
    repeat_s: float,
    logged: bool = False,
) -> list[AlertRule]:
    monitoring = view.monitoring
    emails = tuple(email_channel(a) for a in monitoring.alert_emails) if monitoring is not None else ()
    labels = (("workspace", workspace),)
    rules = []
    if monitoring is not None and monitoring.monitor_freshness:
        expected_ms = monitoring.expected_freshness_ms or default_freshness_ms(view)
        rules.append(
            AlertRule(
                f"{workspace}.{view.name}.freshness",
                RuleKind.FRESHNESS,
                view.name,
                expected_ms / 1000,
                repeat_interval_s=repeat_s,
                channels=(*emails, *shared),
                labels=labels,
            )
        )
    kinds: list[RuleKind] = []
    if isinstance(view, BatchFeatureViewSpec) and (view.online or view.offline):
        kinds += [RuleKind.MATERIALIZATION_FAILURE, RuleKind.REPEATED_FAILURES]
    if isinstance(view, StreamFeatureViewSpec) and view.offline and view.data_quality_enabled:
        kinds.append(RuleKind.DATA_QUALITY)
    if logged:
        kinds += [RuleKind.DRIFT, RuleKind.PARITY_MISMATCH]
    for kind in kinds:  # each with its kind's default threshold (KIND_INFO)
        rules.append(
            AlertRule(
                f"{workspace}.{view.name}.{kind.value}",
                kind,
                view.name,
                repeat_interval_s=repeat_s,
                channels=(*emails, *shared),
                labels=labels,
            )
        )
    return rules


def user_rule(workspace: str, rule: AlertRuleSpec, shared: tuple[str, ...]) -> AlertRule:
    try:
        kind = RuleKind(rule.kind)
    except ValueError:
        raise DefinitionError(
            f"alert rule {rule.name!r}: kind must be one of {[k.value for k in RuleKind]}, got {rule.kind!r}"
        ) from None
    return AlertRule(
        f"{workspace}.{rule.name}",
        kind,
        rule.target,
        rule.threshold,
        for_s=rule.for_s,
        repeat_interval_s=rule.repeat_interval_s,
        channels=(*(email_channel(a) for a in rule.alert_emails), *shared),
        labels=(("workspace", workspace), *rule.labels),
    )


def workspace_rules(spec: WorkspaceSpec, shared: Sequence[str] = (), repeat_s: float = 3600.0) -> list[AlertRule]:
    """Every rule of the workspace; ``shared``: channels every rule also goes to."""
    channels = tuple(shared)
    rules: list[AlertRule] = []
    views: list[StreamFeatureViewSpec | BatchFeatureViewSpec] = [*spec.stream_feature_views, *spec.batch_feature_views]
    logged = {s.view for service in spec.feature_services if service.logging is not None for s in service.selections}
    for view in views:
        rules += _view_rules(spec.name, view, channels, repeat_s, view.name in logged)
    rules += [user_rule(spec.name, rule, channels) for rule in spec.alert_rules]
    return rules


def component_rules(
    components: Sequence[str], shared: Sequence[str] = (), down_after_s: float = 30.0, repeat_s: float = 3600.0
) -> list[AlertRule]:
    return [
        AlertRule(
            f"component.{name}.down",
            RuleKind.COMPONENT_DOWN,
            name,
            down_after_s,
            repeat_interval_s=repeat_s,
            channels=tuple(shared),
        )
        for name in components
    ]
