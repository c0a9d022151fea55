"""A latency- and bandwidth-shaping HTTP proxy on loopback, in front of the benchmark's S3 server.

On plain loopback a reader that makes 13 serial requests per file looks as fast as one that
makes 2; real S3 answers each request after tens of milliseconds. :class:`Shaper` forwards
every request to the upstream server and holds each response back by ``delay_ms`` (the time to
first byte), optionally paces bodies at ``bandwidth`` bytes/s per response, and counts requests
and body bytes per kind: ``HEAD``, ``GET-range``, ``GET-full``, ``LIST`` (a GET of a bucket
with a listing query) and ``OTHER``. It runs on its own asyncio loop in a thread of the runner,
and every side of a comparison reads through it (same endpoint, same delay).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


def kind(method: str, path: str, query: str, headers: Any) -> str:
    """The counter a request goes to."""
    if method == "HEAD":
        return "HEAD"
    if method != "GET":
        return "OTHER"
    segs = [s for s in path.split("/") if s]
    if len(segs) <= 1 or "list-type" in query or "prefix=" in query or "delimiter" in query:
        return "LIST"
    return "GET-range" if "range" in {k.lower() for k in headers} else "GET-full"


class Shaper:
    """The proxy; ``with Shaper(upstream) as s: s.endpoint``; set ``s.delay_ms`` any time."""

    def __init__(self, upstream: str, delay_ms: float = 0.0, bandwidth: float | None = None):
        self.upstream = upstream.rstrip("/")
        self.delay_ms = delay_ms
        self.bandwidth = bandwidth
        self.requests: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"requests": dict(self.requests), "bytes": dict(self.bytes)}

    def __enter__(self) -> Shaper:
        self._thread = threading.Thread(target=self._run, name="shaper", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the shaping proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        conn = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        async with aiohttp.ClientSession(
            connector=conn, auto_decompress=False, timeout=timeout
        ) as session:
            app = web.Application(client_max_size=2**34)
            app.router.add_route("*", "/{tail:.*}", lambda r: self._handle(session, r))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024)
            await site.start()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _handle(self, session: aiohttp.ClientSession, req: web.Request) -> Any:
        k = kind(req.method, req.path, req.query_string, req.headers)
        body = await req.read()
        headers = {h: v for h, v in req.headers.items() if h.lower() not in _HOP}
        t0 = time.monotonic()
        async with session.request(
            req.method,
            self.upstream + req.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as up:
            wait = self.delay_ms / 1000 - (time.monotonic() - t0)
            if wait > 0:
                await asyncio.sleep(wait)
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for h, v in up.headers.items():
                if h.lower() not in _HOP:
                    resp.headers[h] = v
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(req)
            n = 0
            start = time.monotonic()
            async for chunk in up.content.iter_chunked(1 << 20):
                await resp.write(chunk)
                n += len(chunk)
                if self.bandwidth:
                    ahead = n / self.bandwidth - (time.monotonic() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await resp.write_eof()
        with self._lock:
            self.requests[k] += 1
            self.bytes[k] += n
        return resp
