"""Data-quality statistics next to the offline store: one small file per flush and hour.

Layout (under the offline store's root, beside ``sources/``)::

    <root>/quality/<workspace>/<view>/hour=<bucket start ms>/<topic>-<partition>-<first>-<last>.json

Each file holds, for one flush of one Kafka partition (the offsets of the Parquet part it was
computed with) and one hour of event time, the ``FeatureStatistics`` of every column the view
aggregates (``{"format": 1, "columns": {column: statistics}}``). A reader merges every file of an
hour (statistics are mergeable), and a day merges its 24 hours, so nothing is ever rewritten in
place: the name depends only on the offsets, so replaying a flush replaces its file rather than
counting it twice. The materializer writes the statistics after the Parquet files of the flush;
a crash between the two loses that flush's statistics (an undercount of one flush), never
doubles it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import orjson

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.monitoring.quality import QUALITY_FORMAT_VERSION, FeatureStatistics, Granularity
from featurebus.schemas.errors import StoreFormatError

__all__ = ["QualityStore", "quality_dir"]

_HOUR = re.compile(r"^hour=(?P<start>-?\d+)$")


def quality_dir(root: Path, workspace: str, view: str) -> Path:
    return root / "quality" / workspace / view


class QualityStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def write(self, workspace: str, view: str, part: str, stats: Mapping[tuple[str, int], FeatureStatistics]) -> None:
        """Store one flush's statistics, keyed ``(column, hour start ms)``; ``part`` names the
        flush (``<topic>-<partition>-<first offset>-<last offset>``)."""
        by_hour: dict[int, dict[str, str]] = {}
        for (column, start), statistics in stats.items():
            by_hour.setdefault(start, {})[column] = statistics.to_bytes().decode()
        directory = quality_dir(self._root, workspace, view)
        for start, columns in by_hour.items():
            document = {"format": QUALITY_FORMAT_VERSION, "columns": columns}
            atomic_write(directory / f"hour={start}" / f"{part}.json", orjson.dumps(document))

    def read(
        self, workspace: str, view: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[int, dict[str, FeatureStatistics]]:
        """Merged statistics per hour start (only hours with files) in ``[since_ms, until_ms)``."""
        result: dict[int, dict[str, FeatureStatistics]] = {}
        directory = quality_dir(self._root, workspace, view)
        if not directory.exists():
            return result
        for hour_dir in directory.iterdir():
            match = _HOUR.match(hour_dir.name)
            if match is None:
                continue
            start = int(match["start"])
            if (since_ms is not None and start + Granularity.HOUR.value <= since_ms) or (
                until_ms is not None and start >= until_ms
            ):
                continue
            merged: dict[str, FeatureStatistics] = {}
            for path in sorted(hour_dir.glob("*.json")):
                document = orjson.loads(path.read_bytes())
                if not isinstance(document, dict) or document.get("format") != QUALITY_FORMAT_VERSION:
                    raise StoreFormatError(
                        f"{path} is not data-quality statistics of format {QUALITY_FORMAT_VERSION}: delete "
                        f"{directory} to start the statistics afresh, or run the featurebus version that wrote it"
                    )
                for column, raw in document["columns"].items():
                    statistics = FeatureStatistics.from_bytes(raw.encode())
                    if column in merged:
                        merged[column].merge(statistics)
                    else:
                        merged[column] = statistics
            if merged:
                result[start] = merged
        return result

    @staticmethod
    def by_granularity(
        hours: Mapping[int, Mapping[str, FeatureStatistics]], granularity: Granularity
    ) -> dict[int, dict[str, FeatureStatistics]]:
        """Hourly statistics merged into buckets of ``granularity`` (a day merges its hours)."""
        if granularity is Granularity.HOUR:
            return {start: dict(columns) for start, columns in hours.items()}
        result: dict[int, dict[str, FeatureStatistics]] = {}
        for start in sorted(hours):
            bucket = result.setdefault(start - start % granularity.value, {})
            for column, statistics in hours[start].items():
                copy = FeatureStatistics.from_bytes(statistics.to_bytes())  # keep the hourly one intact
                if column in bucket:
                    bucket[column].merge(copy)
                else:
                    bucket[column] = copy
        return result
