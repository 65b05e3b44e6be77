"""The feature monitor of the offline materializer process: logged features into the offline
store, then drift and live parity on a period, exported on the process's Prometheus registry.

Started by ``featurebus offline`` (which ``featurebus up`` runs) beside the materializer, in its
own thread: ``run_forever`` writes the logging topics continuously and, every ``interval_s``,
- drift of every view served by a service with logging, against the saved dataset named
  ``reference.<view>`` or else ``reference`` when there is one (a training set saved with
  ``ws.save_dataset``), else the previous 24 buckets of its own logged features
  (``drift_monitor``) -> ``featurebus_feature_drift{workspace,feature_view,feature}`` = the PSI
  of the newest bucket with data (``drift_bucket_ms``, an hour by default);
- parity of a sample of the logged requests of each such service that are older than
  ``settle_s`` and not checked before, recomputed through the training-set path (``parity``) ->
  ``featurebus_parity_mismatch_ratio{workspace,feature_view}``.
Each report is also written for the control plane's routes (``reports``). A failing round is
logged and retried next period: monitoring never stops the materializer.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pandas as pd
from prometheus_client import Gauge

from featurebus.platform.offline.datasets import list_datasets
from featurebus.platform.offline.logged_features import TIMESTAMP, LoggedFeaturesWriter, read_logged_features
from featurebus.platform.served.drift_monitor import HOUR_MS, DriftReference, view_drift
from featurebus.platform.served.parity import parity_report
from featurebus.platform.served.reports import ReportStore
from featurebus.schemas.errors import FeaturebusError, InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["DRIFT", "PARITY", "FeatureMonitor"]

DRIFT = Gauge(
    "featurebus_feature_drift",
    "Population stability index of the newest bucket of a feature's served values against its reference",
    ["workspace", "feature_view", "feature"],
)
PARITY = Gauge(
    "featurebus_parity_mismatch_ratio",
    "Share of a view's logged served values that differ from the training-set recomputation",
    ["workspace", "feature_view"],
)

_log = logging.getLogger(__name__)


class FeatureMonitor:
    def __init__(
        self,
        bootstrap: str,
        root: Path,
        spec: WorkspaceSpec,
        *,
        interval_s: float = 30.0,
        parity_sample: int = 500,
        settle_s: float = 10.0,
        drift_bucket_ms: int = HOUR_MS,
    ) -> None:
        """``drift_bucket_ms``: the span of served requests one drift statistic covers (shorter:
        drift shows sooner, from fewer requests)."""
        if interval_s <= 0 or drift_bucket_ms <= 0:
            raise InvalidRequestError(
                f"feature monitor: the interval ({interval_s} s) and the drift bucket ({drift_bucket_ms} ms) must be > 0"
            )
        self._root = root
        self._drift_bucket_ms = drift_bucket_ms
        self._spec = spec
        self._interval_s = interval_s
        self._parity_sample = parity_sample
        self._settle_s = settle_s
        self.writer = LoggedFeaturesWriter(bootstrap, root, spec)
        self._reports = ReportStore(root)
        self._checked_until: dict[str, pd.Timestamp] = {}  # per service: requests up to here were checked
        self._services = [s for s in spec.feature_services if s.logging is not None]
        self._views = sorted(
            {sel.view for s in self._services for sel in s.selections if not spec.is_realtime(sel.view)}
        )

    @property
    def enabled(self) -> bool:
        return bool(self._services)

    def run_forever(self, stop: threading.Event) -> None:
        if not self.enabled:
            return
        next_round = time.monotonic() + self._interval_s
        try:
            while not stop.is_set():
                try:
                    self.writer.poll_once()
                except FeaturebusError as exc:
                    _log.warning("feature logging to the offline store: %s; retrying", exc)
                    stop.wait(1.0)
                if time.monotonic() >= next_round:
                    self.run_round()
                    next_round = time.monotonic() + self._interval_s
            self.writer.poll_once(0, flush=True)
        finally:
            self.writer.close()

    def run_round(self) -> None:
        """One drift and parity round over everything logged so far."""
        for view in self._views:
            try:
                self.drift(view)
            except FeaturebusError as exc:
                _log.info("drift of view %r not computed: %s", view, exc)
        for service in self._services:
            try:
                self.parity(service.name)
            except FeaturebusError as exc:
                _log.info("parity of service %r not checked: %s", service.name, exc)

    def drift(self, view: str) -> dict[str, object]:
        saved = set(list_datasets(self._root, self._spec.name))
        dataset = next((name for name in (f"reference.{view}", "reference") if name in saved), None)
        reference = None if dataset is None else DriftReference(dataset=dataset)
        report = view_drift(self._root, self._spec, view, reference=reference, bucket_ms=self._drift_bucket_ms)
        self._reports.write(self._spec.name, "drift", view, report)
        for feature in report["features"]:  # type: ignore[union-attr]
            if feature.get("psi") is not None:
                DRIFT.labels(self._spec.name, view, feature["feature"]).set(feature["psi"])
        return report

    def parity(self, service: str, *, now: pd.Timestamp | None = None) -> dict[str, object]:
        """Check a sample of the service's logged requests not checked yet and older than the
        settling delay; the report and gauges cover that round's sample."""
        logged = read_logged_features(self._root, self._spec.name, service)
        cutoff = (now or pd.Timestamp.now(tz="UTC")) - pd.Timedelta(seconds=self._settle_s)
        after = self._checked_until.get(service)
        fresh = logged[(logged[TIMESTAMP] <= cutoff) & ((logged[TIMESTAMP] > after) if after is not None else True)]
        if fresh.empty:
            return self._reports.read(self._spec.name, "parity", service)
        sample = fresh if len(fresh) <= self._parity_sample else fresh.sample(self._parity_sample, random_state=0)
        report = parity_report(self._spec, service, sample.reset_index(drop=True), self._root)
        self._checked_until[service] = fresh[TIMESTAMP].max()
        self._reports.write(self._spec.name, "parity", service, report)
        for view, counts in report["views"].items():  # type: ignore[union-attr]
            if counts["mismatchRatio"] is not None:
                PARITY.labels(self._spec.name, view).set(counts["mismatchRatio"])
        return report
