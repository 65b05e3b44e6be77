"""uvicorn's HTTP protocol (httptools) with the limits uvicorn lacks: read deadlines and a cap on
connections.

uvicorn times out a keep-alive connection between requests, but nothing while a request is being
sent: a client that opens a connection and sends nothing, or trickles its headers or body a byte
at a time (slowloris), holds the connection and its buffers for as long as it likes. Here

* a request's line and headers must arrive within ``header_timeout_s`` of the connection opening
  or of its first byte, and its body within ``body_timeout_s`` of the headers; past that the
  client gets a 408 (JSON, ``"message"``) and the connection is closed;
* a request line and headers of more than ``MAX_HEADER_BYTES`` get a 431 (httptools has no limit);
* beyond ``max_connections`` open connections, a new one gets a 503 with ``Retry-After`` and is
  closed at once (uvicorn's own ``limit_concurrency`` answers plain text, per request).

Why in the protocol rather than around ``receive()`` in the app: the deadline then costs nothing
on the common request that arrives whole in one read (the timer is armed only when a read ends
with the request still incomplete), and it also covers the headers, which the app never sees.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from featurebus.serving.limits import ServingLimits

__all__ = ["GuardedHttpProtocol", "guarded_protocol", "configure_guard", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 64 * 1024  # request line + header names and values; a lookup sends a few hundred

_IDLE, _HEADERS, _BODY = 0, 1, 2  # what the connection is waiting for from the client


def _raw_response(status: int, reason: str, message: str, extra_headers: bytes = b"") -> bytes:
    body = orjson.dumps({"message": message, "code": reason.upper().replace(" ", "_")})
    return (
        (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n"
        ).encode()
        + extra_headers
        + b"\r\n"
        + body
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """The limits come from the class (``guarded_protocol`` makes a configured subclass;
    ``configure_guard`` sets them in a process uvicorn spawned, which imports this class by name)."""

    limits: ClassVar[ServingLimits] = ServingLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_for = _HEADERS  # a new connection owes its first request line
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # of the request line and headers still incomplete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            transport.write(
                _raw_response(
                    503,
                    "Service Unavailable",
                    f"this serving process holds its maximum of {limits.max_connections} connections; retry shortly",
                    b"retry-after: 1\r\n",
                )
            )
            transport.close()
            return
        self._deadline = self.loop.call_later(limits.header_timeout_s, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Only when this read left a request incomplete (not the common case): count what its
        # headers took so far (parser callbacks per header would cost every request), and arm
        # the deadline of what it still owes.
        waiting_for = self._waiting_for
        if waiting_for == _IDLE or self.transport.is_closing():
            return
        if waiting_for == _HEADERS:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self.transport.write(
                    _raw_response(
                        431,
                        "Request Header Fields Too Large",
                        f"the request line and headers are larger than the {MAX_HEADER_BYTES}-byte limit",
                    )
                )
                self.transport.close()
                return
        if self._deadline is None:
            timeout_s = self.limits.header_timeout_s if waiting_for == _HEADERS else self.limits.body_timeout_s
            self._deadline = self.loop.call_later(timeout_s, self._timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._waiting_for = _HEADERS
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._waiting_for = _BODY
        if self._deadline is not None:  # the header deadline is met; the body gets its own
            self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._waiting_for = _IDLE
        if self._deadline is not None:
            self._disarm()
        super().on_message_complete()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._waiting_for == _IDLE:
            return
        part = "headers" if self._waiting_for == _HEADERS else "body"
        timeout_s = self.limits.header_timeout_s if part == "headers" else self.limits.body_timeout_s
        cycle = self.cycle
        if cycle is None or not cycle.response_started:  # else the app answered already (say, a 401)
            if cycle is not None:
                cycle.disconnected = True  # the app reads a disconnect, and its answer goes nowhere
            self.transport.write(
                _raw_response(408, "Request Timeout", f"the request {part} did not arrive within {timeout_s:g} s")
            )
        self.transport.close()


def guarded_protocol(limits: ServingLimits) -> type[GuardedHttpProtocol]:
    """A protocol class with ``limits``, for a server run in this process."""
    return type("ConfiguredGuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def configure_guard(limits: ServingLimits) -> None:
    """Set the limits of ``GuardedHttpProtocol`` itself, in a process uvicorn spawned."""
    GuardedHttpProtocol.limits = limits
