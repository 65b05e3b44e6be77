"""Testing feature definitions from Python without ``apply``, as Tecton's unit tests do.

    transaction_amount_is_high.run_transformation(input_data={"transaction_request": {"amt": 110}})
    transaction_amount_is_high.get_features_for_events(input_df).to_pandas()
    user_spend.get_features_for_events(spine, mock_inputs={"transactions": transactions_df})

Nothing here computes features itself. Definitions are compiled into a workspace spec (as
``plan`` does) and run through the code serving and training sets run: ``CompiledRealtimeView``
for realtime views whose upstream features the caller mocks as ``<view>__<feature>`` columns,
and the offline store's point-in-time join (``platform.training``) for everything else. A mock
input replaces its source's data: the frame is written to a temporary Parquet file that becomes
the source's history (``batch_config``), so filters, ``select_range``, transformations and
windows all apply to it exactly as to a real source; sources left unmocked read their own files.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from featurebus.exceptions import DefinitionError, InvalidRequestError
from featurebus.frames import TectonDataFrame
from featurebus.schemas.kinds import FileFormat, RealtimeInputKind, RealtimeMode
from featurebus.schemas.specs import (
    BatchSourceSpec,
    FileConfigSpec,
    RealtimeFeatureViewSpec,
    StreamSourceSpec,
    WorkspaceSpec,
)
from featurebus.streams.realtime import RealtimeContext as _EngineRealtimeContext

__all__ = [
    "MockContext",
    "RealtimeContext",
    "features_for_events",
    "realtime_features_for_events",
    "run_realtime_transformation",
    "run_view_transformation",
]

_LOCAL_WORKSPACE = "local"


class RealtimeContext(_EngineRealtimeContext):
    """Tecton's ``RealtimeContext`` as tests build it: ``RealtimeContext(request_timestamp=...)``
    for python mode, ``RealtimeContext(request_timestamp_series=...)`` for pandas mode."""

    def __init__(
        self,
        request_timestamp: datetime | None = None,
        request_timestamp_series: pd.Series | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        mode = RealtimeMode.PANDAS if request_timestamp_series is not None else RealtimeMode.PYTHON
        super().__init__(mode, request_timestamp, request_timestamp_series)
        self._secrets = dict(secrets or {})

    @property
    def secrets(self) -> Mapping[str, str]:
        return self._secrets


class MockContext:
    """Tecton's ``MockContext``: the secrets and resources a transformation under test receives
    as its ``context``. featurebus has no secret store, so outside tests a context has none."""

    def __init__(self, secrets: Mapping[str, str] | None = None, resources: Mapping[str, Any] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.resources = dict(resources or {})


# -- compiling the definitions under test -------------------------------------------------------------
def _compile(obj: Any) -> WorkspaceSpec:
    from featurebus.compile import compile_workspace

    return compile_workspace(_LOCAL_WORKSPACE, [obj])


def _timestamp_of(frame: pd.DataFrame) -> str | None:
    stamps = [str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    return stamps[0] if len(stamps) == 1 else None


def with_mock_inputs(spec: WorkspaceSpec, mock_inputs: Mapping[str, pd.DataFrame], folder: Path) -> WorkspaceSpec:
    """``spec`` with each mocked source reading its frame (written to ``folder``) as its files."""
    known = {s.name for s in spec.stream_sources} | {s.name for s in spec.batch_sources}
    unknown = sorted(set(mock_inputs) - known)
    if unknown:
        raise InvalidRequestError(
            f"mock_inputs names {unknown}, which the definitions do not read; their sources are {sorted(known)}"
        )
    paths: dict[str, str] = {}
    for name, frame in mock_inputs.items():
        if not isinstance(frame, pd.DataFrame):
            raise InvalidRequestError(f"mock_inputs[{name!r}] must be a pandas DataFrame, got {type(frame).__name__}")
        path = folder / f"{name}.parquet"
        frame.reset_index(drop=True).to_parquet(path, index=False)
        paths[name] = str(path)

    def stream(source: StreamSourceSpec) -> StreamSourceSpec:
        if source.name not in paths:
            return source
        config = FileConfigSpec(paths[source.name], FileFormat.PARQUET, source.kafka.timestamp_field)
        return dataclasses.replace(source, batch_config=config)

    def batch(source: BatchSourceSpec) -> BatchSourceSpec:
        if source.name not in paths:
            return source
        declared = source.batch_config.timestamp_field if source.batch_config is not None else None
        config = FileConfigSpec(
            paths[source.name], FileFormat.PARQUET, declared or _timestamp_of(mock_inputs[source.name])
        )
        return dataclasses.replace(source, batch_config=config, custom_config=None)

    return dataclasses.replace(
        spec,
        stream_sources=tuple(stream(s) for s in spec.stream_sources),
        batch_sources=tuple(batch(s) for s in spec.batch_sources),
    )


def _single_source_inputs(
    view: Any, given: pd.DataFrame | Mapping[str, pd.DataFrame] | None
) -> dict[str, pd.DataFrame]:
    if given is None:
        return {}
    if isinstance(given, pd.DataFrame):
        from featurebus.data_sources import plain_source
        from featurebus.definitions import BatchFeatureView, StreamFeatureView

        if not isinstance(view, StreamFeatureView | BatchFeatureView):
            raise InvalidRequestError(
                f"{view!r} reads no source directly; pass mock_inputs={{source name: "
                "DataFrame}} naming the sources of the views it reads"
            )
        sources = [plain_source(s) for s in view.sources] if isinstance(view, BatchFeatureView) else [view.source]
        if len(sources) != 1:
            raise InvalidRequestError(
                f"{view!r} reads {len(sources)} sources; pass mock_inputs={{source name: DataFrame}}}} naming each"
            )
        return {sources[0].name: given}
    return dict(given)


# -- stream, batch and feature service values over mock sources ------------------------------------------
def features_for_events(
    obj: Any,
    events: pd.DataFrame,
    timestamp_key: str | None = None,
    mock_inputs: Mapping[str, pd.DataFrame] | None = None,
) -> TectonDataFrame:
    """Point-in-time feature values of a view or feature service for every row of ``events``,
    through the training-set code over the mocked (or the sources' own) files."""
    from featurebus.definitions import FeatureService
    from featurebus.platform.offline.store import open_store
    from featurebus.platform.training.ranges import view_service
    from featurebus.platform.training.training_sets import get_features_for_events

    if not isinstance(events, pd.DataFrame):
        raise InvalidRequestError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    spec = _compile(obj)
    with tempfile.TemporaryDirectory(prefix="featurebus-local-") as tmp:
        folder = Path(tmp)
        spec = with_mock_inputs(
            spec,
            _single_source_inputs(obj, mock_inputs) if not isinstance(obj, FeatureService) else dict(mock_inputs or {}),
            folder,
        )
        root = open_store(folder / "offline", create=True)
        service = obj.name
        if not isinstance(obj, FeatureService):
            spec, service = view_service(spec, obj.name)
        return TectonDataFrame(get_features_for_events(spec, service, events, root, timestamp_key))


def run_view_transformation(
    view: Any,
    start_time: datetime | pd.DataFrame | None,
    end_time: datetime | None,
    mock_inputs: Mapping[str, pd.DataFrame] | pd.DataFrame | None,
) -> TectonDataFrame:
    """A stream or batch view's transformation output (no aggregation) for source rows in
    ``[start_time, end_time)``; a DataFrame as ``start_time`` is the only source's rows, unbounded."""
    from featurebus.definitions import BatchFeatureView, StreamFeatureView

    if isinstance(start_time, pd.DataFrame):
        if mock_inputs is not None or end_time is not None:
            raise InvalidRequestError("pass either a DataFrame, or start_time, end_time and mock_inputs")
        mock_inputs, start_time = start_time, None
    inputs = _single_source_inputs(view, mock_inputs)
    lo, hi = _ms(start_time, "start_time"), _ms(end_time, "end_time")
    if lo is not None and hi is not None and hi <= lo:
        raise InvalidRequestError(f"end_time ({end_time}) must be after start_time ({start_time})")
    if isinstance(view, StreamFeatureView):
        return TectonDataFrame(_run_stream(view, inputs, lo, hi))
    if isinstance(view, BatchFeatureView):
        return TectonDataFrame(_run_batch(view, inputs, lo, hi))
    raise InvalidRequestError(f"{view!r} has no source transformation to run")


def _ms(value: datetime | None, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidRequestError(f"{what} must be a datetime, got {value!r}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _run_stream(view: Any, inputs: dict[str, pd.DataFrame], lo: int | None, hi: int | None) -> pd.DataFrame:
    from featurebus.platform.batch.compute import table_frame
    from featurebus.platform.batch.sources import read_stream_history
    from featurebus.streams.transform import Transformation

    spec = _compile(view)
    view_spec = spec.view(view.name)
    with tempfile.TemporaryDirectory(prefix="featurebus-local-") as tmp:
        source = with_mock_inputs(spec, inputs, Path(tmp)).source(view_spec.source)
        if source.batch_config is None:
            raise InvalidRequestError(
                f"stream feature view {view.name!r}: pass mock_inputs={{{source.name!r}: "
                "DataFrame}} (its source has no batch_config files to read)"
            )
        frame = table_frame(read_stream_history(source, lo, hi))
    return Transformation(view_spec.transformation).apply(frame)


def _run_batch(view: Any, inputs: dict[str, pd.DataFrame], lo: int | None, hi: int | None) -> pd.DataFrame:
    from featurebus.platform.batch.compute import BatchTransformation, source_range
    from featurebus.platform.batch.inputs import read_inputs
    from featurebus.platform.batch.sources import ms_to_datetime
    from featurebus.schemas.batch_context import MaterializationContext

    spec = _compile(view)
    view_spec = spec.batch_view(view.name)
    schedule = timedelta(milliseconds=view_spec.batch_schedule_ms)
    with tempfile.TemporaryDirectory(prefix="featurebus-local-") as tmp:
        mocked = with_mock_inputs(spec, inputs, Path(tmp))
        if lo is None or hi is None:
            # No range: every row of the inputs (an unfiltered read), and an unbounded context.
            everything = dataclasses.replace(view_spec, unfiltered_sources=view_spec.sources, source_ranges=())
            return BatchTransformation(view_spec).apply(
                read_inputs(mocked, everything, 0, 1), MaterializationContext(batch_schedule=schedule)
            )
        read_lo, read_hi = source_range(view_spec, lo, hi)
        frames = read_inputs(mocked, view_spec, read_lo, read_hi, (lo, hi))
    context = MaterializationContext(ms_to_datetime(read_lo), ms_to_datetime(read_hi), schedule)
    output = BatchTransformation(view_spec).apply(frames, context)
    stamp = view_spec.timestamp_field
    if stamp not in output.columns:
        return output
    # As materialization does, keep the output rows of [start_time, end_time) by feature time.
    times = pd.to_datetime(output[stamp], utc=True)
    keep = (times >= pd.Timestamp(lo, unit="ms", tz="UTC")) & (times < pd.Timestamp(hi, unit="ms", tz="UTC"))
    return output.loc[keep].reset_index(drop=True)


# -- realtime views -----------------------------------------------------------------------------------
def _realtime_spec(view: Any) -> RealtimeFeatureViewSpec:
    return _compile(view).realtime_view(view.name)


def _input_value(input_data: Mapping[str, Any], parameter: str, source: str, view: str) -> Any:
    for key in (parameter, source):
        if key and key in input_data:
            return input_data[key]
    raise InvalidRequestError(
        f"realtime feature view {view!r}: input_data lacks {source!r} (the function's "
        f"parameter {parameter!r}); it has {sorted(input_data)}"
    )


def _request_time(context: Any) -> datetime:
    if isinstance(context, _EngineRealtimeContext):
        try:
            stamp = context.request_timestamp
        except ValueError:
            stamp = None
        if stamp is not None:
            return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    return datetime.now(UTC)


def run_realtime_transformation(view: Any, input_data: Mapping[str, Any]) -> Any:
    """The view's function run on ``input_data`` (keys: the function's parameter names or the
    sources' names; values: dicts in python mode, DataFrames or dicts in pandas mode; an optional
    ``"context"``: a RealtimeContext or MockContext); Calculations are evaluated as served."""
    from featurebus.streams.realtime import CompiledRealtimeView

    if not isinstance(input_data, Mapping):
        raise InvalidRequestError(f"input_data must be a dict of the view's inputs, got {type(input_data).__name__}")
    spec = _realtime_spec(view)
    context = input_data.get(spec.context_parameter or "context")
    if spec.transformation is None:  # Calculations: the serving evaluator, one row
        inputs = {s.key: dict(_input_value(input_data, s.parameter, s.key, spec.name)) for s in spec.inputs}
        return CompiledRealtimeView(spec).evaluate_row(inputs, _request_time(context))
    kwargs: dict[str, Any] = {}
    for source in spec.inputs:
        value = _input_value(input_data, source.parameter, source.key, spec.name)
        if spec.mode == RealtimeMode.PANDAS and isinstance(value, Mapping):
            value = pd.DataFrame([dict(value)])
        kwargs[source.parameter] = value
    if spec.context_parameter:
        if context is None:
            context = (
                RealtimeContext(request_timestamp=datetime.now(UTC))
                if spec.mode == RealtimeMode.PYTHON
                else RealtimeContext(request_timestamp_series=pd.Series([pd.Timestamp.now(tz="UTC")]))
            )
        kwargs[spec.context_parameter] = context
    result = view.function(**kwargs)
    expected = [f.name for f in spec.features]
    if spec.mode == RealtimeMode.PYTHON and (not isinstance(result, Mapping) or sorted(result) != sorted(expected)):
        raise DefinitionError(
            f"realtime feature view {spec.name!r} ({view.site}) returned {result!r}; a python-mode "
            f"view returns a dict with exactly its features {expected}"
        )
    return result


def realtime_features_for_events(
    view: Any,
    events: pd.DataFrame,
    timestamp_key: str | None = None,
    mock_inputs: Mapping[str, pd.DataFrame] | None = None,
) -> TectonDataFrame:
    """``events`` plus ``<view>__<feature>`` columns. Request fields are columns of their own
    name; upstream features are mocked as ``<upstream view or its with_name>__<feature>`` columns. Without those
    mocks, the upstream views are computed point-in-time from their sources (``mock_inputs``)."""
    from featurebus.platform.training.training_sets import feature_column
    from featurebus.streams.realtime import CompiledRealtimeView

    if not isinstance(events, pd.DataFrame):
        raise InvalidRequestError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    spec = _realtime_spec(view)
    # An upstream view counts as mocked when any of its feature columns is given (the others are
    # then null, as a test mocking only the features it reads expects).
    upstream = [(s.key, f.name) for s in spec.inputs if s.kind == RealtimeInputKind.FEATURE_VIEW for f in s.fields]
    mocked = {v for v, f in upstream if feature_column(v, f) in events.columns}
    if mocked != {v for v, _ in upstream}:
        if mock_inputs is None or mocked:
            missing = [feature_column(v, f) for v, f in upstream if v not in mocked]
            raise InvalidRequestError(
                f"realtime feature view {spec.name!r}: events lack the mocked upstream feature "
                f"columns {missing}; add them, or pass mock_inputs={{source name: DataFrame}} "
                "(and no mocked columns) to compute them from the upstream views' sources"
            )
        return features_for_events(view, events, timestamp_key, mock_inputs)
    request = {f.name for s in spec.inputs if s.kind == RealtimeInputKind.REQUEST for f in s.fields}
    missing_request = sorted(request - {str(c) for c in events.columns})
    if missing_request:
        raise InvalidRequestError(
            f"realtime feature view {spec.name!r}: events lack request column(s) "
            f"{missing_request}; it has {list(events.columns)}"
        )
    index = pd.RangeIndex(len(events))
    inputs = {}
    for source in spec.inputs:
        columns = {}
        for f in source.fields:
            name = f.name if source.kind == RealtimeInputKind.REQUEST else feature_column(source.key, f.name)
            columns[f.name] = (
                events[name].reset_index(drop=True)
                if name in events.columns
                else pd.Series([None] * len(events), index=index, dtype=object)
            )
        inputs[source.key] = pd.DataFrame(columns, index=index)
    stamp = timestamp_key or _timestamp_of(events)
    times = (
        pd.to_datetime(events[stamp], utc=True).reset_index(drop=True)
        if stamp is not None
        else pd.Series([pd.Timestamp.now(tz="UTC")] * len(events), index=index)
    )
    values = CompiledRealtimeView(spec).evaluate_frame(inputs, times.rename("request_timestamp"))
    result = events.copy()
    for feature in spec.features:
        column = values[feature.name]
        result[feature_column(spec.name, feature.name)] = (
            _plain_dtype(column).to_numpy() if len(result) else column.array
        )
    return TectonDataFrame(result)


def _plain_dtype(column: pd.Series) -> pd.Series:
    """A nullable column without nulls as its NumPy dtype (what a pandas user's expected frame has)."""
    if column.isna().any() or not isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
        return column
    numpy_dtype = getattr(column.dtype, "numpy_dtype", None)
    return column.astype(numpy_dtype) if numpy_dtype is not None else column
