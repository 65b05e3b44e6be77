"""The control plane's HTTP API from Python: what the CLI (and scripts) call.

``ControlClient.from_config()`` uses the URL and key ``featurebus login`` stored (or
``FEATUREBUS_CONTROL_URL`` / ``FEATUREBUS_API_KEY``). Errors come back as featurebus's own: 401 as
``AuthenticationError``, 403 ``PermissionDeniedError`` (naming the role needed), 404
``NotFoundError``, 409 ``ConflictError`` (with the current version), 400 ``InvalidRequestError``;
an unreachable control plane as ``ControlPlaneUnavailableError`` naming the URL, at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from featurebus.schemas.errors import (
    AuthenticationError,
    ConflictError,
    ControlPlaneUnavailableError,
    FeaturebusError,
    InvalidRequestError,
    KafkaUnavailableError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = ["ControlClient"]

_ERRORS: dict[int, type[FeaturebusError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    503: KafkaUnavailableError,
}


class ControlClient:
    def __init__(self, url: str, key: str | None, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Connecting fails fast (a stopped control plane); an apply may take a while to answer.
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=3.0))

    @classmethod
    def from_config(cls, home: Path | None = None) -> ControlClient:
        from featurebus.platform.config import control_login

        url, key = control_login(home)
        return cls(url, key)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._client.request(method, path, json=json, params=query)
        except httpx.TransportError as exc:
            raise ControlPlaneUnavailableError(
                f"the control plane at {self.url} did not answer ({type(exc).__name__}: {exc}); start it "
                "(`featurebus up` or `featurebus control`) or point the CLI at one: `featurebus login --url URL`"
            ) from None
        if response.status_code < 400:
            return response.json()
        try:
            body = response.json()
            message = str(body.get("message") or response.text)
        except ValueError:
            body, message = {}, response.text
        if response.status_code == 401 and not self.key:
            message += "; log in first: `featurebus login --url URL --key KEY`"
        if response.status_code == 409:
            raise ConflictError(message, int(body.get("currentVersion", -1)))
        raise _ERRORS.get(response.status_code, FeaturebusError)(message)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)
