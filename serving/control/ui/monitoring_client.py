"""The monitoring figures the UI shows (alerts, freshness, metric history, data quality, drift,
parity) come from the control plane's own routes, called in-process through ASGI with the
signed-in key: the same guard, no network hop, no second copy of the rules.

The data-quality, drift and parity routes (``serving/control/routes_quality.py``) exist when the
control plane is given the offline store; without them (404) a panel says "no data yet". A route
that answers 400/404 with a reason (data quality disabled, no logged requests, no report yet) has
its reason shown; when a call fails the panel says the component is down, never a traceback. The
paths live here and nowhere else; ``quality_panels`` reads the answers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
from fastapi import FastAPI

from featurebus.platform.control.guard import Call

__all__ = ["Fetched", "MonitoringClient", "PATHS"]

_log = logging.getLogger(__name__)

# Tried under the API's /v1 prefix first, then bare (the two spellings the routes may take).
PATHS = {
    "alerts": "/workspaces/{workspace}/alerts",
    "ack": "/workspaces/{workspace}/alerts/{rule}/ack",
    "freshness": "/workspaces/{workspace}/freshness",
    "history": "/metrics/history",
    "stats": "/workspaces/{workspace}/feature-views/{view}/stats",
    "drift": "/workspaces/{workspace}/feature-views/{view}/drift",
    "parity": "/workspaces/{workspace}/feature-services/{service}/parity",
}
_PREFIXES = ("/v1", "")


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A panel's data, or why there is none: ``state`` is "ok", "empty" (the route or its data is
    not there yet, ``note`` says why when the route did), "down" (the call failed) or "refused"
    (401/403: the API said no, ``note`` says why)."""

    state: str
    data: Any = None
    note: str = ""
    status: int = 200

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class MonitoringClient:
    def __init__(self, app: FastAPI, call: Call, timeout_s: float = 5.0) -> None:
        self._app = app
        self._call = call
        self._timeout_s = timeout_s

    async def _send(self, method: str, name: str, params: dict[str, Any] | None = None, **path: str) -> Fetched:
        headers = {"X-Request-Id": self._call.request_id}
        if self._call.authorization:
            headers["Authorization"] = self._call.authorization
        transport = httpx.ASGITransport(app=self._app, raise_app_exceptions=False)
        last = Fetched("empty", note="no data yet")
        async with httpx.AsyncClient(transport=transport, base_url="http://control", timeout=self._timeout_s) as client:
            for prefix in _PREFIXES:
                url = prefix + PATHS[name].format(**path)
                try:
                    response = await client.request(method, url, params=params, headers=headers)
                except Exception as exc:  # a monitoring panel must never take the page down
                    _log.warning("monitoring call %s failed: %s", url, exc)
                    return Fetched("down", note=f"component down: {type(exc).__name__}: {exc}", status=503)
                if response.status_code == 404 and not _names_missing_object(response):
                    continue  # the route is not there (yet) under this prefix
                return _fetched(response)
        return last

    async def get(self, name: str, params: dict[str, Any] | None = None, **path: str) -> Fetched:
        return await self._send("GET", name, params, **path)

    async def post(self, name: str, **path: str) -> Fetched:
        return await self._send("POST", name, None, **path)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message") or body.get("detail") or body) if isinstance(body, dict) else str(body)[:200]


def _names_missing_object(response: httpx.Response) -> bool:
    """A 404 from a route that exists names what is missing; an unknown route says "Not Found"."""
    return _message(response).strip().lower() not in ("not found", "")


def _fetched(response: httpx.Response) -> Fetched:
    status = response.status_code
    if status >= 500:
        return Fetched("down", note=f"component down: {_message(response)}", status=status)
    if status >= 400:
        # Only 401/403 are refusals; a 400/404 names why there is nothing to show (not monitored yet).
        return Fetched("refused" if status in (401, 403) else "empty", note=_message(response), status=status)
    try:
        data = response.json()
    except ValueError:
        return Fetched("down", note="component down: the answer was not JSON", status=502)
    if data in (None, [], {}):
        return Fetched("empty", data=data, note="no data yet")
    return Fetched("ok", data=data)
