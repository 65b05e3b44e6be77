"""Online reads from Python, as Tecton's ``get_online_features``: one call to the serving HTTP API.

    vector = fraud_detection.get_online_features(join_keys={"user_id": "u1"}, request_data={"amt": 12.0})
    vector.to_dict()     # {"user_transaction_metrics.amt_sum_1h_continuous": 31.5, ...}
    vector.to_pandas()   # one row

The API answers what serving replicas hold, so these are the values a model would get. The
server and key come from ``FEATUREBUS_URL`` (default ``http://127.0.0.1:8080``, where
``featurebus up`` serves) and ``FEATUREBUS_API_KEY`` (a key from ``featurebus api-key create``);
the workspace from the object's own (``get_workspace``), else ``FEATUREBUS_WORKSPACE``, else the
one ``featurebus workspace select`` chose. Views are read through ``featureViewName``, which
serves every feature of the view as a feature service of its own would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd

from featurebus.exceptions import FeaturebusError, InvalidRequestError

__all__ = ["FeatureVector", "OnlineReadError", "get_online_features", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"
_PATH = "/api/v1/feature-service/get-features"
_TIMEOUT_S = 10.0


class OnlineReadError(FeaturebusError):
    """The serving API refused or failed an online read; the message is the server's."""


class FeatureVector:
    """Tecton's ``FeatureVector``: the served values of one request, by served name."""

    def __init__(self, names: Sequence[str], values: Sequence[Any], statuses: Sequence[str] | None = None) -> None:
        self.names = tuple(names)
        self.values = tuple(values)
        self.statuses = tuple(statuses) if statuses is not None else None

    def to_dict(self, return_none_for_missing: bool = True) -> dict[str, Any]:
        return dict(zip(self.names, self.values, strict=True))

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame([self.values], columns=list(self.names))

    def to_numpy(self) -> np.ndarray:
        return np.array(self.values, dtype=object)

    def __repr__(self) -> str:
        return f"FeatureVector({self.to_dict()!r})"


def _decoded(value: Any, data_type: Mapping[str, Any] | None) -> Any:
    """A served value as Python: int64s travel as strings in JSON (Tecton's encoding), arrays nest."""
    if value is None or data_type is None:
        return value
    kind = data_type.get("type")
    if kind == "int64" and isinstance(value, str):
        return int(value)
    if kind == "array" and isinstance(value, list):
        return [_decoded(v, data_type.get("elementType")) for v in value]
    return value


def _workspace(explicit: str | None) -> str:
    if explicit:
        return explicit
    from_env = os.environ.get("FEATUREBUS_WORKSPACE")
    if from_env:
        return from_env
    from featurebus.platform.config import selected_workspace

    return selected_workspace()


def get_online_features(
    *,
    feature_service: str | None = None,
    feature_view: str | None = None,
    join_keys: Mapping[str, Any] | None,
    request_data: Mapping[str, Any] | None = None,
    include_join_keys_in_response: bool = False,
    workspace: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> FeatureVector:
    """POST one get-features request for a service (or a view) and decode its answer."""
    if (feature_service is None) == (feature_view is None):
        raise InvalidRequestError("name exactly one of feature_service or feature_view")
    if join_keys is not None and not isinstance(join_keys, Mapping):
        raise InvalidRequestError(f"join_keys must be a dict of join key -> value, got {type(join_keys).__name__}")
    if request_data is not None and not isinstance(request_data, Mapping):
        raise InvalidRequestError(f"request_data must be a dict of field -> value, got {type(request_data).__name__}")
    key = api_key or os.environ.get("FEATUREBUS_API_KEY")
    if not key:
        raise InvalidRequestError("no API key: set FEATUREBUS_API_KEY to a key from `featurebus api-key create`")
    params: dict[str, Any] = {
        "workspaceName": _workspace(workspace),
        "joinKeyMap": dict(join_keys or {}),
        "metadataOptions": {"includeNames": True, "includeDataTypes": True},
    }
    if feature_service is not None:
        params["featureServiceName"] = feature_service
    else:
        params["featureViewName"] = feature_view
    if request_data:
        params["requestContextMap"] = dict(request_data)
    base = (url or os.environ.get("FEATUREBUS_URL") or DEFAULT_URL).rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=_TIMEOUT_S) as client:
            response = client.post(_PATH, json={"params": params}, headers={"Authorization": f"Tecton-key {key}"})
    except httpx.HTTPError as exc:
        raise OnlineReadError(
            f"cannot reach the serving API at {base} ({exc}); start it (`featurebus up` or "
            "`featurebus serve`) or set FEATUREBUS_URL"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        message = body.get("message") if isinstance(body, dict) else response.text
        raise OnlineReadError(f"the serving API answered {response.status_code}: {message}")
    meta = body["metadata"]["features"]
    values = [_decoded(v, m.get("dataType")) for v, m in zip(body["result"]["features"], meta, strict=True)]
    names = [m["name"] for m in meta]
    if include_join_keys_in_response:
        names = [*(join_keys or {}), *names]
        values = [*(join_keys or {}).values(), *values]
    return FeatureVector(names, values)
