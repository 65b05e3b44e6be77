"""Running realtime feature views: one request (serving) or one column per feature (training sets).

Both paths start from the same ``RealtimeFeatureViewSpec`` and the same compiled code, and both
normalise what a view returns with the same rules (``_python_value``), which is why a realtime
feature served online equals the one in a training set for the same inputs:

- Calculations: ``row_evaluator`` per request, ``column_evaluator`` over a spine;
- mode "python": the function gets one dict per source (features or request fields by their own
  names, nulls as None) per request, and per spine row offline — as Tecton runs it;
- mode "pandas": one DataFrame per source (one row online, the spine offline).

A parameter named as the view's ``context_parameter`` receives a ``RealtimeContext``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from featurebus.schemas.errors import DefinitionError, FeaturebusError
from featurebus.schemas.kinds import RealtimeInputKind, RealtimeMode
from featurebus.schemas.specs import (
    FeatureSelectionSpec,
    FeatureServiceSpec,
    FieldSpec,
    RealtimeFeatureViewSpec,
    StreamFeatureViewSpec,
    WorkspaceSpec,
)
from featurebus.streams.calculation import parse_calculation, referenced_columns
from featurebus.streams.calculation_eval import (
    column_evaluator,
    column_from_series,
    row_evaluator,
    series_from_column,
)
from featurebus.streams.transform import Transformation

__all__ = [
    "CONTEXT_TIMESTAMP",
    "CompiledRealtimeView",
    "DependencyCycleError",
    "check_realtime_views",
    "RealtimeContext",
    "RealtimeEvaluationError",
    "RealtimeServicePlan",
    "calculation_schema",
    "feature_fields",
    "realtime_order",
]

CONTEXT_TIMESTAMP = "context.request_timestamp"
_NS = 1_000_000_000


class RealtimeEvaluationError(FeaturebusError):
    """A realtime view's code raised, or returned something that does not match its features."""


class DependencyCycleError(DefinitionError):
    """Realtime views that read each other in a cycle; ``cycle`` lists them, first one repeated."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(
            f"realtime feature views depend on each other in a cycle: {' -> '.join(cycle)}; remove one of these sources"
        )
        self.cycle = cycle


class RealtimeContext:
    """What Tecton passes as ``context``: the request time (python mode) or one per row (pandas)."""

    def __init__(
        self,
        mode: RealtimeMode,
        request_timestamp: datetime | None = None,
        request_timestamp_series: pd.Series | None = None,
    ) -> None:
        self._mode = mode
        self._timestamp = request_timestamp
        self._series = request_timestamp_series

    @property
    def request_timestamp(self) -> datetime | None:
        if self._mode == RealtimeMode.PANDAS:
            raise ValueError(
                "The field `request_timestamp` is not available in Realtime Feature Views with Pandas "
                "mode. Please use `context.request_timestamp_series` when using Pandas mode."
            )
        return self._timestamp

    @property
    def request_timestamp_series(self) -> pd.Series | None:
        if self._mode != RealtimeMode.PANDAS:
            raise ValueError(
                "The field `request_timestamp_series` is only available in Realtime Feature Views with "
                "Pandas mode. Please use `context.request_timestamp` when using Python mode."
            )
        return self._series

    @property
    def secrets(self) -> Mapping[str, str]:
        return {}


# -- the dependency graph -----------------------------------------------------------------------
def feature_fields(view: StreamFeatureViewSpec | RealtimeFeatureViewSpec) -> tuple[FieldSpec, ...]:
    """Every feature a view offers to realtime views, with its dtype."""
    if isinstance(view, RealtimeFeatureViewSpec):
        return view.features
    return tuple(FieldSpec(a.name, a.output_dtype) for a in view.aggregations)


def calculation_schema(view: RealtimeFeatureViewSpec) -> dict[str, str]:
    """Column references a Calculation of ``view`` may use, as Tecton names them."""
    schema = {CONTEXT_TIMESTAMP: "timestamp"}
    for source in view.inputs:
        schema.update({f"{source.key}.{f.name}": f.dtype for f in source.fields})
    return schema


def realtime_order(dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    """Realtime views so that each comes after the realtime views it reads.

    ``dependencies`` maps each realtime view to the names it reads (names that are not keys are
    other kinds of views). A cycle raises ``DefinitionError`` listing it.
    """
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise DependencyCycleError([*path[path.index(name) :], name])
        state[name] = "visiting"
        for upstream in dependencies[name]:
            if upstream in dependencies:
                visit(upstream, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in dependencies:
        visit(name, [])
    return order


def check_realtime_views(spec: WorkspaceSpec) -> None:
    """Every source of every realtime view exists with the features it reads; no cycles."""
    views: dict[str, StreamFeatureViewSpec | RealtimeFeatureViewSpec] = {v.name: v for v in spec.stream_feature_views}
    views.update({v.name: v.as_view_spec() for v in spec.batch_feature_views})  # read from their tiles too
    views.update({v.name: v for v in spec.realtime_feature_views})
    for view in spec.realtime_feature_views:
        for source in view.inputs:
            if source.kind != RealtimeInputKind.FEATURE_VIEW:
                continue
            upstream = views.get(source.name)
            if upstream is None:
                raise DefinitionError(
                    f"realtime feature view {view.name!r} reads view {source.name!r}, which the "
                    "workspace does not define; add it to the repository"
                )
            offered = {f.name: f.dtype for f in feature_fields(upstream)}
            for f in source.fields:
                if offered.get(f.name) != f.dtype:
                    raise DefinitionError(
                        f"realtime feature view {view.name!r} reads {source.name}.{f.name} "
                        f"({f.dtype}), which {source.name!r} does not offer; re-apply the repository"
                    )
    realtime_order(
        {
            v.name: [s.name for s in v.inputs if s.kind == RealtimeInputKind.FEATURE_VIEW]
            for v in spec.realtime_feature_views
        }
    )


@dataclass(frozen=True)
class RealtimeServicePlan:
    """How a feature service with realtime views is computed, online and offline alike: fetch
    ``fetch`` (the stream features it serves and those its realtime views read), run ``views`` in
    order, and serve ``outputs``."""

    name: str
    fetch: FeatureServiceSpec
    views: tuple[CompiledRealtimeView, ...]  # each after the realtime views it reads
    request_fields: tuple[tuple[str, str], ...]  # (name, dtype) every request must provide
    # Per served feature: ("fetched", index into the fetched features) or ("realtime", view,
    # feature, namespace).
    outputs: tuple[tuple[Any, ...], ...]
    output_dtypes: tuple[str, ...]

    @classmethod
    def build(cls, spec: WorkspaceSpec, service: FeatureServiceSpec) -> RealtimeServicePlan:
        """Raises DefinitionError (or NotFoundError) when the service cannot be computed."""
        check_realtime_views(spec)
        needed: dict[str, None] = {}
        pending = [s.view for s in service.selections if spec.is_realtime(s.view)]
        while pending:
            name = pending.pop()
            if name not in needed:
                needed[name] = None
                pending.extend(
                    s.name
                    for s in spec.realtime_view(name).inputs
                    if s.kind == RealtimeInputKind.FEATURE_VIEW and spec.is_realtime(s.name)
                )
        order = realtime_order({n: [s.name for s in spec.realtime_view(n).inputs] for n in needed})
        views = tuple(CompiledRealtimeView(spec.realtime_view(n)) for n in order)
        # namespace -> (the selection fetched under it, its features in first-use order): a view
        # joined twice through with_join_key_map is fetched twice, under two namespaces.
        fetched: dict[str, tuple[FeatureSelectionSpec, dict[str, None]]] = {}

        def fetch_under(selection: FeatureSelectionSpec) -> None:
            base, features = fetched.setdefault(selection.namespace, (selection, {}))
            if (base.view, base.join_key_map) != (selection.view, selection.join_key_map):
                raise DefinitionError(
                    f"feature service {service.name!r} reads two different references under the name "
                    f"{selection.namespace!r} ({base.view} {dict(base.join_key_map)} and {selection.view} "
                    f"{dict(selection.join_key_map)}); give one of them another name with .with_name('...')"
                )
            features.update(dict.fromkeys(selection.features))

        for selection in service.selections:
            if not spec.is_realtime(selection.view):
                fetch_under(selection)
        request_fields: dict[str, str] = {}
        for view in views:
            for source in view.spec.inputs:
                if source.kind == RealtimeInputKind.FEATURE_VIEW and not spec.is_realtime(source.name):
                    fetch_under(source.as_selection())
                elif source.kind == RealtimeInputKind.REQUEST:
                    for f in source.fields:
                        if request_fields.setdefault(f.name, f.dtype) != f.dtype:
                            raise DefinitionError(
                                f"request field {f.name!r} is {request_fields[f.name]} in one "
                                f"request source and {f.dtype} in another; give them one type"
                            )
        position = {key: i for i, key in enumerate((n, f) for n, (_, fs) in fetched.items() for f in fs)}
        outputs: list[tuple[Any, ...]] = []
        dtypes: list[str] = []
        for selection in service.selections:
            if spec.is_realtime(selection.view):
                offered = {f.name: f.dtype for f in spec.realtime_view(selection.view).features}
                outputs.extend(("realtime", selection.view, f, selection.namespace) for f in selection.features)
            else:
                offered = {f.name: f.dtype for f in feature_fields(spec.tiled_view(selection.view))}
                outputs.extend(("fetched", position[(selection.namespace, f)]) for f in selection.features)
            dtypes.extend(offered[f] for f in selection.features)
        fetch = FeatureServiceSpec(
            service.name,
            tuple(dataclasses.replace(base, features=tuple(fs)) for base, fs in fetched.values()),
        )
        return cls(service.name, fetch, views, tuple(request_fields.items()), tuple(outputs), tuple(dtypes))


# -- evaluation -----------------------------------------------------------------------------------
class CompiledRealtimeView:
    """A realtime view's code compiled once (per serving plan or training set)."""

    def __init__(self, spec: RealtimeFeatureViewSpec) -> None:
        self.spec = spec
        self._dtypes = {f.name: f.dtype for f in spec.features}
        self._function: Callable[..., Any] | None = None
        if spec.transformation is not None:
            self._function = Transformation(spec.transformation).function
        schema = calculation_schema(spec)
        self._calculations = []
        for calc in spec.calculations:
            node = parse_calculation(calc.expr, schema)
            self._calculations.append((calc.name, node, row_evaluator(node), column_evaluator(node)))
        self._uses_time = any(CONTEXT_TIMESTAMP in referenced_columns(c[1]) for c in self._calculations)

    # one request -----------------------------------------------------------------------------
    def evaluate_row(self, inputs: Mapping[str, Mapping[str, Any]], request_time: datetime) -> dict[str, Any]:
        """Feature values for one request. ``inputs`` maps each source name to its values (Python
        scalars, None for null, timestamps as aware datetimes); results use the same forms."""
        spec = self.spec
        if self._calculations:
            # Reading the request time costs a conversion; only views that use it pay for it.
            flat: dict[str, Any] = {CONTEXT_TIMESTAMP: _ns(request_time) if self._uses_time else None}
            for source in spec.inputs:
                values = inputs[source.key]
                for f in source.fields:
                    value = values.get(f.name)
                    flat[f"{source.key}.{f.name}"] = (
                        _ns(value) if f.dtype == "timestamp" and value is not None else value
                    )
            out = {}
            for name, node, evaluate, _ in self._calculations:
                value = evaluate(flat)
                out[name] = _from_ns(value) if node.dtype == "timestamp" and value is not None else value
            return out
        assert self._function is not None
        if spec.mode == RealtimeMode.PYTHON:
            # Exactly the source's fields, as offline: a fetched row may hold features of other views.
            kwargs: dict[str, Any] = {
                s.parameter: {f.name: inputs[s.key].get(f.name) for f in s.fields} for s in spec.inputs
            }
            if spec.context_parameter:
                kwargs[spec.context_parameter] = RealtimeContext(RealtimeMode.PYTHON, request_timestamp=request_time)
            return self._check_row(self._call(kwargs))
        frames = {s.key: _frame([dict(inputs[s.key])], s.fields) for s in spec.inputs}
        result = self._call_pandas(frames, pd.Series([pd.Timestamp(request_time)], name="request_timestamp"), 1)
        return {name: self._typed(name, result[name].iloc[0], dtype) for name, dtype in self._dtypes.items()}

    # many rows --------------------------------------------------------------------------------
    def evaluate_frame(self, inputs: Mapping[str, pd.DataFrame], request_times: pd.Series) -> pd.DataFrame:
        """Feature columns for every row: ``inputs`` maps source names to frames whose columns are
        the source's features/fields; ``request_times`` holds each row's time (UTC)."""
        rows = len(request_times)
        index = pd.RangeIndex(rows)
        spec = self.spec
        if self._calculations:
            columns = {CONTEXT_TIMESTAMP: column_from_series(request_times.reset_index(drop=True), "timestamp")}
            for source in spec.inputs:
                for f in source.fields:
                    columns[f"{source.key}.{f.name}"] = column_from_series(
                        inputs[source.key][f.name].reset_index(drop=True), f.dtype
                    )
            out = {
                name: series_from_column(evaluate(columns, rows), node.dtype, index)
                for name, node, _, evaluate in self._calculations
            }
            return pd.DataFrame(out, index=index)
        if spec.mode == RealtimeMode.PANDAS:
            frames = {s.key: inputs[s.key][[f.name for f in s.fields]].reset_index(drop=True) for s in spec.inputs}
            result = self._call_pandas(frames, request_times.reset_index(drop=True).rename("request_timestamp"), rows)
            return pd.DataFrame(
                {n: _canonical_series([self._typed(n, v, d) for v in result[n]], d) for n, d in self._dtypes.items()},
                index=index,
            )
        records = {s.key: _records(inputs[s.key], s.fields) for s in spec.inputs}
        times = [t.to_pydatetime() for t in pd.to_datetime(request_times, utc=True)]
        out_rows = []
        for i in range(rows):
            kwargs: dict[str, Any] = {s.parameter: records[s.key][i] for s in spec.inputs}
            if spec.context_parameter:
                kwargs[spec.context_parameter] = RealtimeContext(RealtimeMode.PYTHON, request_timestamp=times[i])
            out_rows.append(self._check_row(self._call(kwargs)))
        return pd.DataFrame(
            {n: _canonical_series([r[n] for r in out_rows], d) for n, d in self._dtypes.items()}, index=index
        )

    # helpers ----------------------------------------------------------------------------------
    def _call(self, kwargs: dict[str, Any]) -> Any:
        assert self._function is not None
        try:
            return self._function(**kwargs)
        except Exception as exc:
            raise RealtimeEvaluationError(
                f"realtime feature view {self.spec.name!r} raised {type(exc).__name__}: {exc}"
            ) from exc

    def _call_pandas(self, frames: dict[str, pd.DataFrame], times: pd.Series, rows: int) -> pd.DataFrame:
        kwargs: dict[str, Any] = {s.parameter: frames[s.key] for s in self.spec.inputs}
        if self.spec.context_parameter:
            kwargs[self.spec.context_parameter] = RealtimeContext(RealtimeMode.PANDAS, request_timestamp_series=times)
        result = self._call(kwargs)
        if not isinstance(result, pd.DataFrame):
            raise self._bad_output(f"returned {type(result).__name__}; a pandas-mode view returns a DataFrame")
        missing = [n for n in self._dtypes if n not in result.columns]
        if missing:
            raise self._bad_output(f"returned no column(s) {missing} (it returned {list(result.columns)})")
        if len(result) != rows:
            raise self._bad_output(f"returned {len(result)} rows for {rows} input rows; return one row per input row")
        return result.reset_index(drop=True)

    def _check_row(self, result: Any) -> dict[str, Any]:
        if not isinstance(result, Mapping):
            raise self._bad_output(f"returned {type(result).__name__}; a python-mode view returns a dict")
        missing = [n for n in self._dtypes if n not in result]
        extra = [n for n in result if n not in self._dtypes]
        if missing or extra:
            raise self._bad_output(f"returned keys {sorted(result)}, but its features are {sorted(self._dtypes)}")
        return {name: self._typed(name, result[name], dtype) for name, dtype in self._dtypes.items()}

    def _typed(self, name: str, value: Any, dtype: str) -> Any:
        try:
            return _python_value(value, dtype)
        except (TypeError, ValueError):
            shown = value.item() if isinstance(value, np.generic) else value
            raise self._bad_output(f"returned {shown!r} for feature {name!r}, which is declared {dtype}") from None

    def _bad_output(self, problem: str) -> RealtimeEvaluationError:
        return RealtimeEvaluationError(f"realtime feature view {self.spec.name!r} {problem}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ns(value: Any) -> int:
    """Nanoseconds since the epoch of an aware datetime (pd.Timestamp keeps its nanoseconds)."""
    if isinstance(value, pd.Timestamp):
        return int(value.as_unit("ns").value)
    micros: int = (value - _EPOCH) // _MICROSECOND
    return micros * 1000


def _from_ns(value: int) -> datetime:
    return pd.Timestamp(value, unit="ns", tz="UTC").to_pydatetime()


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _python_value(value: Any, dtype: str) -> Any:
    """``value`` as the plain Python value of ``dtype`` (None for null); TypeError when it is not one."""
    if _is_null(value):
        return None
    if dtype in ("int64", "int32"):
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)  # an integer column that held a null somewhere arrives as floats
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise TypeError(value)
        return int(value)
    if dtype in ("float64", "float32"):
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError(value)
        return float(value)
    if dtype == "bool":
        if not isinstance(value, bool | np.bool_):
            raise TypeError(value)
        return bool(value)
    if dtype == "string":
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if dtype == "timestamp":
        if not isinstance(value, datetime | np.datetime64):
            raise TypeError(value)
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).to_pydatetime()
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    raise TypeError(value)


_PANDAS_DTYPES = {"int64": "Int64", "int32": "Int32", "float64": "float64", "float32": "float32", "bool": "boolean"}


def _canonical_series(values: list[Any], dtype: str) -> pd.Series:
    """Python values (None for null) as the pandas column a training set holds for ``dtype``."""
    if dtype in _PANDAS_DTYPES:
        cleaned = [np.nan if v is None and dtype.startswith("float") else v for v in values]
        return pd.Series(cleaned, dtype=_PANDAS_DTYPES[dtype])
    if dtype == "timestamp":
        return pd.Series(pd.to_datetime(values, utc=True), dtype="datetime64[ns, UTC]")
    return pd.Series(values, dtype=object)


def _frame(rows: list[dict[str, Any]], fields: Sequence[FieldSpec]) -> pd.DataFrame:
    """Rows of Python values as a DataFrame typed like a training set's columns."""
    return pd.DataFrame({f.name: _canonical_series([r.get(f.name) for r in rows], f.dtype) for f in fields})


def _records(frame: pd.DataFrame, fields: Sequence[FieldSpec]) -> list[dict[str, Any]]:
    """A frame's rows as dicts of Python values, nulls as None (what python mode receives)."""
    columns = {f.name: [_python_value(v, f.dtype) for v in frame[f.name].tolist()] for f in fields}
    return [{name: values[i] for name, values in columns.items()} for i in range(len(frame))]
