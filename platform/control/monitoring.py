"""Alerts, freshness and metric history through the control plane (viewer reads, operator acks).

The rules of a workspace are derived from its applied spec exactly as the evaluator derives them
(``workspace_rules``); their states are the evaluator's, read from the alert state topic; the
freshness and the history come from the evaluator's ``/history`` (it scrapes every component),
so the control plane scrapes nothing itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from featurebus.platform.access.roles import Action
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.monitoring.acks import AlertAck, AlertAcks
from featurebus.platform.monitoring.alerts import AlertState, AlertStatus
from featurebus.platform.monitoring.rules import AlertRule
from featurebus.platform.monitoring.state_store import AlertStateStore
from featurebus.platform.monitoring.workspace_rules import default_freshness_ms, workspace_rules
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError, MonitorUnavailableError, NotFoundError, PermissionDeniedError
from featurebus.schemas.specs import BatchFeatureViewSpec, StreamFeatureViewSpec, WorkspaceSpec
from featurebus.schemas.time import from_epoch_ms

__all__ = ["Monitoring"]

_FRESHNESS = "featurebus_feature_freshness_seconds"
_PARTITION_FRESHNESS = "featurebus_feature_partition_freshness_seconds"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_epoch_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Monitoring:
    def __init__(
        self,
        registry: Registry,
        guard: Guard,
        states: Callable[[], AlertStateStore],
        acks: Callable[[], AlertAcks],
        monitor_url: str | None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        """``states``/``acks`` open the stores on first use (the control plane starts without the
        alert topics); ``monitor_url``: the evaluator's base URL (None: no history, no freshness)."""
        self._registry = registry
        self._guard = guard
        self._open_states = states
        self._open_acks = acks
        self._states: AlertStateStore | None = None
        self._acks: AlertAcks | None = None
        self._lock = threading.Lock()  # the state store handle is not thread-safe
        self._monitor_url = monitor_url.rstrip("/") if monitor_url else None
        self._clock_ms = clock_ms

    def _spec(self, workspace: str) -> WorkspaceSpec:
        spec = self._registry.get(workspace)
        if spec is None:
            raise NotFoundError(f"workspace {workspace!r} does not exist")
        return spec

    def _stores(self) -> tuple[AlertStateStore, AlertAcks]:
        if self._states is None:
            self._states = self._open_states()
        if self._acks is None:
            self._acks = self._open_acks()
        return self._states, self._acks

    def _rule_states(self, workspace: str) -> list[tuple[AlertRule, AlertState | None, AlertAck | None]]:
        rules = workspace_rules(self._spec(workspace))
        with self._lock:
            states, acks = self._stores()
            stored = {state.rule: state for state in states.list()}
            acked = acks.all()
        return [(rule, stored.get(rule.name), acked.get(rule.name)) for rule in rules]

    @staticmethod
    def _document(rule: AlertRule, state: AlertState | None, ack: AlertAck | None) -> dict[str, Any]:
        status = AlertStatus.OK if state is None else state.status
        since_ms = None if state is None else state.since_ms
        current_ack = ack if ack is not None and status is AlertStatus.FIRING and ack.episode_ms == since_ms else None
        return {
            "rule": rule.name,
            "kind": rule.kind.value,
            "target": rule.target,
            "threshold": rule.limit,
            # "resolved": OK again after firing (a rule that never fired is "ok")
            "state": "resolved"
            if status is AlertStatus.OK and state is not None and state.resolved_ms
            else status.value,
            "resolved": _iso(None if state is None else state.resolved_ms),
            "since": _iso(since_ms),
            "since_ms": since_ms,
            "value": None if state is None else state.value,
            "observed_ms": None if state is None else state.observed_ms,
            "acked": current_ack is not None,
            "acked_by": None if current_ack is None else current_ack.by,
        }

    def alerts(self, call: Call, workspace: str) -> list[dict[str, Any]]:
        self._guard.check(call, workspace, Action.READ_MONITORING, "alerts.list")
        return [self._document(*entry) for entry in self._rule_states(workspace)]

    def ack(self, call: Call, workspace: str, rule_name: str) -> dict[str, Any]:
        def change(caller: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            for rule, state, _ in self._rule_states(workspace):
                if rule.name == rule_name:
                    if state is None or state.status is not AlertStatus.FIRING or state.since_ms is None:
                        raise InvalidRequestError(f"alert {rule_name!r} is not firing: there is nothing to acknowledge")
                    ack = AlertAck(rule_name, state.since_ms, caller.principal, self._clock_ms())
                    with self._lock:
                        self._stores()[1].put(ack)
                    return self._document(rule, state, ack), {"rule": rule_name, "episode_ms": state.since_ms}
            raise NotFoundError(
                f"workspace {workspace!r} has no alert rule {rule_name!r} (see `featurebus alerts list`)"
            )

        result: dict[str, Any] = self._guard.mutate(call, workspace, Action.MANAGE_ALERTS, "alerts.ack", change)
        return result

    def freshness(self, call: Call, workspace: str) -> list[dict[str, Any]]:
        self._guard.check(call, workspace, Action.READ_MONITORING, "freshness")
        spec = self._spec(workspace)
        since = self._clock_ms() - 5 * 60_000
        overall = self._latest(_FRESHNESS, workspace, since)
        partitions = self._latest(_PARTITION_FRESHNESS, workspace, since)
        views: list[StreamFeatureViewSpec | BatchFeatureViewSpec] = [
            *spec.stream_feature_views,
            *spec.batch_feature_views,
        ]
        documents = []
        for view in views:
            if not view.online:
                continue
            monitoring = view.monitoring
            expected_ms = (monitoring.expected_freshness_ms if monitoring else None) or default_freshness_ms(view)
            documents.append(
                {
                    "feature_view": view.name,
                    "freshness_seconds": overall.get((view.name, None)),
                    "partitions": {
                        part: age
                        for (name, part), age in sorted(partitions.items(), key=str)
                        if name == view.name and part
                    },
                    "threshold_seconds": expected_ms / 1000,
                    "monitored": bool(monitoring and monitoring.monitor_freshness),
                }
            )
        return documents

    def _latest(self, metric: str, workspace: str, since_ms: int) -> dict[tuple[str, str | None], float]:
        """The newest value of ``metric`` per (view, partition) in the evaluator's history; the
        largest over serving replicas (the stalest copy is what some requests see)."""
        found: dict[tuple[str, str | None], float] = {}
        for series in self._history(None, metric, since_ms):
            labels = series["labels"]
            if labels.get("workspace") != workspace or not series["points"]:
                continue
            key = (labels.get("feature_view", ""), labels.get("partition"))
            value = float(series["points"][-1][1])
            found[key] = max(value, found.get(key, value))
        return found

    def _history(self, component: str | None, metric: str | None, since_ms: int | None) -> list[dict[str, Any]]:
        if self._monitor_url is None:
            raise MonitorUnavailableError("no alert evaluator is configured for this control plane (--monitor-url)")
        params = {
            k: v for k, v in {"component": component, "metric": metric, "since": since_ms}.items() if v is not None
        }
        try:
            response = httpx.get(f"{self._monitor_url}/history", params=params, timeout=10.0)
        except httpx.HTTPError as exc:
            raise MonitorUnavailableError(f"the alert evaluator at {self._monitor_url} did not answer: {exc}") from exc
        if response.status_code != 200:
            raise InvalidRequestError(str(response.json().get("message", response.text)))
        series: list[dict[str, Any]] = response.json()["series"]
        return series

    def history(
        self, call: Call, component: str | None, metric: str | None, since_ms: int | None
    ) -> list[dict[str, Any]]:
        """The evaluator's history, without the series of workspaces the caller holds no role in."""
        caller = self._guard.authenticate(call, "metrics.history")
        visible = []
        for series in self._history(component, metric, since_ms):
            workspace = series["labels"].get("workspace")
            if workspace is not None and not caller.admin:
                try:
                    self._guard.access.view.permit(caller, workspace, Action.READ_MONITORING)
                except PermissionDeniedError:  # not this caller's workspace
                    continue
            visible.append(series)
        return visible
