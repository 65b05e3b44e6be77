"""The aggregation functions a spec can name, in one enum shared by every aggregator module."""

from __future__ import annotations

import enum

__all__ = ["AggregationFunction", "FUNCTION_ALIASES"]


class AggregationFunction(enum.StrEnum):
    """The functions a spec can name (``AggregationSpec.function``)."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    FIRST_N = "first_n"
    LAST_N = "last_n"
    FIRST_DISTINCT_N = "first_distinct_n"
    LAST_DISTINCT_N = "last_distinct_n"
    VAR_POP = "var_pop"
    VAR_SAMP = "var_samp"
    STDDEV_POP = "stddev_pop"
    STDDEV_SAMP = "stddev_samp"
    APPROX_COUNT_DISTINCT = "approx_count_distinct"
    APPROX_PERCENTILE = "approx_percentile"


# Tecton's extra spellings of the same functions (the feature name keeps the spelling used).
FUNCTION_ALIASES = {"stddev": AggregationFunction.STDDEV_SAMP, "variance": AggregationFunction.VAR_SAMP}
