"""What a feature view computes: windows (``TimeWindow``, ``LifetimeWindow``, ``TimeWindowSeries``),
``Aggregate`` and ``Attribute`` features, and the stream processing options."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from featurebus.aggregation_functions import AggregationFunction
from featurebus.definition_base import (
    DefinitionSite,
    _caller_site,
    _fail,
)
from featurebus.schemas.kinds import AggregationLeadingEdge
from featurebus.types import DataType, Field

__all__ = [
    "Aggregate",
    "AggregationLeadingEdge",
    "Attribute",
    "LifetimeWindow",
    "StreamProcessingMode",
    "TimeWindow",
    "TimeWindowSeries",
]


@dataclass(frozen=True)
class TimeWindow:
    """A window of ``window_size`` whose end is ``offset`` before the aggregation's reference
    point (the request's time, the spine row's time, or the end of the last complete interval).

    ``offset`` is zero or negative, as in Tecton: ``TimeWindow(timedelta(days=1),
    offset=-timedelta(days=7))`` is the day a week ago, named ``..._1d_..._offset_7d``.
    """

    window_size: timedelta
    offset: timedelta = timedelta(0)


@dataclass(frozen=True)
class LifetimeWindow:
    """Every event from the view's ``lifetime_start_time`` up to the reference point (which the
    view must then set, as Tecton requires)."""


@dataclass(frozen=True, kw_only=True)
class TimeWindowSeries:
    """A series of windows giving one array feature, earliest window first (Tecton 1.x).

    Windows of ``window_size`` start at ``series_start`` (negative: before the reference point)
    and every ``step_size`` after it (default: ``window_size``, back-to-back windows) while they
    end by ``series_end`` (zero or negative). ``TimeWindowSeries(series_start=-timedelta(days=7),
    window_size=timedelta(days=1))`` is the seven last days, one value per day.
    featurebus also requires ``step_size`` to divide ``series_end - series_start - window_size``
    (Tecton silently ends the series early otherwise) and, as Tecton, at least two windows.
    """

    series_start: timedelta
    series_end: timedelta = timedelta(0)
    step_size: timedelta | None = None
    window_size: timedelta


class StreamProcessingMode(enum.StrEnum):
    TIME_INTERVAL = "time_interval"
    CONTINUOUS = "continuous"


WindowDefinition = TimeWindow | LifetimeWindow | TimeWindowSeries


@dataclass
class Aggregate:
    """A windowed aggregation of one column: ``function`` is a name ("sum", "max", "stddev", ...) or
    a parameterised function from ``featurebus.aggregation_functions`` (``last(3)``); ``time_window``
    a ``timedelta``, ``TimeWindow`` (with an offset), ``LifetimeWindow`` or ``TimeWindowSeries``."""

    function: str | AggregationFunction
    time_window: WindowDefinition | timedelta
    input_column: Field
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] | None = None
    site: DefinitionSite = field(default_factory=lambda: _caller_site(3), repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.time_window, timedelta):
            self.time_window = TimeWindow(self.time_window)
        if not isinstance(self.function, (str, AggregationFunction)):
            raise _fail(
                "Aggregate",
                self.label,
                self.site,
                f"function must be a name or an aggregation function, got {self.function!r}",
                "Pass function='sum' or function=last(3) (from featurebus.aggregation_functions).",
            )
        if not isinstance(self.time_window, (TimeWindow, LifetimeWindow, TimeWindowSeries)):
            raise _fail(
                "Aggregate",
                self.label,
                self.site,
                f"time_window must be a timedelta, TimeWindow, "
                f"LifetimeWindow or TimeWindowSeries, got {self.time_window!r}",
                "Pass time_window=timedelta(hours=1).",
            )
        if not isinstance(self.input_column, Field):
            raise _fail(
                "Aggregate",
                self.label,
                self.site,
                "input_column must be a Field",
                "Pass input_column=Field('amount', Float64).",
            )

    @property
    def function_name(self) -> str:
        """The spec's function: the name itself, or a parameterised function's base name."""
        return self.function.base_name if isinstance(self.function, AggregationFunction) else self.function

    @property
    def resolved_name(self) -> str:
        """The function's part of the default feature name (``sum``, ``last_3``), as Tecton's."""
        return self.function.resolved_name if isinstance(self.function, AggregationFunction) else str(self.function)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.function.params) if isinstance(self.function, AggregationFunction) else {}

    @property
    def label(self) -> str:
        """The name errors use: the explicit name, else ``column_function``."""
        return self.name or f"{getattr(self.input_column, 'name', '?')}_{self.resolved_name}"

    @property
    def window(self) -> WindowDefinition:
        assert not isinstance(self.time_window, timedelta)  # normalised in __post_init__
        return self.time_window


class Attribute:
    """A column of the transformation's output served as is: its latest value before the request
    (or spine) time, missing once older than the view's ``ttl`` (Tecton's ``Attribute``). The
    feature is named after the column. ``Attribute(Field("city", String))`` works too."""

    def __init__(
        self,
        name: str | Field,
        dtype: DataType | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.site = _caller_site()
        if isinstance(name, Field):
            column: Field = name
            name, dtype = column.name, dtype or column.dtype
        if not isinstance(name, str) or not name:
            raise _fail(
                "Attribute",
                str(name),
                self.site,
                "name must be the name of a column of the transformation's output",
                "Pass Attribute('city', String).",
            )
        if not isinstance(dtype, DataType):
            raise _fail(
                "Attribute",
                name,
                self.site,
                f"dtype must be a featurebus.types type, got {dtype!r}",
                f"Pass Attribute({name!r}, String).",
            )
        self.name = name
        self.dtype = dtype
        self.description = description
        self.tags = dict(tags or {})

    def __repr__(self) -> str:
        return f"Attribute({self.name!r}, {self.dtype!r})"


# Tecton's ``mode=`` values; featurebus runs 'pandas' and 'python' and refuses the others where used.
