"""Tecton's wire format for feature serving: request options in, response and metadata JSON out.

Everything here is about shapes, never about reading: ``metadataOptions`` parsing, the
``dataType`` objects, ISO-8601 effective times, int64 values travelling as strings, serving
statuses, and the assembly of the ``get-features``, ``get-features-batch`` and ``metadata``
answers from the values the read service (``service.py``) computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.time import format_iso_ms

__all__ = [
    "MISSING_DATA",
    "PRESENT",
    "MetadataOptions",
    "Row",
    "batch_response",
    "data_type",
    "format_time_ms",
    "int64_as_strings",
    "metadata_response",
    "single_response",
]

PRESENT = "PRESENT"
MISSING_DATA = "MISSING_DATA"

# One served row: (feature values in their wire form, serving statuses, effective times).
Row = tuple[list[Any], list[str], list[str]]


@dataclass(frozen=True)
class MetadataOptions:
    include_names: bool = True  # names are always sent; kept for Tecton request compatibility
    include_data_types: bool = False
    include_effective_times: bool = False
    include_serving_status: bool = False

    @classmethod
    def parse(cls, raw: MetadataOptions | Mapping[str, Any] | None) -> MetadataOptions:
        """From Tecton's camelCase ``metadataOptions`` (snake_case accepted too)."""
        if raw is None or isinstance(raw, MetadataOptions):
            return raw or _NO_OPTIONS
        if not isinstance(raw, Mapping):
            raise InvalidRequestError("metadataOptions must be an object of booleans")

        def flag(camel: str, snake: str) -> bool:
            return bool(raw.get(camel, raw.get(snake, False)))

        return cls(
            include_names=True,
            include_data_types=flag("includeDataTypes", "include_data_types"),
            include_effective_times=flag("includeEffectiveTimes", "include_effective_times"),
            include_serving_status=flag("includeServingStatus", "include_serving_status"),
        )


_NO_OPTIONS = MetadataOptions()


def data_type(dtype: str) -> dict[str, Any]:
    """Tecton's ``dataType`` object for a spec dtype (``array<T>`` nests an ``elementType``)."""
    if dtype.startswith("array<") and dtype.endswith(">"):
        return {"type": "array", "elementType": data_type(dtype[6:-1])}
    return {"type": dtype}


def format_time_ms(t_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.250Z`` (Tecton's effectiveTime)."""
    return format_iso_ms(t_ms)


def int64_as_strings(value: Any, as_string: bool, elements_as_strings: bool) -> Any:
    """Tecton's encoding: int64 values, and int64 array elements, travel as strings."""
    if value is None:
        return None
    if as_string:
        return str(value)
    if elements_as_strings:
        return [None if v is None else str(v) for v in value]
    return value


def single_response(row: Row, feature_meta: Sequence[dict[str, Any]], options: MetadataOptions) -> dict[str, Any]:
    """``get-features``: the row's values, and metadata with what ``options`` asked for."""
    features, statuses, times = row
    meta = [dict(m) for m in feature_meta] if options.include_data_types else _names(feature_meta)
    for i, item in enumerate(meta):
        if options.include_serving_status:
            item["status"] = statuses[i]
        if options.include_effective_times:
            item["effectiveTime"] = times[i]
    return {"result": {"features": features}, "metadata": {"features": meta}}


def batch_response(
    rows: Sequence[Row], feature_meta: Sequence[dict[str, Any]], options: MetadataOptions
) -> dict[str, Any]:
    """``get-features-batch``: one result per row, with per-row statuses and times when asked."""
    per_row = options.include_serving_status or options.include_effective_times
    results = []
    for features, statuses, times in rows:
        result: dict[str, Any] = {"features": features}
        if per_row:
            row_meta: list[dict[str, Any]] = [{} for _ in features]
            for i, item in enumerate(row_meta):
                if options.include_serving_status:
                    item["status"] = statuses[i]
                if options.include_effective_times:
                    item["effectiveTime"] = times[i]
            result["metadata"] = {"features": row_meta}
        results.append(result)
    meta = list(feature_meta) if options.include_data_types else _names(feature_meta)
    return {"result": results, "metadata": {"features": meta}}


def metadata_response(
    join_keys: Sequence[tuple[str, str]],
    feature_meta: Sequence[dict[str, Any]],
    request_fields: Sequence[tuple[str, str]] | None,
) -> dict[str, Any]:
    """``metadata``: the service's join keys, served features and (realtime) request fields."""
    result: dict[str, Any] = {
        "featureServiceType": "DEFAULT",
        "inputJoinKeys": [{"name": name, "dataType": data_type(dtype)} for name, dtype in join_keys],
        "featureValues": list(feature_meta),
    }
    if request_fields is not None:
        result["inputRequestContextKeys"] = [
            {"name": name, "dataType": data_type(dtype)} for name, dtype in request_fields
        ]
    return result


def _names(feature_meta: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": m["name"]} for m in feature_meta]
