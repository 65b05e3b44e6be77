"""Drift, data-quality and parity alerts end to end through the alert evaluator, on the real broker.

``LocalPlatform`` runs every process of ``featurebus up`` over the fraud example (its
``fraud_detection`` service logging every request); the real ``featurebus monitor`` it starts
scrapes the offline process's ``/metrics`` (drift and parity from the feature monitor,
failed expectations from the quality recorder) and delivers to a real SMTP server (aiosmtpd, the
view's ``alert_email``) and a Slack-compatible webhook receiver on 127.0.0.1. The evaluator,
feature monitor and quality checks run on the short periods their settings allow
(``FEATUREBUS_MONITOR_INTERVAL_S``, ``FEATUREBUS_FEATURE_MONITOR_INTERVAL_S``,
``FEATUREBUS_DRIFT_BUCKET_S``, ``FEATUREBUS_QUALITY_CHECK_INTERVAL_S``).

For ``user_transaction_stats``: population a is served and its training set saved as the drift
reference; population b (same distribution) is served in a bucket of its own and the evaluator
observes its drift below the threshold: no alert. Population c (amounts x3) fires the drift
alert to both channels. Clean amounts keep the declared null-rate expectation (<= 0.1) passing:
no alert; events with null amounts then fire the data-quality alert. Parity holds (0) until one
online tile is overwritten behind the platform's back; the requests served from it fire the
parity-mismatch alert. (The merchant view serves one merchant per population, so its drift is
not a control and is not asserted.)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy

import pytest

from featurebus.platform.monitoring.alerts import AlertState, AlertStatus
from featurebus.platform.monitoring.state_store import KafkaAlertStateStore
from featurebus.platform.offline.datasets import save_dataset
from featurebus.platform.offline.logged_features import TIMESTAMP
from featurebus.platform.served.reports import ReportStore
from featurebus.platform.training.training_sets import get_features_for_events
from featurebus.schemas.errors import NotFoundError
from featurebus.schemas.specs import ExpectationSpec, ViewMonitoringSpec, WorkspaceSpec
from tests.support.alert_receivers import Inbox, Receiver
from tests.support.logged_fraud import SERVICE, USERS, VIEW, Running, corrupt_tile, population, running_fraud_platform

pytestmark = pytest.mark.kafka

BUCKET_MS = 5_000
EMAIL = "features-oncall@example.com"
FEATURE = "amount_sum_1h_continuous"


def _with_alerting(spec: WorkspaceSpec) -> WorkspaceSpec:
    views = tuple(
        dataclasses.replace(
            view,
            monitoring=ViewMonitoringSpec(alert_emails=(EMAIL,)),
            data_quality_expectations=(ExpectationSpec(FEATURE, "null_rate", max_value=0.1),),
        )
        if view.name == VIEW
        else view
        for view in spec.stream_feature_views
    )
    return dataclasses.replace(spec, stream_feature_views=views)


@pytest.fixture
def running(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    smtp_server: tuple[int, Inbox],
    webhook: tuple[str, Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Running]:
    settings = {
        "FEATUREBUS_MONITOR_INTERVAL_S": "0.5",
        "FEATUREBUS_SMTP_HOST": "127.0.0.1",
        "FEATUREBUS_SMTP_PORT": str(smtp_server[0]),
        "FEATUREBUS_ALERT_WEBHOOK_URL": webhook[0],
        "FEATUREBUS_FEATURE_MONITOR_INTERVAL_S": "1",
        "FEATUREBUS_DRIFT_BUCKET_S": str(BUCKET_MS / 1000),
        "FEATUREBUS_QUALITY_CHECK_INTERVAL_S": "1",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)  # LocalPlatform's processes inherit this environment
    home = tmp_path_factory.mktemp("alerts")
    with running_fraud_platform(kafka_bootstrap, home, bucket_ms=BUCKET_MS, customize=_with_alerting) as state:
        yield state


def _eventually(check: Callable[[], bool], timeout_s: float, what: str, running: Running) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        running.platform.check()
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}\n" + "\n".join(
            running.platform.log_tail(c) for c in ("monitor", "offline")
        )
        time.sleep(0.2)


def _webhook_kinds(receiver: Receiver, rule: str) -> list[str]:
    return [body["featurebus"]["kind"] for body in receiver.bodies if body["featurebus"]["rule"] == rule]


def _emails(inbox: Inbox, rule: str) -> list[tuple[list[str], str]]:
    """(recipients, subject) of every email about ``rule``."""
    found = []
    for _, recipients, content in inbox.messages:
        subject = str(message_from_bytes(content, policy=policy.default)["Subject"])
        if f" {rule}: " in subject:
            found.append((recipients, subject))
    return found


def _fired_to_both(receiver: Receiver, inbox: Inbox, rule: str) -> bool:
    return _webhook_kinds(receiver, rule)[:1] == ["firing"] and any(
        subject.startswith("[FIRING]") and recipients == [EMAIL] for recipients, subject in _emails(inbox, rule)
    )


def _users(prefix: str) -> list[str]:
    return [f"{prefix}_{u}" for u in range(USERS)]


def test_drift_quality_and_parity_alerts_fire_through_the_evaluator(
    running: Running, smtp_server: tuple[int, Inbox], webhook: tuple[str, Receiver]
) -> None:
    _, inbox = smtp_server
    _, receiver = webhook
    workspace, root = running.spec.name, running.platform.offline_dir
    drift_rule, quality_rule, parity_rule = (
        f"{workspace}.{VIEW}.{kind}" for kind in ("drift", "data_quality", "parity_mismatch")
    )
    states = KafkaAlertStateStore(running.bootstrap)  # the evaluator's states, read back from the bus

    def observed_after(rule: str, after_ms: int) -> AlertState:
        """The rule's state once the evaluator observed it in a round that started after ``after_ms``."""
        found: list[AlertState] = []

        def observed() -> bool:
            state = states.get(rule)
            found[:] = [state] if state is not None else []
            return state is not None and state.observed_ms is not None and state.observed_ms > after_ms

        _eventually(observed, 60, f"the evaluator to observe {rule}", running)
        return found[0]

    try:
        # a: the reference, a training set of what was served.
        running.produce_and_wait(population("a", 1.0, 0))
        reference_bucket = running.serve_in_one_bucket(_users("a"), "a_m1")
        logged = running.logged()
        times = logged[TIMESTAMP].array.as_unit("ms").asi8
        served_a = logged[(times >= reference_bucket) & (times < reference_bucket + BUCKET_MS)]
        spine = served_a[["user_id", "merchant_id", TIMESTAMP]].reset_index(drop=True)
        training = get_features_for_events(running.spec, SERVICE, spine, root, timestamp_key=TIMESTAMP)
        save_dataset(root, workspace, "reference", training)

        # b: the same distribution in a bucket of its own: observed, below the threshold, silent.
        running.produce_and_wait(population("b", 1.0, 1))
        control_bucket = running.serve_in_one_bucket(_users("b"), "b_m1")

        def drift_reaches_control() -> bool:
            try:
                report = ReportStore(root).read(workspace, "drift", VIEW)
            except NotFoundError:
                return False
            [feature] = [f for f in report["features"] if f["feature"] == FEATURE]
            return (
                report["reference"].get("dataset") == "reference"
                and (feature["latest"] or {}).get("bucketStartMs") == control_bucket
            )

        _eventually(drift_reaches_control, 60, "the drift of the control population", running)
        control = observed_after(drift_rule, int(time.time() * 1000))
        assert control.status is AlertStatus.OK and control.value is not None and control.value <= 0.2, control
        assert _webhook_kinds(receiver, drift_rule) == [] and _emails(inbox, drift_rule) == []

        # c: amounts scaled by 3 fire the drift alert to the webhook and to the view's alert_email.
        running.produce_and_wait(population("c", 3.0, 2))
        running.serve_in_one_bucket(_users("c"), "c_m1")
        _eventually(lambda: _fired_to_both(receiver, inbox, drift_rule), 60, "the drift alert", running)
        fired = states.get(drift_rule)
        assert fired is not None and fired.status is AlertStatus.FIRING and (fired.value or 0) > 0.2, fired

        # Clean amounts so far (every record offline and checked): the expectation holds, silent.
        running.logged()
        clean = observed_after(quality_rule, int(time.time() * 1000) + 2_000)  # > one check interval later
        assert clean.status is AlertStatus.OK and clean.value == 0, clean
        assert _webhook_kinds(receiver, quality_rule) == [] and _emails(inbox, quality_rule) == []
        parity = observed_after(parity_rule, int(time.time() * 1000))
        assert parity.status is AlertStatus.OK and parity.value == 0, parity

        # Null amounts for a fourth population, far above max 0.1 in the newest hour.
        running.produce(population("d", 1.0, 3, null_amounts=True, within_ms=20_000))
        # And one online tile corrupted: the requests served from it differ from the training path.
        before = running.view_feature("a_0", FEATURE)
        corrupt_tile(running, "a_0")
        _eventually(lambda: running.view_feature("a_0", FEATURE) != before, 60, "the corrupted tile", running)
        for user in ("a_0", "a_1", "a_2"):
            running.get({"featureServiceName": SERVICE, "joinKeyMap": {"user_id": user, "merchant_id": "a_m1"}})

        _eventually(lambda: _fired_to_both(receiver, inbox, quality_rule), 60, "the data-quality alert", running)
        _eventually(lambda: _fired_to_both(receiver, inbox, parity_rule), 90, "the parity-mismatch alert", running)
        for rule in (drift_rule, quality_rule, parity_rule):  # each fired once
            assert _webhook_kinds(receiver, rule).count("firing") == 1, (rule, _webhook_kinds(receiver, rule))
    finally:
        states.close()
