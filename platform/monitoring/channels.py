"""Where alert notifications go: email over SMTP and a Slack-compatible webhook.

A channel's ``send`` does one attempt and raises ``AlertDeliveryError`` when it failed; retries,
backoff and counting belong to the ``dispatcher``, which calls channels from its own thread so a
slow SMTP server or webhook never holds up the caller. Every message carries the notification
id (an email header, a JSON field) so a receiver can drop the rare repeat (see ``evaluator``).
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from featurebus.platform.monitoring.alerts import Notification, NotificationKind
from featurebus.platform.monitoring.rules import KIND_INFO, AlertRule
from featurebus.schemas.errors import FeaturebusError

__all__ = ["AlertDeliveryError", "Channel", "EmailChannel", "WebhookChannel", "describe", "slack_payload"]


class AlertDeliveryError(FeaturebusError):
    """One attempt to deliver an alert notification failed (it is retried by the dispatcher)."""


class Channel(Protocol):
    def send(self, rule: AlertRule, notification: Notification) -> None: ...


_VERB = {
    NotificationKind.FIRING: "FIRING",
    NotificationKind.REPEAT: "STILL FIRING",
    NotificationKind.RESOLVED: "RESOLVED",
}


def describe(rule: AlertRule, notification: Notification) -> str:
    """One line a person reads first: what, where, the value against the threshold."""
    info = KIND_INFO[rule.kind]
    value = "no value" if notification.value is None else f"{notification.value:g}"
    return (
        f"[{_VERB[notification.kind]}] {rule.name}: {rule.kind.value} of {rule.target} is {value} {info.unit} "
        f"(threshold {info.comparison.value} {notification.threshold:g})"
    )


def slack_payload(rule: AlertRule, notification: Notification) -> dict[str, Any]:
    """Slack's incoming-webhook shape (``text`` plus a coloured attachment); the ``featurebus``
    field carries the notification for receivers that are not Slack."""
    colour = "#2eb886" if notification.kind is NotificationKind.RESOLVED else "#d50200"
    return {
        "text": describe(rule, notification),
        "attachments": [
            {
                "color": colour,
                "fields": [
                    {"title": "rule", "value": rule.name, "short": True},
                    {"title": "target", "value": rule.target, "short": True},
                    {"title": "kind", "value": rule.kind.value, "short": True},
                    {"title": "notification", "value": notification.id, "short": True},
                ],
            }
        ],
        "featurebus": notification.to_dict(),
    }


@dataclass(frozen=True)
class EmailChannel:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    timeout_s: float = 10.0
    starttls: bool = False
    username: str | None = None
    password: str | None = None

    def send(self, rule: AlertRule, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = describe(rule, notification)
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Featurebus-Notification-Id"] = notification.id
        at = notification.at_ms / 1000
        message.set_content(
            f"{describe(rule, notification)}\n\nnotification {notification.id} at "
            f"{at:.3f} (Unix seconds)\nrule: {rule.to_dict()}\n"
        )
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertDeliveryError(
                f"sending {notification.id} to SMTP {self.host}:{self.port} failed: {exc}"
            ) from exc


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    timeout_s: float = 10.0

    def send(self, rule: AlertRule, notification: Notification) -> None:
        try:
            response = httpx.post(self.url, json=slack_payload(rule, notification), timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise AlertDeliveryError(f"posting {notification.id} to {self.url} failed: {exc}") from exc
        if response.status_code >= 300:
            raise AlertDeliveryError(
                f"posting {notification.id} to {self.url} got HTTP {response.status_code}: {response.text[:200]}"
            )
