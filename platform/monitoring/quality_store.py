"""Data-quality statistics next to the offline store: one small file per view and flush.

Layout (under the offline store's root, beside ``sources/``)::

    <root>/quality/<workspace>/<view>/h<first hour>-<last hour>-<topic>-<partition>-<first>-<last>.json

Each file holds, for one flush of one Kafka partition (the offsets of the Parquet part it was
computed with), the ``FeatureStatistics`` of every column the view aggregates per hour of event
time (``{"format": 1, "hours": {hour start ms: {column: statistics}}}``); the hour range in the
name lets a reader skip files outside the range it asks for. A reader merges every file's
statistics of an hour (they are mergeable), and a day merges its 24 hours, so nothing is ever
rewritten in place: the name depends only on the offsets, so replaying a flush replaces its file
rather than counting it twice.

Statistics are derived data, so files are renamed into place (readers never see a torn one) but
not fsynced: fsyncs were most of what statistics cost a flush. After a power loss a file may be
empty; readers skip an unreadable file with a warning, as they would a flush whose statistics a
crash prevented (the materializer writes statistics after the flush's Parquet files): an
undercount of that flush, never a double count.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import orjson

from featurebus.platform.monitoring.quality import QUALITY_FORMAT_VERSION, FeatureStatistics, Granularity
from featurebus.schemas.errors import StoreFormatError

__all__ = ["QualityStore", "quality_dir"]

_FILE = re.compile(r"^h(?P<first>-?\d+)-(?P<last>-?\d+)-.+\.json$")

_log = logging.getLogger(__name__)


def quality_dir(root: Path, workspace: str, view: str) -> Path:
    return root / "quality" / workspace / view


class QualityStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def write(self, workspace: str, view: str, part: str, stats: Mapping[tuple[str, int], FeatureStatistics]) -> None:
        """Store one flush's statistics, keyed ``(column, hour start ms)``; ``part`` names the
        flush (``<topic>-<partition>-<first offset>-<last offset>``)."""
        if not stats:
            return
        hours: dict[str, dict[str, str]] = {}
        for (column, start), statistics in stats.items():
            hours.setdefault(str(start), {})[column] = statistics.to_bytes().decode()
        starts = [int(h) for h in hours]
        directory = quality_dir(self._root, workspace, view)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"h{min(starts)}-{max(starts)}-{part}.json"
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(orjson.dumps({"format": QUALITY_FORMAT_VERSION, "hours": hours}))
        os.replace(temporary, path)

    def read(
        self, workspace: str, view: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[int, dict[str, FeatureStatistics]]:
        """Merged statistics per hour start (only hours with data) in ``[since_ms, until_ms)``."""
        result: dict[int, dict[str, FeatureStatistics]] = {}
        directory = quality_dir(self._root, workspace, view)
        if not directory.exists():
            return result
        hour = Granularity.HOUR.value
        for path in sorted(directory.glob("h*.json")):
            match = _FILE.match(path.name)
            if match is None:
                continue
            if (since_ms is not None and int(match["last"]) + hour <= since_ms) or (
                until_ms is not None and int(match["first"]) >= until_ms
            ):
                continue
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                _log.warning("skipping unreadable data-quality statistics %s (cut short by a crash?)", path)
                continue
            if not isinstance(document, dict) or document.get("format") != QUALITY_FORMAT_VERSION:
                raise StoreFormatError(
                    f"{path} is not data-quality statistics of format {QUALITY_FORMAT_VERSION}: delete "
                    f"{directory} to start the statistics afresh, or run the featurebus version that wrote it"
                )
            for start_text, columns in document["hours"].items():
                start = int(start_text)
                if (since_ms is not None and start + hour <= since_ms) or (until_ms is not None and start >= until_ms):
                    continue
                merged = result.setdefault(start, {})
                for column, raw in columns.items():
                    statistics = FeatureStatistics.from_bytes(raw.encode())
                    if column in merged:
                        merged[column].merge(statistics)
                    else:
                        merged[column] = statistics
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
