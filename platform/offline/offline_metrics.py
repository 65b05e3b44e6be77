"""The offline materializer's ``/metrics``: lag in records and seconds per source partition,
records written and files, read from its plain counters when scraped. (Compactions run as jobs:
``featurebus_job_attempts{kind="compact"}`` and ``featurebus_offline_compaction_files``.)"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featurebus.platform.monitoring.consumer_lag import lag_families
from featurebus.platform.offline.materializer import OfflineMaterializer

__all__ = ["COMPACTION_FILES", "OfflineCollector"]

COMPACTION_FILES = Counter(
    "featurebus_offline_compaction_files",
    "Offline store files handled by compactions (merged: merges done, input: files absorbed, deleted)",
    ["workspace", "kind"],
)


class OfflineCollector(Collector):
    def __init__(self, workspace: str, materializer: OfflineMaterializer) -> None:
        self._workspace = workspace
        self._materializer = materializer

    def collect(self) -> Iterator[Metric]:
        files = CounterMetricFamily(
            "featurebus_offline_materializer_files", "Parquet files written", labels=["workspace"]
        )
        files.add_metric([self._workspace], self._materializer.files_written)
        yield files
        written = CounterMetricFamily(
            "featurebus_offline_materializer_records_written", "Source records written offline", labels=["workspace"]
        )
        written.add_metric([self._workspace], self._materializer.written_count)
        yield written
        yield from lag_families("featurebus_offline_materializer", self._workspace, self._materializer.lag)
