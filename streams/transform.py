"""Running a view's row transformation over a micro-batch (stream) or a whole table (offline).

The function ships as source code in the spec (``TransformationSpec``); it is compiled once per
spec and applied to DataFrames, never event by event. The same code path serves the stream worker
and training sets, which is the other half of why online and offline agree.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from featurebus.exceptions import DefinitionError, FeaturebusError
from featurebus.schemas.specs import StreamFeatureViewSpec, TransformationSpec

__all__ = ["USER_CODE_GLOBALS", "Transformation", "TransformationError", "load_function", "view_input_frame"]


class TransformationError(FeaturebusError):
    """A user transformation raised or returned something unusable for a batch."""


# What shipped user code (transformations, batch config functions) finds without importing it.
USER_CODE_GLOBALS: dict[str, Any] = {"pd": pd, "np": np, "datetime": datetime, "timedelta": timedelta, "math": math}


def load_function(code: str | ast.Module, function_name: str, what: str, extra_globals: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Compile shipped source ``code`` (or its syntax tree) and return its function ``function_name``; ``what`` names
    it in errors ("transformation 'f'"). Never a pickle: the code is what the user wrote."""
    namespace = {**USER_CODE_GLOBALS, **(extra_globals or {})}
    try:
        exec(compile(code, f"<{what}>", "exec"), namespace)
    except Exception as exc:
        raise DefinitionError(f"{what} does not compile: {exc}") from exc
    function = namespace.get(function_name)
    if not callable(function):
        raise DefinitionError(f"{what}: the code does not define a function {function_name!r}")
    return function  # type: ignore[no-any-return]


class Transformation:
    def __init__(self, spec: TransformationSpec) -> None:
        self._function = load_function(spec.code, spec.function_name, f"transformation {spec.function_name!r}")
        self._mode = spec.mode
        self._name = spec.function_name

    @property
    def function(self) -> Callable[..., Any]:
        """The compiled user function itself (realtime views call it with their own arguments)."""
        return self._function

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        try:
            if self._mode == "pandas":
                result = self._function(frame)
            else:
                rows = [self._function(row) for row in frame.to_dict("records")]
                result = pd.DataFrame.from_records([r for r in rows if r is not None])
        except Exception as exc:
            raise TransformationError(f"transformation {self._name!r} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, pd.DataFrame):
            raise TransformationError(
                f"transformation {self._name!r} returned {type(result).__name__}; return a pandas DataFrame"
            )
        return result


def view_input_frame(view: StreamFeatureViewSpec, transformed: pd.DataFrame,
                     carry: tuple[str, ...] = ()) -> tuple[pd.DataFrame, np.ndarray]:
    """The columns a view aggregates (and the caller's ``carry`` columns), and event times in
    integer ms, checked for presence.

    Rows with a null join key or timestamp cannot belong to any entity or window; they are dropped
    here (the caller counts them) rather than failing the batch.
    """
    needed = [*view.join_keys, view.timestamp_field, *{a.input_column for a in view.aggregations}, *carry]
    missing = [c for c in dict.fromkeys(needed) if c not in transformed.columns]
    if missing:
        raise TransformationError(
            f"feature view {view.name!r}: the transformation's output lacks columns {missing}; "
            f"it returned {list(transformed.columns)}"
        )
    frame = transformed.loc[:, list(dict.fromkeys(needed))]
    valid = frame[[*view.join_keys, view.timestamp_field]].notna().all(axis=1)
    frame = frame.loc[valid].reset_index(drop=True)
    ts = frame[view.timestamp_field]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):  # decoded sources are already UTC datetimes
        ts = pd.to_datetime(ts, utc=True, cache=False)
    ts_ms: np.ndarray = ts.dt.tz_convert("UTC").dt.as_unit("ms").astype("int64").to_numpy()
    return frame, ts_ms
