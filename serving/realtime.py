"""The realtime part of a feature service's serving plan, built once per workspace spec.

A service that lists realtime views is served in two steps: the stream features it serves *and*
those its realtime views read are fetched unformatted by the ordinary path (``fetch``, a plain
``FeatureServiceSpec``), then each realtime view runs in dependency order on the request's
``requestContextMap`` and the fetched values, and the served features are put in the service's
order and Tecton's JSON forms (int64 as strings, timestamps as ISO-8601).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from featurebus.exceptions import DefinitionError, InvalidRequestError
from featurebus.schemas.specs import FeatureSelectionSpec, FeatureServiceSpec, WorkspaceSpec
from featurebus.streams.realtime import CompiledRealtimeView, check_realtime_views, realtime_order

__all__ = ["RealtimeServing", "parse_request_value"]

PRESENT = "PRESENT"
MISSING_DATA = "MISSING_DATA"


@dataclass
class RealtimeServing:
    name: str
    fetch: FeatureServiceSpec  # stream features to read, unformatted: served ones and realtime inputs
    views: tuple[CompiledRealtimeView, ...]  # realtime views to run, each after those it reads
    request_fields: tuple[tuple[str, str], ...]  # (name, dtype) the requestContextMap must provide
    # Per served feature: ("fetched", index into the fetched row) or ("realtime", view, feature).
    outputs: tuple[tuple[Any, ...], ...]
    output_dtypes: tuple[str, ...]
    fetch_plan: Any = field(default=None)  # the serving path's plan for ``fetch`` (set by FeatureServer)

    @classmethod
    def build(cls, spec: WorkspaceSpec, service: FeatureServiceSpec) -> RealtimeServing:
        """Raises DefinitionError (or NotFoundError) when the service cannot be served."""
        check_realtime_views(spec)
        needed: dict[str, None] = {}
        pending = [s.view for s in service.selections if spec.is_realtime(s.view)]
        while pending:
            name = pending.pop()
            if name not in needed:
                needed[name] = None
                pending.extend(s.name for s in spec.realtime_view(name).inputs
                               if s.kind == "feature_view" and spec.is_realtime(s.name))
        order = realtime_order({n: [s.name for s in spec.realtime_view(n).inputs] for n in needed})
        views = tuple(CompiledRealtimeView(spec.realtime_view(n)) for n in order)
        fetched: dict[str, dict[str, None]] = {}  # stream view -> features, in first-use order
        for selection in service.selections:
            if not spec.is_realtime(selection.view):
                fetched.setdefault(selection.view, {}).update(dict.fromkeys(selection.features))
        request_fields: dict[str, str] = {}
        for view in views:
            for source in view.spec.inputs:
                if source.kind == "feature_view" and not spec.is_realtime(source.name):
                    fetched.setdefault(source.name, {}).update(dict.fromkeys(f.name for f in source.fields))
                elif source.kind == "request":
                    for f in source.fields:
                        if request_fields.setdefault(f.name, f.dtype) != f.dtype:
                            raise DefinitionError(f"request field {f.name!r} is {request_fields[f.name]} in one "
                                                  f"request source and {f.dtype} in another; give them one type")
        position = {(view, f): i for i, (view, f) in enumerate((v, f) for v, fs in fetched.items() for f in fs)}
        outputs: list[tuple[Any, ...]] = []
        dtypes: list[str] = []
        for selection in service.selections:
            if spec.is_realtime(selection.view):
                offered = {f.name: f.dtype for f in spec.realtime_view(selection.view).features}
                outputs.extend(("realtime", selection.view, f) for f in selection.features)
                dtypes.extend(offered[f] for f in selection.features)
            else:
                aggregations = {a.name: a.output_dtype for a in spec.view(selection.view).aggregations}
                outputs.extend(("fetched", position[(selection.view, f)]) for f in selection.features)
                dtypes.extend(aggregations[f] for f in selection.features)
        fetch = FeatureServiceSpec(service.name, tuple(FeatureSelectionSpec(v, tuple(fs)) for v, fs in fetched.items()))
        return cls(service.name, fetch, views, tuple(request_fields.items()), tuple(outputs), tuple(dtypes))

    def row(
        self,
        fetched: tuple[list[Any], list[str], list[str]],
        request_context_map: Mapping[str, Any] | None,
        t_ms: int,
        with_times: bool,
    ) -> tuple[list[Any], list[str], list[str]]:
        """The served (features, statuses, effective times) from the fetched stream row."""
        values, statuses, times = fetched
        request = self._request_values(request_context_map)
        request_time = datetime.fromtimestamp(t_ms / 1000, UTC)
        by_view: dict[str, Mapping[str, Any]] = {}
        flat = iter(values)
        for selection in self.fetch.selections:
            by_view[selection.view] = {f: next(flat) for f in selection.features}
        for view in self.views:
            inputs = {s.name: request if s.kind == "request" else by_view[s.name] for s in view.spec.inputs}
            by_view[view.spec.name] = view.evaluate_row(inputs, request_time)
        features: list[Any] = []
        out_statuses: list[str] = []
        out_times: list[str] = []
        realtime_time = _iso(request_time) if with_times else ""  # computed at request time
        for output, dtype in zip(self.outputs, self.output_dtypes, strict=True):
            if output[0] == "fetched":
                value, status = values[output[1]], statuses[output[1]]
                out_times.append(times[output[1]] if with_times else "")
            else:
                value = by_view[output[1]][output[2]]
                status = MISSING_DATA if value is None else PRESENT
                out_times.append(realtime_time)
            features.append(_json_value(value, dtype))
            out_statuses.append(status)
        return features, out_statuses, out_times if with_times else []

    def _request_values(self, request_context_map: Mapping[str, Any] | None) -> dict[str, Any]:
        if not self.request_fields:
            return {}
        if not isinstance(request_context_map, Mapping):
            required = ", ".join(n for n, _ in self.request_fields)
            raise InvalidRequestError(f"requestContextMap is required by feature service {self.name!r}; "
                                      f"it needs: {required}")
        values = {}
        for name, dtype in self.request_fields:
            if name not in request_context_map:
                required = ", ".join(n for n, _ in self.request_fields)
                raise InvalidRequestError(f"requestContextMap is missing {name!r}; feature service {self.name!r} "
                                          f"requires: {required}")
            values[name] = parse_request_value(name, request_context_map[name], dtype)
        return values


def parse_request_value(name: str, value: Any, dtype: str) -> Any:
    """A JSON request value as the Python value of ``dtype``; InvalidRequestError naming ``name``."""
    if value is None:
        return None
    if dtype in ("int64", "int32"):
        if isinstance(value, str):  # Tecton clients send int64 as strings (JSON numbers lose precision)
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
    elif dtype in ("float64", "float32"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif dtype == "bool":
        if isinstance(value, bool):
            return value
    elif dtype == "string":
        if isinstance(value, str):
            return value
    elif dtype == "timestamp":
        if isinstance(value, str):
            try:
                stamp = pd.Timestamp(value)
            except ValueError:
                pass
            else:
                return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).to_pydatetime()
    elif isinstance(value, list):
        return value
    raise InvalidRequestError(f"requestContextMap.{name} must be a {dtype} value, got {value!r}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_value(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "int64":
        return str(value)
    if dtype == "timestamp" and isinstance(value, datetime):
        return _iso(value)
    return value
