"""The realtime part of a feature service's serving plan, built once per workspace spec.

A service that lists realtime views is served in two steps: the stream features it serves *and*
those its realtime views read are fetched unformatted by the ordinary path (``fetch``, a plain
``FeatureServiceSpec``), then each realtime view runs in dependency order on the request's
``requestContextMap`` and the fetched values, and the served features are put in the service's
order and Tecton's JSON forms (int64 as strings, timestamps as ISO-8601).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.kinds import RealtimeInputKind
from featurebus.schemas.specs import FeatureServiceSpec
from featurebus.schemas.time import format_iso_ms, from_epoch_ms, to_epoch_ms
from featurebus.serving.wire import MISSING_DATA, PRESENT
from featurebus.streams.realtime import RealtimeServicePlan

if TYPE_CHECKING:  # plan.py builds this step (with its fetch plan) and holds it
    from featurebus.serving.plan import ServicePlan

__all__ = ["RealtimeServing", "parse_request_value"]


@dataclass(frozen=True)
class RealtimeServing:
    """Built complete by ``plan.py``: the realtime views and the plan that fetches their inputs."""

    plan: RealtimeServicePlan
    fetch_plan: ServicePlan  # the serving plan of ``plan.fetch``: stream values, unformatted

    @property
    def fetch(self) -> FeatureServiceSpec:
        return self.plan.fetch

    @property
    def outputs(self) -> tuple[tuple[Any, ...], ...]:
        return self.plan.outputs

    @property
    def output_dtypes(self) -> tuple[str, ...]:
        return self.plan.output_dtypes

    @property
    def request_fields(self) -> tuple[tuple[str, str], ...]:
        return self.plan.request_fields

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
        request_time = from_epoch_ms(t_ms)
        by_view: dict[str, Mapping[str, Any]] = {}
        flat = iter(values)
        for selection in self.fetch.selections:
            by_view[selection.namespace] = {f: next(flat) for f in selection.features}
        for view in self.plan.views:
            inputs = {
                s.key: request if s.kind == RealtimeInputKind.REQUEST else by_view[s.key] for s in view.spec.inputs
            }
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
            raise InvalidRequestError(
                f"requestContextMap is required by feature service {self.plan.name!r}; it needs: {required}"
            )
        values = {}
        for name, dtype in self.request_fields:
            if name not in request_context_map:
                required = ", ".join(n for n, _ in self.request_fields)
                raise InvalidRequestError(
                    f"requestContextMap is missing {name!r}; feature service {self.plan.name!r} requires: {required}"
                )
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
    return format_iso_ms(to_epoch_ms(moment))


def _json_value(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "int64":
        return str(value)
    if dtype == "timestamp" and isinstance(value, datetime):
        return _iso(value)
    return value
