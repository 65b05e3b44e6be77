"""The evaluator loop over in-memory stores and a real /metrics endpoint: a firing alert repeats
at its interval until an operator acknowledges the episode; its RESOLVED still goes out."""

from __future__ import annotations

import dataclasses
import socket

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from featurebus.platform.monitoring.acks import AlertAck, MemoryAlertAcks
from featurebus.platform.monitoring.alerts import Notification
from featurebus.platform.monitoring.monitor import Monitor, MonitorSettings, ScrapeTarget
from featurebus.platform.monitoring.rules import AlertRule
from featurebus.platform.monitoring.state_store import MemoryAlertStateStore
from featurebus.platform.registry import MemoryRegistry, apply_workspace
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.specs import ViewMonitoringSpec
from tests.support.specs import spending_workspace


class _Collected:
    """The in-memory twin of a delivery channel: what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, rule: AlertRule, notification: Notification) -> None:
        self.sent.append(notification.kind.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_acknowledged_episode_stops_repeating_and_still_resolves() -> None:
    registry = MemoryRegistry()
    create_workspace(registry, "prod", live=True)
    spec = spending_workspace(name="prod")
    [view] = spec.stream_feature_views
    view = dataclasses.replace(view, monitoring=ViewMonitoringSpec(True, 60_000))
    apply_workspace(registry, dataclasses.replace(spec, stream_feature_views=(view,)))
    metrics = CollectorRegistry()
    freshness = Gauge("featurebus_feature_freshness_seconds", "", ["workspace", "feature_view"], registry=metrics)
    port = _free_port()
    start_http_server(port, addr="127.0.0.1", registry=metrics)
    now = [1_000.0]
    channel, acks = _Collected(), MemoryAlertAcks()
    monitor = Monitor(
        registry,
        ["prod"],
        [ScrapeTarget("serving", f"http://127.0.0.1:{port}/metrics")],
        MemoryAlertStateStore(),
        {"collected": channel},
        MonitorSettings(repeat_interval_s=10, shared_channels=("collected",), component_down_after_s=3600),
        clock=lambda: now[0],
        acks=acks,
    )
    rule = "prod.user_spending.freshness"
    try:

        def round_at(t: float, value: float) -> str:
            now[0] = t
            freshness.labels("prod", "user_spending").set(value)
            states = {s.rule: s for s in monitor.step()}
            monitor.dispatcher.wait_idle(5)
            return states[rule].status.value

        assert round_at(1_000, 90) == "firing"
        assert round_at(1_011, 100) == "firing"  # past the repeat interval: a REPEAT
        assert channel.sent == ["firing", "repeat"]
        [state] = [s for s in monitor.states if s.rule == rule]
        assert state.since_ms is not None
        acks.put(AlertAck(rule, state.since_ms, "p-operator", 1_012_000))
        assert round_at(1_022, 110) == "firing"
        assert round_at(1_033, 120) == "firing"
        assert channel.sent == ["firing", "repeat"] and monitor.suppressed_repeats == 2
        assert round_at(1_040, 5) == "ok"
        assert channel.sent == ["firing", "repeat", "resolved"]
    finally:
        monitor.close()
