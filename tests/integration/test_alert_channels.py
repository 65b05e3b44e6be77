"""Alert channels against real receivers on 127.0.0.1: an aiosmtpd SMTP server, an HTTP server
standing in for a Slack webhook, and the alerts topic on the broker; and the dispatcher's
retries, backoff, counting and never-blocking submit."""

from __future__ import annotations

import threading
import time
import uuid
from email import message_from_bytes, policy

import orjson
import pytest

from featurebus.platform.kafka.admin import read_compacted
from featurebus.platform.monitoring.alerts import Notification, NotificationKind, step
from featurebus.platform.monitoring.alerts_topic import AlertsTopicChannel
from featurebus.platform.monitoring.channels import AlertDeliveryError, EmailChannel, WebhookChannel
from featurebus.platform.monitoring.dispatcher import Dispatcher
from featurebus.platform.monitoring.evaluator import AlertEvaluator
from featurebus.platform.monitoring.rules import AlertRule, RuleKind
from featurebus.platform.monitoring.state_store import MemoryAlertStateStore
from featurebus.schemas.errors import DefinitionError
from tests.support.alert_receivers import Inbox, Receiver, free_port

RULE = AlertRule("stale-fraud", RuleKind.FRESHNESS, "fraud_view", threshold=60, channels=("ops", "slack"))


def _firing() -> Notification:
    [notification] = step(RULE, None, 75.5, 1_700_000_000_000).outbox
    return notification


def test_email_reaches_a_real_smtp_server(smtp_server: tuple[int, Inbox]) -> None:
    port, inbox = smtp_server
    EmailChannel("127.0.0.1", port, "featurebus@example.com", ("ops@example.com", "oncall@example.com")).send(
        RULE, _firing()
    )
    [(sender, recipients, content)] = inbox.messages
    assert sender == "featurebus@example.com" and recipients == ["ops@example.com", "oncall@example.com"]
    message = message_from_bytes(content, policy=policy.default)  # unfolds long headers
    assert message["Subject"] == ("[FIRING] stale-fraud: freshness of fraud_view is 75.5 seconds (threshold > 60)")
    assert message["X-Featurebus-Notification-Id"] == "stale-fraud/1700000000000/0"


def test_an_unreachable_smtp_server_is_a_delivery_error() -> None:
    channel = EmailChannel("127.0.0.1", free_port(), "a@example.com", ("b@example.com",), timeout_s=2)
    with pytest.raises(AlertDeliveryError, match=r"SMTP 127\.0\.0\.1"):
        channel.send(RULE, _firing())


def test_webhook_posts_a_slack_compatible_payload(webhook: tuple[str, Receiver]) -> None:
    url, receiver = webhook
    WebhookChannel(url).send(RULE, _firing())
    [body] = receiver.bodies
    assert body["text"].startswith("[FIRING] stale-fraud: freshness of fraud_view is 75.5")
    assert body["attachments"][0]["color"] == "#d50200"
    assert body["featurebus"]["id"] == "stale-fraud/1700000000000/0"
    receiver.failures = 10**6
    with pytest.raises(AlertDeliveryError, match="HTTP 500"):
        WebhookChannel(url).send(RULE, _firing())


def test_dispatcher_retries_with_backoff_and_counts(
    smtp_server: tuple[int, Inbox], webhook: tuple[str, Receiver]
) -> None:
    port, inbox = smtp_server
    url, receiver = webhook
    receiver.failures = 2
    dispatcher = Dispatcher(
        {"ops": EmailChannel("127.0.0.1", port, "f@example.com", ("ops@example.com",)), "slack": WebhookChannel(url)},
        backoff_s=0.05,
        max_backoff_s=0.2,
    )
    try:
        started = time.monotonic()
        assert dispatcher.submit(RULE, _firing())
        assert dispatcher.wait_idle(10)
        elapsed = time.monotonic() - started
    finally:
        dispatcher.close()
    assert len(inbox.messages) == 1 and len(receiver.bodies) == 1 and receiver.requests == 3
    assert dispatcher.counters.sent == 2 and dispatcher.counters.failed_attempts == 2
    assert dispatcher.counters.per_channel_sent == {"ops": 1, "slack": 1}
    assert elapsed >= 0.05 + 0.1  # two backoffs: 0.05 s, then 0.1 s


def test_dispatcher_gives_up_after_max_attempts_and_counts_it(webhook: tuple[str, Receiver]) -> None:
    url, receiver = webhook
    receiver.failures = 10**6
    rule = AlertRule("r", RuleKind.COMPONENT_DOWN, "worker", channels=("slack",))
    dispatcher = Dispatcher({"slack": WebhookChannel(url)}, max_attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    try:
        dispatcher.submit(rule, step(rule, None, 99.0, 0).outbox[0])
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.close()
    assert receiver.requests == 3
    assert (dispatcher.counters.sent, dispatcher.counters.failed_attempts, dispatcher.counters.given_up) == (0, 3, 1)


def test_a_hanging_channel_never_blocks_submit() -> None:
    release = threading.Event()

    class Hanging:
        def send(self, rule: AlertRule, notification: Notification) -> None:
            release.wait(10)

    rule = AlertRule("r", RuleKind.COMPONENT_DOWN, "worker", channels=("slow",))
    dispatcher = Dispatcher({"slow": Hanging()}, queue_size=2)
    try:
        started = time.monotonic()
        results = [
            dispatcher.submit(rule, Notification("r", NotificationKind.FIRING, i, 1.0, 30.0, i, 0)) for i in range(10)
        ]
        assert time.monotonic() - started < 0.5
        assert results.count(False) >= 10 - 3  # one being sent, two queued, the rest refused
        assert dispatcher.counters.dropped_queue_full == results.count(False)
    finally:
        release.set()
        dispatcher.close()


def test_a_full_queue_keeps_the_notification_in_the_evaluators_outbox() -> None:
    release = threading.Event()

    class Hanging:
        def send(self, rule: AlertRule, notification: Notification) -> None:
            release.wait(10)

    # Four alerts fire at once: one is being sent (hanging), one waits in the queue of 1, the
    # other two cannot be handed over and stay owed in their stored states.
    rules = [AlertRule(f"down-{i}", RuleKind.COMPONENT_DOWN, f"c{i}", channels=("slow",)) for i in range(4)]
    dispatcher = Dispatcher({"slow": Hanging()}, queue_size=1)
    store = MemoryAlertStateStore()
    try:
        evaluator = AlertEvaluator(rules, store, dispatcher.deliver)
        for now_ms in (0, 100, 200):
            evaluator.evaluate({rule.name: 99.0 for rule in rules}, now_ms)
        owed = [n.id for state in store.list() for n in state.outbox]
        assert len(owed) >= 2 and evaluator.delivery_failures >= 2
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while any(state.outbox for state in store.list()) and time.monotonic() < deadline:
        evaluator.evaluate({}, 300)  # no observation: only the owed notifications are offered again
        time.sleep(0.01)
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    assert [n.id for state in store.list() for n in state.outbox] == []


def test_a_rule_naming_an_unconfigured_channel_is_refused() -> None:
    dispatcher = Dispatcher({})
    try:
        with pytest.raises(DefinitionError, match=r"names channels \['ops', 'slack'\] that are not configured"):
            dispatcher.submit(RULE, _firing())
    finally:
        dispatcher.close()


def test_alerts_topic_keeps_each_notification_once_by_id(kafka_bootstrap: str) -> None:
    topic = f"alerts-{uuid.uuid4().hex[:10]}"
    channel = AlertsTopicChannel(kafka_bootstrap, topic=topic)
    notification = _firing()
    channel.send(RULE, notification)
    channel.send(RULE, notification)  # a repeat after a crash: same key
    records = read_compacted(kafka_bootstrap, topic)
    assert list(records) == [notification.id.encode()]
    record = orjson.loads(records[notification.id.encode()])
    assert record["kind"] == "firing" and record["value"] == 75.5 and record["target"] == "fraud_view"


def test_close_is_quick_and_hands_back_what_was_not_delivered(webhook: tuple[str, Receiver]) -> None:
    url, receiver = webhook
    receiver.failures = 10**6  # the webhook is down: the notification waits in backoff
    rule = AlertRule("down", RuleKind.COMPONENT_DOWN, "worker", channels=("slack",))
    store = MemoryAlertStateStore()
    dispatcher = Dispatcher({"slack": WebhookChannel(url)}, backoff_s=30.0, max_backoff_s=30.0)
    evaluator = AlertEvaluator([rule], store, dispatcher.deliver)
    [state] = evaluator.evaluate({rule.name: 99.0}, 1_000)
    assert state.outbox == ()  # handed to the dispatcher, so no longer owed in the store
    deadline = time.monotonic() + 10
    while receiver.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    undelivered = dispatcher.close(grace_s=1.0)
    assert time.monotonic() - started < 1.5  # not the 30 s backoff
    assert [n.id for _, n in undelivered] == ["down/1000/0"]
    evaluator.owe_again(undelivered)
    [stored] = store.list()
    assert [n.id for n in stored.outbox] == ["down/1000/0"]
    # The next evaluator delivers it once the webhook is back.
    receiver.failures = 0
    again = Dispatcher({"slack": WebhookChannel(url)})
    try:
        AlertEvaluator([rule], store, again.deliver).evaluate({}, 2_000)
        assert again.wait_idle(10)
    finally:
        again.close()
    assert [b["featurebus"]["id"] for b in receiver.bodies] == ["down/1000/0"]
    assert store.list()[0].outbox == ()
