"""Expectations checked on each data-quality bucket (pure).

User-declared ones bound any statistic of a feature's bucket (``Expectation``). The defaults
compare a bucket with the same feature's recent history: its null rate must not rise more than
``null_rate_tolerance`` above the highest recent one, and its row count must stay within a
factor ``volume_factor`` of the recent median. Too little history (fewer than
``min_history`` buckets with data) or no data in the bucket gives ``NO_DATA``, never a pass or
a failure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from featurebus.platform.monitoring.quality import FeatureSummary
from featurebus.schemas.errors import DefinitionError

__all__ = ["Expectation", "ExpectationResult", "ExpectationStatus", "Statistic", "check", "check_defaults"]


class Statistic(Enum):
    ROW_COUNT = "row_count"
    NULL_RATE = "null_rate"
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    STDDEV = "stddev"
    DISTINCT = "distinct_estimate"
    MEDIAN = "median"


class ExpectationStatus(Enum):
    PASSED = "passed"
    FAILED = "failed"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Expectation:
    feature: str
    statistic: Statistic
    min_value: float | None = None
    max_value: float | None = None

    @property
    def name(self) -> str:
        return f"{self.feature}.{self.statistic.value}"

    def __post_init__(self) -> None:
        where = f"expectation on {self.feature!r}"
        if not isinstance(self.statistic, Statistic):
            raise DefinitionError(
                f"{where}: statistic must be one of {[s.value for s in Statistic]}, got {self.statistic!r}"
            )
        if self.min_value is None and self.max_value is None:
            raise DefinitionError(f"{where}: give min_value, max_value or both")
        for bound in (self.min_value, self.max_value):
            if bound is not None and (
                isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound)
            ):
                raise DefinitionError(f"{where}: bounds must be finite numbers, got {bound!r}")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise DefinitionError(f"{where}: min_value {self.min_value} is above max_value {self.max_value}")


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    status: ExpectationStatus
    observed: float | None
    message: str


def _observed(summary: FeatureSummary, statistic: Statistic) -> float | None:
    if statistic is Statistic.MEDIAN:
        return None if summary.quantiles is None else summary.quantiles[0.5]
    value = getattr(summary, statistic.value)
    return None if value is None else float(value)


def check(expectation: Expectation, summary: FeatureSummary) -> ExpectationResult:
    value = _observed(summary, expectation.statistic) if summary.has_data else None
    if value is None:
        return ExpectationResult(expectation.name, ExpectationStatus.NO_DATA, None, "no data in this bucket")
    low, high = expectation.min_value, expectation.max_value
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        return ExpectationResult(
            expectation.name, ExpectationStatus.FAILED, value, f"{expectation.name} = {value:g} is outside {bounds}"
        )
    return ExpectationResult(expectation.name, ExpectationStatus.PASSED, value, "")


def check_defaults(
    feature: str,
    history: Sequence[FeatureSummary],
    current: FeatureSummary,
    *,
    null_rate_tolerance: float = 0.05,
    volume_factor: float = 3.0,
    min_history: int = 3,
) -> list[ExpectationResult]:
    """The null-rate and row-volume expectations of ``current`` against ``history`` (earlier
    buckets of the same granularity, any order; empty ones are ignored)."""
    seen = [s for s in history if s.has_data]
    names = (f"{feature}.null_rate_vs_history", f"{feature}.row_count_vs_history")
    if not current.has_data or len(seen) < min_history:
        reason = (
            "no data in this bucket"
            if not current.has_data
            else f"{len(seen)} earlier buckets with data, {min_history} needed"
        )
        return [ExpectationResult(name, ExpectationStatus.NO_DATA, None, reason) for name in names]
    assert current.null_rate is not None  # has_data
    ceiling = max(s.null_rate or 0.0 for s in seen) + null_rate_tolerance
    null_result = ExpectationResult(
        names[0],
        ExpectationStatus.FAILED if current.null_rate > ceiling else ExpectationStatus.PASSED,
        current.null_rate,
        f"null rate {current.null_rate:.4f} is above {ceiling:.4f} (recent maximum + {null_rate_tolerance})"
        if current.null_rate > ceiling
        else "",
    )
    median = statistics.median(s.row_count for s in seen)
    low, high = median / volume_factor, median * volume_factor
    out = not low <= current.row_count <= high
    volume_result = ExpectationResult(
        names[1],
        ExpectationStatus.FAILED if out else ExpectationStatus.PASSED,
        float(current.row_count),
        f"{current.row_count} rows is outside [{low:g}, {high:g}] (recent median {median:g} / x {volume_factor:g})"
        if out
        else "",
    )
    return [null_result, volume_result]
