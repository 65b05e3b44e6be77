"""The aggregation functions a spec can name (the enum lives with the specs, in
``featurebus.schemas.kinds``) and Tecton's aliases for some of them."""

from __future__ import annotations

from featurebus.schemas.kinds import AggregationFunction

__all__ = ["AggregationFunction", "FUNCTION_ALIASES"]


# Tecton's extra spellings of the same functions (the feature name keeps the spelling used).
FUNCTION_ALIASES = {"stddev": AggregationFunction.STDDEV_SAMP, "variance": AggregationFunction.VAR_SAMP}
