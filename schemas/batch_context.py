"""The time range batch code receives (Tecton 1.x names): ``FilterContext(start_time, end_time)``
for a custom batch source's function, ``MaterializationContext`` for a batch feature view's
``context=materialization_context()`` argument. Plain values: the SDK hands them to users'
functions and the platform's batch jobs fill them in, so they live below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["FilterContext", "MaterializationContext", "materialization_context"]


@dataclass(frozen=True)
class FilterContext:
    """The time range ``[start_time, end_time)`` a batch read is for (None: unbounded)."""

    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class MaterializationContext(FilterContext):
    """What a batch feature view's ``context`` argument receives: the range being materialized
    (widened by the view's longest window for aggregations) and the view's ``batch_schedule``."""

    batch_schedule: timedelta = timedelta(days=1)


def materialization_context() -> MaterializationContext:
    """Tecton's marker default: ``def view(source, context=materialization_context())``.

    featurebus replaces it with the real range when it runs the transformation."""
    return MaterializationContext()
