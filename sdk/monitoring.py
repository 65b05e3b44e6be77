"""Monitoring parameters of definitions: data-quality expectations and feature logging.

    @stream_feature_view(..., offline=True,
                         data_quality_expectations=[Expectation(feature="amt", statistic="null_rate", max=0.1)])
    FeatureService("fraud", features=[...], logging=LoggingConfig(sample_rate=0.1))

``Expectation.feature`` names one of the view's features; the bound applies to the statistics of
the values that feature is computed from (its input column after the view's transformation),
per hour of event time (``featurebus monitoring stats``). Both classes check their arguments when
constructed and name the file and line of the definition that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.definition_base import _caller_site
from featurebus.exceptions import DefinitionError
from featurebus.platform.monitoring.expectations import Statistic
from featurebus.schemas.specs import ExpectationSpec, LoggingSpec

__all__ = ["DataQualityOptions", "Expectation", "LoggingConfig", "STATISTICS"]

STATISTICS = tuple(s.value for s in Statistic)  # what an expectation may bound


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


class Expectation:
    """A bound on one statistic of one feature, checked on every hourly bucket."""

    def __init__(self, feature: str, statistic: str, min: float | None = None, max: float | None = None) -> None:
        site = _caller_site()
        where = f"Expectation({feature!r}, {statistic!r}) ({site})"
        if not isinstance(feature, str) or not feature:
            raise DefinitionError(f"{where}: feature must be a feature name of the view")
        if statistic not in STATISTICS:
            raise DefinitionError(f"{where}: statistic must be one of {', '.join(STATISTICS)}")
        if min is None and max is None:
            raise DefinitionError(f"{where}: give min=, max= or both")
        for bound in (min, max):
            if bound is not None and not _number(bound):
                raise DefinitionError(f"{where}: bounds must be finite numbers, got {bound!r}")
        if min is not None and max is not None and min > max:
            raise DefinitionError(f"{where}: min={min} is above max={max}")
        if statistic == "null_rate" and any(b is not None and not 0 <= b <= 1 for b in (min, max)):
            raise DefinitionError(f"{where}: a null rate is within [0, 1]")
        self.site = site
        self.spec = ExpectationSpec(
            feature, statistic, None if min is None else float(min), None if max is None else float(max)
        )

    def __repr__(self) -> str:
        return f"Expectation({self.spec.feature!r}, {self.spec.statistic!r}, min={self.spec.min_value}, max={self.spec.max_value})"


class LoggingConfig:
    """Tecton's ``LoggingConfig``: log ``sample_rate`` of the service's requests (join keys,
    request context, feature values, request time and id) to its logging topic, and from there
    to the offline store (``ws.get_feature_service(S).get_logged_features(start, end)``)."""

    def __init__(self, sample_rate: float = 1.0, log_effective_times: bool = False) -> None:
        site = _caller_site()
        if not _number(sample_rate) or not 0 < sample_rate <= 1:
            raise DefinitionError(
                f"LoggingConfig ({site}): sample_rate must be a number in (0, 1], got {sample_rate!r}. "
                "Pass e.g. sample_rate=0.01 to log one request in a hundred."
            )
        if not isinstance(log_effective_times, bool):
            raise DefinitionError(f"LoggingConfig ({site}): log_effective_times must be True or False")
        self.site = site
        self.spec = LoggingSpec(float(sample_rate), log_effective_times)

    def __repr__(self) -> str:
        return (
            f"LoggingConfig(sample_rate={self.spec.sample_rate}, log_effective_times={self.spec.log_effective_times})"
        )


@dataclass(frozen=True)
class DataQualityOptions:
    """A view's data-quality parameters as written (``enabled`` None: Tecton's default, on for
    views materialized offline)."""

    enabled: bool | None = None
    skip_default_expectations: bool = False
    expectations: Sequence[Expectation] = ()

    def check(self, error: Callable[[str, str], DefinitionError]) -> None:
        if self.enabled is not None and not isinstance(self.enabled, bool):
            raise error(f"data_quality_enabled must be True or False, got {self.enabled!r}", "Pass True or False.")
        if not isinstance(self.skip_default_expectations, bool):
            raise error("skip_default_expectations must be True or False", "Pass True or False.")
        if isinstance(self.expectations, str | bytes) or not all(isinstance(e, Expectation) for e in self.expectations):
            raise error(
                f"data_quality_expectations must be a list of Expectation, got {self.expectations!r}",
                'Pass e.g. [Expectation(feature="amount_sum_1h", statistic="null_rate", max=0.1)].',
            )
        if self.enabled is False and self.expectations:
            raise error(
                "data_quality_expectations are given but data_quality_enabled=False",
                "Remove data_quality_enabled=False or the expectations.",
            )

    def specs(
        self, offline: bool, features: Sequence[str], error: Callable[[str, str], DefinitionError]
    ) -> tuple[bool, bool, tuple[ExpectationSpec, ...]]:
        """``(enabled, skip_default_expectations, expectations)`` of the view's spec; every
        expectation must name one of ``features``."""
        for expectation in self.expectations:
            if expectation.spec.feature not in features:
                raise error(
                    f"Expectation ({expectation.site}) names feature {expectation.spec.feature!r}, which the view lacks",
                    f"Choose from: {', '.join(features)}.",
                )
        enabled = offline if self.enabled is None else self.enabled
        if enabled and not offline:
            raise error(
                "data_quality_enabled=True needs offline=True: statistics are computed as the offline "
                "materializer writes the view's events",
                "Set offline=True or drop data_quality_enabled.",
            )
        return enabled, self.skip_default_expectations, tuple(e.spec for e in self.expectations)
