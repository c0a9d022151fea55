"""A fault-injecting HTTP/1.1 proxy on loopback, placed in front of the test S3 server.

Tests point the S3 ``endpoint_url`` at :attr:`FaultProxy.url`; every request is forwarded to
the upstream server (the moto server of ``conftest.py``) unless a :class:`Rule` matches it, in
which case the rule's fault is injected instead:

* ``"500"``: ``500 InternalError`` with S3's XML error body;
* ``"503"``: ``503 SlowDown`` with S3's XML error body (what S3 sends when throttling);
* ``"403"``: ``403 AccessDenied`` with S3's XML error body (a bucket or object not public);
* ``"reset"``: the request is read, then the TCP connection is reset (RST, no response);
* ``"truncate"``: the upstream response is sent with its full ``Content-Length`` but only
  half of its body, then the connection is closed;
* ``"short"``: only the first half of the upstream body is sent, with a ``Content-Length``
  (and ``Content-Range``) that agree with it and without checksum headers (as from a server
  or cache that sends none): a short body no HTTP client can detect;
* ``"slow"``: the response is delayed by ``Rule.delay`` seconds;
* ``"hook"``: ``Rule.hook(record)`` runs before the request is forwarded (e.g. to replace the
  object being read, between two range requests of one load).

A rule matches on a method regex, a path regex (path and query string), a probability drawn
from the proxy's seeded RNG, a number of matching requests to let through first (``skip``)
and a maximum number of faults (``count``; ``None`` = every time). ``count=k`` with
``probability=1`` is a burst of ``k`` consecutive faults.

Every request is recorded in :attr:`FaultProxy.log` (method, path, headers, status, fault),
so tests can count requests and look at headers (``Authorization``).

>>> with FaultProxy("http://127.0.0.1:9") as proxy:
...     proxy.url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ACTIONS", "FaultProxy", "Record", "Rule"]

ACTIONS = ("500", "503", "403", "reset", "truncate", "short", "slow", "hook")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>"
    "<Resource>{path}</Resource><RequestId>FAULTPROXY{n:08d}</RequestId></Error>"
)
_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


@dataclass
class Record:
    """One request the proxy received."""

    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None
    fault: str | None = None


@dataclass
class Rule:
    """Inject ``action`` into requests whose method and path match."""

    action: str
    method: str | None = None
    path: str | None = None
    probability: float = 1.0
    count: int | None = None
    skip: int = 0
    delay: float = 0.5
    hook: Callable[[Record], Any] | None = None
    seen: int = 0
    fired: int = 0
    _method_re: re.Pattern[str] | None = field(default=None, repr=False)
    _path_re: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        if self.action == "hook" and self.hook is None:
            raise ValueError("a 'hook' rule needs hook=")
        self._method_re = re.compile(self.method) if self.method else None
        self._path_re = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str) -> bool:
        if self._method_re is not None and not self._method_re.fullmatch(method):
            return False
        return self._path_re is None or bool(self._path_re.search(path))


class FaultProxy:
    """A threaded HTTP/1.1 forwarding proxy on 127.0.0.1 with injectable faults."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.rng = random.Random(seed)
        self.rules: list[Rule] = []
        self.log: list[Record] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="faultproxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def add(self, action: str, **kwargs: Any) -> Rule:
        """Add a rule (see :class:`Rule`) and return it."""
        rule = Rule(action, **kwargs)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and forget the log."""
        with self.lock:
            self.rules.clear()
            self.log.clear()

    def faults(self) -> int:
        """Number of requests that got a fault so far."""
        with self.lock:
            return sum(1 for r in self.log if r.fault and r.fault != "hook")

    def choose(self, method: str, path: str) -> Rule | None:
        """The first rule that fires for this request (counts are updated)."""
        with self.lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None


def _shortened(name: str, value: str, length: int) -> tuple[str, str]:
    """A response header of a body cut to ``length`` bytes, consistent with the cut."""
    if name.lower() == "content-length":
        return name, str(length)
    if name.lower() == "content-range":  # bytes <start>-<end>/<total>
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-", 1)[0])
        return name, f"{unit} {start}-{start + length - 1}/{total}"
    return name, value


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # silence stderr
            pass

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _handle(self) -> None:
            method, path = self.command, self.path
            body = self._body()
            record = Record(method, path, dict(self.headers.items()))
            with proxy.lock:
                proxy.log.append(record)
            rule = proxy.choose(method, path)
            action = rule.action if rule else None
            record.fault = action
            if action in _ERRORS:
                self._send_error(record, action)
                return
            if action == "reset":
                self._reset()
                return
            if action == "slow":
                time.sleep(rule.delay)  # type: ignore[union-attr]
            if action == "hook":
                rule.hook(record)  # type: ignore[union-attr,misc]
            status, reason, headers, payload = self._forward(method, path, body)
            if action == "short" and method != "HEAD" and len(payload) > 1:
                payload = payload[: len(payload) // 2]
                headers = [
                    _shortened(k, v, len(payload))
                    for k, v in headers
                    if not k.lower().startswith("x-amz-checksum")
                ]
            record.status = status
            self.send_response_only(status, reason)
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if method == "HEAD" or not payload:
                return
            if action == "truncate":
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

        def _send_error(self, record: Record, action: str) -> None:
            status, reason, code, message = _ERRORS[action]
            n = len(proxy.log)
            body = _ERROR_BODY.format(code=code, message=message, path=record.path, n=n).encode()
            record.status = status
            self.send_response_only(status, reason)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if record.method != "HEAD":
                self.wfile.write(body)

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            self.connection.close()

        def _forward(
            self, method: str, path: str, body: bytes
        ) -> tuple[int, str, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                out = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                ]
                length = resp.getheader("Content-Length")
                if method == "HEAD" and length is not None:
                    out.append(("Content-Length", length))
                else:
                    out.append(("Content-Length", str(len(payload))))
                return resp.status, resp.reason, out, payload
            finally:
                conn.close()

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:  # the connection was reset on purpose
                pass

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    return Handler
