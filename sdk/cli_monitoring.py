"""``featurebus monitor`` (the alert evaluator) and ``featurebus alerts list|ack|export-rules``."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from featurebus.exceptions import InvalidRequestError

__all__ = ["MetricsPort", "alerts_app", "monitor", "view_freshness"]

console = Console(soft_wrap=True)

MetricsPort = Annotated[
    int,
    typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port of 127.0.0.1 (0: not at all)."),
]

alerts_app = typer.Typer(
    help="Alerts: what fires, acknowledging, and the rules as a Prometheus file.", no_args_is_help=True
)


def _scrape_targets(scrape: list[str], key: str | None) -> list[Any]:
    from featurebus.platform.monitoring.monitor import ScrapeTarget

    headers = (("Authorization", f"Bearer {key}"),) if key else ()
    targets = []
    for item in scrape:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"--scrape takes COMPONENT=URL (e.g. worker=http://127.0.0.1:9101/metrics), got {item!r}"
            )
        targets.append(ScrapeTarget(name, url, headers))
    return targets


def monitor(
    workspace: Annotated[
        list[str], typer.Option("--workspace", "-w", help="A workspace whose views are watched (repeatable).")
    ],
    scrape: Annotated[
        list[str], typer.Option("--scrape", help="COMPONENT=URL of a /metrics to scrape (repeatable).")
    ] = [],  # noqa: B006
    port: Annotated[int, typer.Option("--port", help="Serve /metrics, /history and /health here (127.0.0.1).")] = 9190,
    interval_s: Annotated[
        float, typer.Option("--interval", envvar="FEATUREBUS_MONITOR_INTERVAL_S", help="Seconds between evaluations.")
    ] = 15.0,
    component_down_after_s: Annotated[
        float,
        typer.Option(
            "--component-down-after",
            envvar="FEATUREBUS_COMPONENT_DOWN_AFTER_S",
            help="Seconds unseen before a component is down.",
        ),
    ] = 30.0,
    repeat_interval_s: Annotated[
        float,
        typer.Option(
            "--repeat-interval",
            envvar="FEATUREBUS_ALERT_REPEAT_INTERVAL_S",
            help="Seconds between repeats of a firing alert.",
        ),
    ] = 3600.0,
    smtp_host: Annotated[
        str | None, typer.Option("--smtp-host", envvar="FEATUREBUS_SMTP_HOST", help="SMTP server for alert_email.")
    ] = None,
    smtp_port: Annotated[int, typer.Option("--smtp-port", envvar="FEATUREBUS_SMTP_PORT")] = 25,
    smtp_sender: Annotated[
        str, typer.Option("--smtp-sender", envvar="FEATUREBUS_SMTP_SENDER")
    ] = "featurebus@localhost",
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url", envvar="FEATUREBUS_ALERT_WEBHOOK_URL", help="Slack-compatible webhook every alert goes to."
        ),
    ] = None,
    alerts_topic: Annotated[bool, typer.Option(help="Also write every notification to the alerts topic.")] = True,
    bootstrap: Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap.")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="State directory.")] = None,
) -> None:
    """Run the alert evaluator: scrape every component, evaluate the alert rules, notify."""
    import os

    from featurebus.platform.config import control_login, resolve_bootstrap
    from featurebus.platform.monitoring.acks import KafkaAlertAcks
    from featurebus.platform.monitoring.alerts_topic import AlertsTopicChannel
    from featurebus.platform.monitoring.channels import Channel, WebhookChannel
    from featurebus.platform.monitoring.monitor import Monitor, MonitorSettings, SmtpSettings
    from featurebus.platform.monitoring.monitor_http import MonitorServer
    from featurebus.platform.monitoring.state_store import KafkaAlertStateStore
    from featurebus.platform.registry import KafkaRegistry

    if interval_s <= 0:
        raise InvalidRequestError(f"--interval must be > 0 seconds, got {interval_s}")
    cluster = resolve_bootstrap(bootstrap)
    key = os.environ.get("FEATUREBUS_MONITOR_API_KEY") or control_login(home.resolve() if home else None)[1]
    channels: dict[str, Channel] = {}
    shared: list[str] = []
    if webhook_url:
        channels["webhook"] = WebhookChannel(webhook_url)
        shared.append("webhook")
    if alerts_topic:
        channels["alerts-topic"] = AlertsTopicChannel(cluster)
        shared.append("alerts-topic")
    settings = MonitorSettings(
        interval_s=interval_s,
        component_down_after_s=component_down_after_s,
        repeat_interval_s=repeat_interval_s,
        shared_channels=tuple(shared),
        smtp=SmtpSettings(smtp_host, smtp_port, smtp_sender) if smtp_host else None,
    )
    evaluator = Monitor(
        KafkaRegistry(cluster),
        workspace,
        _scrape_targets(scrape, key),
        KafkaAlertStateStore(cluster),
        channels,
        settings,
        acks=KafkaAlertAcks(cluster),
    )
    server = MonitorServer(evaluator.history, port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        evaluator.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        server.close()


def view_freshness(workspace: str, view: str) -> dict[str, Any] | None:
    """The view's served freshness from the control plane (None when it cannot say: no control
    plane, no alert evaluator, or no such online view): describe shows it when known."""
    from featurebus.control_client import ControlClient
    from featurebus.exceptions import FeaturebusError

    client = ControlClient.from_config()
    try:
        views = client.get(f"/workspaces/{workspace}/freshness")["views"]
    except FeaturebusError:
        return None
    finally:
        client.close()
    found: dict[str, Any] | None = next((v for v in views if v["feature_view"] == view), None)
    return found


@alerts_app.command("list")
def alerts_list(
    workspace: Annotated[str, typer.Option("--workspace", "-w")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The workspace's alerts: state, since when, the last value, acknowledged or not."""
    from featurebus.control_client import ControlClient

    client = ControlClient.from_config()
    try:
        alerts = client.get(f"/workspaces/{workspace}/alerts")["alerts"]
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(alerts, indent=2))
        return
    from rich.table import Table

    table = Table("rule", "kind", "target", "state", "since", "value", "threshold", "acked")
    for alert in alerts:
        table.add_row(
            alert["rule"],
            alert["kind"],
            alert["target"],
            alert["state"],
            alert["since"] or "",
            "" if alert["value"] is None else f"{alert['value']:g}",
            f"{alert['threshold']:g}",
            "yes" if alert["acked"] else "",
        )
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(
    rule: Annotated[str, typer.Argument(help="The rule, as `featurebus alerts list` names it.")],
    workspace: Annotated[str, typer.Option("--workspace", "-w")] = "default",
) -> None:
    """Acknowledge a firing alert (operator): it stays firing, marked as someone's on it."""
    from featurebus.control_client import ControlClient

    client = ControlClient.from_config()
    try:
        answer = client.post(f"/workspaces/{workspace}/alerts/{rule}/ack", {})
    finally:
        client.close()
    console.print(f"acknowledged {answer['rule']} (firing since {answer['since']})", highlight=False, markup=False)


@alerts_app.command("export-rules")
def alerts_export_rules(
    workspace: Annotated[str, typer.Option("--workspace", "-w")] = "default",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """The workspace's alert rules as a Prometheus alerting-rules file (for Alertmanager)."""
    from featurebus.cli_control import current_spec
    from featurebus.control_client import ControlClient
    from featurebus.platform.monitoring.prometheus import to_prometheus_rules
    from featurebus.platform.monitoring.workspace_rules import workspace_rules

    client = ControlClient.from_config()
    try:
        spec = current_spec(client, workspace)
    finally:
        client.close()
    text = to_prometheus_rules(workspace_rules(spec), group=f"featurebus-{workspace}")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {output}", highlight=False, markup=False)
