"""A plain HTTP server on 127.0.0.1 in a thread, serving one folder (the tests' HTTPS stand-in).

``LoopbackHTTP(folder)`` serves ``folder`` read-only at ``server.url`` and counts GET
requests per path (``server.gets``), so tests can check that a file is fetched once. It can be
stopped and started again on the same port (``stop()``/``start()``), to prove that cached
files are used offline.
"""

from __future__ import annotations

import collections
import functools
import http.server
import threading
from pathlib import Path
from typing import Any


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_ref: LoopbackHTTP

    def do_GET(self) -> None:
        self.server_ref.gets[self.path] += 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class LoopbackHTTP:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port chosen on first start)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.port = 0
        self.gets: collections.Counter[str] = collections.Counter()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackHTTP:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        factory = functools.partial(handler, directory=str(self.folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), factory)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> LoopbackHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
