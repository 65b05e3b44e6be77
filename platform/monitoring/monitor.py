"""The alert evaluator process (``featurebus monitor``): scrape, remember, evaluate, deliver.

Every ``interval_s``:

1. Re-read the watched workspaces' specs; when one changed, rebuild the rules
   (``workspace_rules``: the views' Tecton parameters and the user's ``AlertRule`` objects, plus
   COMPONENT_DOWN for every scraped component) and forget the states of removed rules.
2. Scrape every component's ``/metrics`` (in parallel, each with a timeout: one hung component
   delays nothing else). A component that answers is "seen"; one that does not keeps its last
   seen time, and COMPONENT_DOWN observes the seconds since then.
3. Keep the samples in the bounded history (``history``) the web UI charts.
4. Observe each rule (the largest matching sample of its kind's series, ``KIND_INFO``), and run
   ``AlertEvaluator.evaluate``: states on the bus (``KafkaAlertStateStore``), notifications
   through the ``Dispatcher`` (SMTP, webhook, alerts topic), never blocking this loop. The
   repeats of an episode an operator acknowledged (``acks``) are not sent.

It serves its own ``/metrics``, ``/history`` (JSON: ``?component=&metric=&since=`` epoch ms) and
``/health`` on one port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.platform.monitoring.acks import AlertAck, AlertAcks
from featurebus.platform.monitoring.alerts import AlertState, AlertStatus, Notification, NotificationKind
from featurebus.platform.monitoring.channels import Channel, EmailChannel
from featurebus.platform.monitoring.dispatcher import Dispatcher
from featurebus.platform.monitoring.evaluator import AlertEvaluator
from featurebus.platform.monitoring.history import MetricHistory
from featurebus.platform.monitoring.rules import KIND_INFO, AlertRule, RuleKind
from featurebus.platform.monitoring.scrape import Sample, ScrapeError, scrape
from featurebus.platform.monitoring.state_store import AlertStateStore
from featurebus.platform.monitoring.workspace_rules import EMAIL_CHANNEL_PREFIX, component_rules, workspace_rules
from featurebus.platform.registry.base import Registry
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["Monitor", "MonitorSettings", "ScrapeTarget", "SmtpSettings", "observe"]

_log = logging.getLogger(__name__)

SCRAPE_FAILURES = Counter("featurebus_monitor_scrape_failures", "Scrapes that failed", ["component"])
EVALUATIONS = Counter("featurebus_monitor_evaluations", "Evaluation rounds run")


@dataclass(frozen=True)
class ScrapeTarget:
    name: str  # the component: "worker", "serving", ...
    url: str  # its full /metrics URL
    headers: tuple[tuple[str, str], ...] = ()  # e.g. the serving API's Authorization


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "featurebus@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class MonitorSettings:
    interval_s: float = 15.0
    component_down_after_s: float = 30.0
    repeat_interval_s: float = 3600.0
    scrape_timeout_s: float = 5.0
    history_window_s: float = 6 * 3600.0
    shared_channels: tuple[str, ...] = ()  # every rule also goes there ("webhook", "alerts-topic")
    smtp: SmtpSettings | None = None
    extra_rules: tuple[AlertRule, ...] = field(default=())


def observe(rule: AlertRule, samples: Sequence[Sample]) -> float | None:
    """The rule's current value: the largest sample of its kind's series with the rule's target
    and labels (several replicas may export one view: the worst counts); None without one."""
    info = KIND_INFO[rule.kind]
    wanted = ((info.target_label, rule.target), *rule.labels)
    values = [
        s.value
        for s in samples
        if s.name == info.metric and all(s.label(name) == value for name, value in wanted) and s.value == s.value
    ]
    return max(values) if values else None


class Monitor:
    def __init__(
        self,
        registry: Registry,
        workspaces: Sequence[str],
        targets: Sequence[ScrapeTarget],
        store: AlertStateStore,
        channels: Mapping[str, Channel],
        settings: MonitorSettings = MonitorSettings(),
        clock: Callable[[], float] = time.time,
        acks: AlertAcks | None = None,
    ) -> None:
        """``acks``: the operators' acknowledgements; an acknowledged episode is not repeated
        (its RESOLVED still goes out)."""
        self._registry = registry
        self._acks = acks
        self._acked: dict[str, AlertAck] = {}
        self._workspaces = tuple(workspaces)
        self._targets = tuple(targets)
        self._store = store
        self._settings = settings
        self._clock = clock
        self.dispatcher = Dispatcher(channels)
        self.history = MetricHistory(settings.history_window_s)
        started = clock()
        self.last_seen: dict[str, float] = {t.name: started for t in targets}  # never seen: since start
        self._versions: dict[str, int | None] = {}
        self.rules: list[AlertRule] = []
        self.states: list[AlertState] = []
        self._evaluator: AlertEvaluator | None = None
        self._pool = ThreadPoolExecutor(max(1, len(targets)), thread_name_prefix="featurebus-scrape")
        self._collector = _MonitorCollector(self)
        self.suppressed_repeats = 0

    # -- one round ---------------------------------------------------------------------------
    def step(self, stop: threading.Event | None = None) -> list[AlertState]:
        """One round. ``stop`` set while the scrapes are out abandons the round before anything is
        observed or stored (the next evaluator observes afresh): stopping waits for no scrape."""
        self._reload_rules()
        if self._acks is not None:
            self._acked = self._acks.all()
        now = self._clock()
        samples = self._scrape_all(now, stop)
        if samples is None:
            return self.states
        observations = {rule.name: self._observe(rule, samples, now) for rule in self.rules}
        assert self._evaluator is not None  # _reload_rules builds it
        states = self._evaluator.evaluate(observations, int(now * 1000), stop)
        if stop is not None and stop.is_set():
            return self.states  # a partial round: keep the last complete picture for /metrics
        self.states = states
        EVALUATIONS.inc()
        return self.states

    def _reload_rules(self) -> None:
        specs: dict[str, WorkspaceSpec | None] = {ws: self._registry.get(ws) for ws in self._workspaces}
        versions = {ws: None if spec is None else spec.version for ws, spec in specs.items()}
        if self._evaluator is not None and versions == self._versions:
            return
        shared = self._settings.shared_channels
        rules = [
            *component_rules(
                [t.name for t in self._targets],
                shared,
                self._settings.component_down_after_s,
                self._settings.repeat_interval_s,
            ),
            *self._settings.extra_rules,
        ]
        for spec in specs.values():
            if spec is not None:
                rules += workspace_rules(spec, shared, self._settings.repeat_interval_s)
        self._configure_email(rules)
        self.rules = rules
        self._evaluator = AlertEvaluator(rules, self._store, self._deliver)
        removed = self._evaluator.forget_removed_rules()
        if removed:
            _log.info("forgot the alert states of removed rules %s", removed)
        self._versions = versions
        _log.info("evaluating %d alert rules", len(rules))

    def _deliver(self, rule: AlertRule, notification: Notification) -> None:
        ack = self._acked.get(rule.name)
        if (
            notification.kind is NotificationKind.REPEAT
            and ack is not None
            and ack.episode_ms == notification.episode_ms
        ):
            self.suppressed_repeats += 1  # someone is on it: done, as far as the evaluator is concerned
            return
        self.dispatcher.deliver(rule, notification)

    def _configure_email(self, rules: Sequence[AlertRule]) -> None:
        wanted = {name for rule in rules for name in rule.channels if name.startswith(EMAIL_CHANNEL_PREFIX)}
        missing = wanted - self.dispatcher.channel_names()
        if not missing:
            return
        smtp = self._settings.smtp
        if smtp is None:
            _log.warning(
                "rules name email addresses %s but no SMTP server is configured (--smtp-host)", sorted(missing)
            )
            return
        self.dispatcher.add_channels(
            {
                name: EmailChannel(
                    smtp.host,
                    smtp.port,
                    smtp.sender,
                    (name[len(EMAIL_CHANNEL_PREFIX) :],),
                    starttls=smtp.starttls,
                    username=smtp.username,
                    password=smtp.password,
                )
                for name in missing
            }
        )

    def _scrape_all(self, now: float, stop: threading.Event | None = None) -> list[Sample] | None:
        """Every target's samples; None when ``stop`` was set before all had answered."""
        timeout = self._settings.scrape_timeout_s
        futures = {t.name: self._pool.submit(scrape, t.url, dict(t.headers), timeout) for t in self._targets}
        outstanding = set(futures.values())
        while outstanding:
            if stop is not None and stop.is_set():
                return None
            _, outstanding = wait(outstanding, timeout=0.1)
        found: list[Sample] = []
        at_ms = int(now * 1000)
        for name, future in futures.items():
            try:
                samples = future.result()
            except ScrapeError as exc:
                SCRAPE_FAILURES.labels(name).inc()
                _log.info("%s", exc)
                continue
            self.last_seen[name] = self._clock()
            self.history.record(name, samples, at_ms)
            found += samples
        return found

    def _observe(self, rule: AlertRule, samples: Sequence[Sample], now: float) -> float | None:
        if rule.kind is RuleKind.COMPONENT_DOWN:
            seen = self.last_seen.get(rule.target)
            return None if seen is None else max(now - seen, 0.0)
        return observe(rule, samples)

    # -- the process -------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        REGISTRY.register(self._collector)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.step(stop)
                except Exception:  # a broker outage or a bad spec: the next round tries again
                    _log.exception("alert evaluation round failed; retrying next interval")
                stop.wait(max(0.0, self._settings.interval_s - (time.monotonic() - started)))
        finally:
            REGISTRY.unregister(self._collector)
            self.close()

    def close(self, grace_s: float = 1.0) -> None:
        """Stop within about ``grace_s`` (a channel in backoff or hanging is not waited for): what
        the dispatcher could not deliver goes back into the stored outboxes, for the next evaluator."""
        undelivered = self.dispatcher.close(grace_s)
        try:
            if undelivered and self._evaluator is not None:
                self._evaluator.owe_again(undelivered)
                _log.info("%d undelivered notifications kept for the next evaluator", len(undelivered))
            elif undelivered:
                _log.error("%d notifications not delivered and no evaluator to keep them", len(undelivered))
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._store.close()


class _MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        monitor = self._monitor
        now = time.time()
        unseen = GaugeMetricFamily(
            "featurebus_component_unseen_seconds",
            "Seconds since the component last answered a scrape",
            labels=["component"],
        )
        for name, seen in sorted(monitor.last_seen.items()):
            unseen.add_metric([name], max(now - seen, 0.0))
        yield unseen
        firing = GaugeMetricFamily("featurebus_alerts", "Alerts by state", labels=["rule", "state"])
        for state in monitor.states:
            for status in AlertStatus:
                firing.add_metric([state.rule, status.value], 1.0 if state.status is status else 0.0)
        yield firing
        counters = monitor.dispatcher.counters
        delivered = CounterMetricFamily(
            "featurebus_alert_notifications_sent", "Notifications delivered", labels=["channel"]
        )
        for channel, n in sorted(counters.per_channel_sent.items()):
            delivered.add_metric([channel.split(":", 1)[0]], n)
        yield delivered
        failures = CounterMetricFamily(
            "featurebus_alert_delivery_failures", "Failed delivery attempts (retried with backoff)", labels=[]
        )
        failures.add_metric([], counters.failed_attempts)
        yield failures
        suppressed = CounterMetricFamily(
            "featurebus_alert_repeats_suppressed", "Repeats not sent because the episode was acknowledged", labels=[]
        )
        suppressed.add_metric([], monitor.suppressed_repeats)
        yield suppressed
        history = GaugeMetricFamily("featurebus_monitor_history_dropped_series", "Series the history had no room for")
        history.add_metric([], monitor.history.dropped_series)
        yield history
