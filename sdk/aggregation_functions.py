"""Aggregation functions that take parameters, as ``tecton.aggregation_functions`` names them.

``Aggregate(function=last(3), ...)`` is named ``<column>_last_3_<window>_<interval>``; plain
functions are strings (``function="max"``). Ranges are checked where the view is compiled, so the
error can name the view and the line of the ``Aggregate`` (types too: ``last("3")`` fails there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "AggregationFunction",
    "approx_count_distinct",
    "approx_percentile",
    "first",
    "first_distinct",
    "last",
    "last_distinct",
]


@dataclass(frozen=True)
class AggregationFunction:
    """``base_name`` is the spec's function, ``resolved_name`` the part of the default feature name."""

    base_name: str
    resolved_name: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _n_function(base: str, label: str, n: Any) -> AggregationFunction:
    return AggregationFunction(base, f"{label}_{n}", MappingProxyType({"n": n}))


def last(n: int) -> AggregationFunction:
    """The last ``n`` values (duplicates kept), oldest first."""
    return _n_function("last_n", "last", n)


def first(n: int) -> AggregationFunction:
    """The first ``n`` values (duplicates kept), oldest first."""
    return _n_function("first_n", "first", n)


def last_distinct(n: int) -> AggregationFunction:
    """The last ``n`` distinct values, ordered by their latest occurrence, oldest first."""
    return _n_function("last_distinct_n", "last_distinct", n)


def first_distinct(n: int) -> AggregationFunction:
    """The first ``n`` distinct values, ordered by their first occurrence."""
    return _n_function("first_distinct_n", "first_distinct", n)


def approx_count_distinct(precision: int = 8) -> AggregationFunction:
    """Distinct values estimated with HyperLogLog over ``2**precision`` registers (4 to 16)."""
    return AggregationFunction(
        "approx_count_distinct", "approx_count_distinct", MappingProxyType({"precision": precision})
    )


def approx_percentile(percentile: float, precision: int = 100) -> AggregationFunction:
    """The ``percentile`` (0 < p < 1) within relative error ``1 / precision`` (20 to 500)."""
    return AggregationFunction(
        "approx_percentile",
        f"approx_percentile_p{str(percentile).replace('.', '_')}",
        MappingProxyType({"percentile": percentile, "precision": precision}),
    )
