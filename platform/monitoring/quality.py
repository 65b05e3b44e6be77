"""Data-quality statistics of one feature in one time bucket, incremental and mergeable.

A ``FeatureStatistics`` folds batches of values as features are materialized and merges with
another one of the same feature (two workers, two partitions, hours into a day). Exact moments
are kept as count, mean and the sum of squared deviations (merged with Chan's formula, stable
where a sum of squares is not); quantiles come from an Apache DataSketches KLL sketch and the
distinct count from an HLL sketch — bounded-error, mergeable and byte-compatible with the
Java/C++ DataSketches, rather than home-made. The histogram is read from the KLL sketch at
``summary()`` time, so it merges too.

A bucket without any row has no statistics: ``summary()`` then says ``has_data=False`` and every
statistic is None, never 0. Serialized forms carry ``QUALITY_FORMAT_VERSION``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from datasketches import hll_sketch, hll_union, kll_doubles_sketch

from featurebus.schemas.errors import DefinitionError, StoreFormatError

__all__ = ["FeatureStatistics", "FeatureSummary", "Granularity", "QUALITY_FORMAT_VERSION", "bucket_statistics"]

QUALITY_FORMAT_VERSION = 1
KLL_K = 200  # DataSketches' default: ~1.65% normalized rank error
HLL_LG_K = 12  # 4096 buckets: ~1.6% relative error on distinct counts, 2.5 KB per sketch
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 10


class Granularity(Enum):
    HOUR = 3_600_000
    DAY = 86_400_000


@dataclass(frozen=True)
class FeatureSummary:
    row_count: int
    null_count: int
    has_data: bool
    null_rate: float | None
    min: float | None
    max: float | None
    mean: float | None
    stddev: float | None
    quantiles: dict[float, float] | None
    distinct_estimate: float | None
    histogram_edges: list[float] | None
    histogram_counts: list[float] | None  # estimated rows per bin (from the KLL sketch)


class FeatureStatistics:
    """Statistics of one feature's values; numeric features get moments, quantiles and a
    histogram, every feature gets row and null counts and a distinct count."""

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self.row_count = 0
        self.null_count = 0
        self._n = 0  # non-null values
        self._mean = 0.0
        self._m2 = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._kll = kll_doubles_sketch(KLL_K) if numeric else None
        self._hll = hll_sketch(HLL_LG_K)

    def add(self, values: Sequence[Any] | np.ndarray) -> None:
        """Fold a batch of values (None, and NaN for numerics, are nulls)."""
        if self.numeric:
            array = (
                np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
                if not isinstance(values, np.ndarray)
                else values.astype(np.float64, copy=False)
            )
            present = array[~np.isnan(array)]
            self.row_count += len(array)
            self.null_count += len(array) - len(present)
            if len(present):
                self._fold_moments(
                    len(present),
                    float(present.mean()),
                    float(((present - present.mean()) ** 2).sum()),
                    float(present.min()),
                    float(present.max()),
                )
                assert self._kll is not None
                self._kll.update(present)
                for value in np.unique(present).tolist():  # HLL ignores repeats: update each value once
                    self._hll.update(value)
            return
        self.row_count += len(values)
        for value in values:
            if value is None:
                self.null_count += 1
            else:
                self._hll.update(str(value))
                self._n += 1

    def _fold_moments(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        total = self._n + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self._n * n / total
        self._n = total
        self._min = min(self._min, low)
        self._max = max(self._max, high)

    def merge(self, other: FeatureStatistics) -> None:
        if other.numeric != self.numeric:
            raise DefinitionError("cannot merge statistics of a numeric feature with those of a categorical one")
        self.row_count += other.row_count
        self.null_count += other.null_count
        if self.numeric:
            if other._n:
                self._fold_moments(other._n, other._mean, other._m2, other._min, other._max)
            assert self._kll is not None and other._kll is not None
            self._kll.merge(other._kll)
        else:
            self._n += other._n
        union = hll_union(HLL_LG_K)
        union.update(self._hll)
        union.update(other._hll)
        self._hll = union.get_result()

    def summary(self) -> FeatureSummary:
        if self.row_count == 0:
            return FeatureSummary(0, 0, False, None, None, None, None, None, None, None, None, None)
        null_rate = self.null_count / self.row_count
        distinct = self._hll.get_estimate()
        if not self.numeric or self._n == 0:
            return FeatureSummary(
                self.row_count, self.null_count, True, null_rate, None, None, None, None, None, distinct, None, None
            )
        assert self._kll is not None
        stddev = math.sqrt(self._m2 / (self._n - 1)) if self._n > 1 else 0.0
        quantiles = dict(zip(QUANTILES, self._kll.get_quantiles(list(QUANTILES)), strict=True))
        edges = np.linspace(self._min, self._max, HISTOGRAM_BINS + 1).tolist()
        # A span too narrow for distinct float edges (equal values, or a few subnormals apart):
        # one bin holding every value.
        if any(later <= earlier for earlier, later in pairwise(edges)):
            edges, counts = [self._min, self._max], [float(self._n)]
        else:
            # get_pmf(splits) gives the share below each split and above the last: bins
            # [edge_i, edge_i+1), the last one closed at the maximum.
            shares = self._kll.get_pmf(edges[1:-1])
            counts = [share * self._n for share in shares]
        return FeatureSummary(
            self.row_count,
            self.null_count,
            True,
            null_rate,
            self._min,
            self._max,
            self._mean,
            stddev,
            quantiles,
            distinct,
            edges,
            counts,
        )

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {
            "format": QUALITY_FORMAT_VERSION,
            "numeric": self.numeric,
            "rows": self.row_count,
            "nulls": self.null_count,
            "n": self._n,
            "mean": self._mean,
            "m2": self._m2,
            "min": None if self._n == 0 or not self.numeric else self._min,
            "max": None if self._n == 0 or not self.numeric else self._max,
            "hll": base64.b64encode(self._hll.serialize_compact()).decode(),
            "kll": None if self._kll is None else base64.b64encode(self._kll.serialize()).decode(),
        }
        return orjson.dumps(document)

    @classmethod
    def from_bytes(cls, raw: bytes) -> FeatureStatistics:
        document = orjson.loads(raw)
        if not isinstance(document, dict) or document.get("format") != QUALITY_FORMAT_VERSION:
            found = document.get("format") if isinstance(document, dict) else None
            raise StoreFormatError(
                f"data-quality statistics have format {found!r}, this featurebus reads "
                f"{QUALITY_FORMAT_VERSION}: recompute them (rematerialize the buckets) or run "
                "the featurebus version that wrote them"
            )
        stats = cls(bool(document["numeric"]))
        stats.row_count, stats.null_count, stats._n = int(document["rows"]), int(document["nulls"]), int(document["n"])
        stats._mean, stats._m2 = float(document["mean"]), float(document["m2"])
        if document["min"] is not None:
            stats._min, stats._max = float(document["min"]), float(document["max"])
        stats._hll = hll_sketch.deserialize(base64.b64decode(document["hll"]))
        if document["kll"] is not None:
            stats._kll = kll_doubles_sketch.deserialize(base64.b64decode(document["kll"]))
        return stats


def bucket_statistics(
    times_ms: np.ndarray,
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    numeric: Iterable[str],
    granularity: Granularity,
) -> dict[tuple[str, int], FeatureStatistics]:
    """Statistics of each feature (column) per bucket of ``granularity`` for one batch of rows;
    key = (feature, bucket start in ms). Merge them into the stored buckets with ``merge``."""
    numeric_features = set(numeric)
    times = np.asarray(times_ms, dtype=np.int64)
    size = granularity.value
    starts = times - times % size
    result: dict[tuple[str, int], FeatureStatistics] = {}
    for feature, values in columns.items():
        if len(values) != len(times):
            raise DefinitionError(f"feature {feature!r} has {len(values)} values for {len(times)} rows")
        array = np.asarray(values, dtype=np.float64 if feature in numeric_features else object)
        for start in np.unique(starts).tolist():
            stats = FeatureStatistics(feature in numeric_features)
            stats.add(array[starts == start])
            result[(feature, int(start))] = stats
    return result
