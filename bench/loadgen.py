"""A closed-loop HTTP/1.1 load generator: ``concurrency`` keep-alive connections, each sending the
next POST as soon as its previous answer is complete. Run as its own process
(``python -m bench.loadgen SPEC.json``) so that its CPU is not the server's, and so that both
featurebus and its peer are measured by exactly the same client.

Why not ``wrk``/``oha``: neither installs without root or a Rust toolchain build here, and the
harness installs everything it needs with pip. Why not httpx/aiohttp: their per-request
overhead (hundreds of microseconds of Python) would be a large part of a sub-millisecond answer
and would cap the rate at concurrency 16. This client writes pre-encoded request bytes on raw
asyncio transports and parses only the status line and ``Content-Length``, so a request costs it
a few tens of microseconds.

The spec file is JSON ``{"host", "port", "path", "headers": {...}, "bodies": ["...", ...],
"concurrency", "duration_s", "warmup_s"}``; the result, on stdout, is JSON ``{"requests",
"errors", "seconds", "requests_per_s", "p50_ms", "p99_ms", "max_ms", "statuses", "first_error"}``.
Latency is measured from writing a request to receiving its last byte (no coordinated-omission
correction: the loop is closed, as with ``wrk``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadSpec", "run_load", "parse_response_head"]


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    path: str
    bodies: list[str]
    concurrency: int
    duration_s: float
    warmup_s: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)

    def requests(self) -> list[bytes]:
        head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        out = []
        for body in self.bodies:
            raw = body.encode()
            out.append(head.encode() + f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        return out


def parse_response_head(buffer: bytes | bytearray) -> tuple[int, int, int] | None:
    """``(status, header length, body length)`` of the response at the start of ``buffer``, or
    None while its head is incomplete. Only ``Content-Length`` bodies (what both servers send)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            raise ValueError("chunked responses are not supported by this load generator")
    if length is None:
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    return status, end + 4, length


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        parsed = parse_response_head(self.buffer)
        if parsed is None:
            return
        status, head_len, body_len = parsed
        if len(self.buffer) >= head_len + body_len:
            body = bytes(self.buffer[head_len : head_len + body_len])
            del self.buffer[: head_len + body_len]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _worker(
    spec: LoadSpec,
    requests: list[bytes],
    offset: int,
    start_at: float,
    stop_at: float,
    latencies: list[float],
    stats: dict[str, Any],
) -> None:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Connection, spec.host, spec.port)
    i = offset
    n = len(requests)
    perf = time.perf_counter
    try:
        while True:
            sent = perf()
            if sent >= stop_at:
                return
            status, body = await conn.request(requests[i % n])
            done = perf()
            i += 1
            if sent >= start_at:
                latencies.append(done - sent)
                if status != 200:
                    stats["errors"] += 1
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                    if stats["first_error"] is None:
                        stats["first_error"] = f"{status} {body[:300].decode(errors='replace')}"
    finally:
        if conn.transport is not None:
            conn.transport.close()


async def _run(spec: LoadSpec) -> dict[str, Any]:
    requests = spec.requests()
    latencies: list[float] = []
    stats: dict[str, Any] = {"errors": 0, "statuses": {}, "first_error": None}
    start_at = time.perf_counter() + spec.warmup_s
    stop_at = start_at + spec.duration_s
    stride = max(1, len(requests) // spec.concurrency)
    await asyncio.gather(
        *(_worker(spec, requests, c * stride, start_at, stop_at, latencies, stats) for c in range(spec.concurrency))
    )
    # Requests that started before stop_at finish a little after it: count the true span.
    seconds = max(spec.duration_s, 1e-9)
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        rank = (len(ordered) - 1) * q / 100.0
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        return (ordered[low] + (ordered[high] - ordered[low]) * (rank - low)) * 1000.0

    return {
        "requests": len(ordered),
        "errors": stats["errors"],
        "seconds": seconds,
        "requests_per_s": len(ordered) / seconds,
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": ordered[-1] * 1000.0 if ordered else None,
        "statuses": stats["statuses"],
        "first_error": stats["first_error"],
    }


def run_load(spec: LoadSpec) -> dict[str, Any]:
    try:
        import uvloop  # a faster event loop when installed (uvicorn[standard] brings it)

        return uvloop.run(_run(spec))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(_run(spec))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.loadgen SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        raw = json.load(f)
    result = run_load(LoadSpec(**raw))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
