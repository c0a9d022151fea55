"""The test bed: a real S3 server on loopback, the demo gallery in it, and a dask cluster.

* ``moto_server``: moto's standalone S3 server, a subprocess started from its own virtualenv
  (``make test`` creates ``.venv-moto``; ``INTAKE_CPG_MOTO_SERVER`` overrides the path), bound
  to 127.0.0.1 on a free port. Killed at the end of the session.
* ``s3_options``: anonymous storage options for that server. No AWS credentials are put in the
  environment: the tests prove that anonymous reads work, as on the public bucket.
* ``s3_admin``: an ``s3fs.S3FileSystem`` with dummy credentials, for creating buckets and writing.
* ``demo_s3`` / ``demo_local``: the demo gallery in the public-read bucket ``cpg-demo`` and in a
  temporary folder; ``demo_jump``: a local demo with its mirror of the JUMP metadata.
* ``make_bucket``: fresh public-read buckets for tests that modify objects.
* ``dask_client``: a ``distributed.Client`` on a 2-process ``LocalCluster``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_BUCKET = "cpg-demo"
_ADMIN_CREDENTIALS = {"key": "testing", "secret": "testing"}

# Run moto's server with werkzeug's per-request log silenced (it would print every request).
_SERVER_CODE = (
    "import logging, sys\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "from moto.server import main\n"
    "main(sys.argv[1:])\n"
)


def _moto_server_path() -> Path:
    return Path(
        os.environ.get("INTAKE_CPG_MOTO_SERVER", REPO / ".venv-moto" / "bin" / "moto_server")
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto server exited with code {proc.returncode}; its log ({log_path}):\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"moto server at {url} did not answer within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def cache_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The disk caches' signing key of this test session (never the user's own)."""
    path = tmp_path_factory.mktemp("signing") / "cache-signing.key"
    old = os.environ.get("INTAKE_CPG_CACHE_KEY_FILE")
    os.environ["INTAKE_CPG_CACHE_KEY_FILE"] = str(path)  # subprocesses and workers inherit it
    yield path
    if old is None:
        os.environ.pop("INTAKE_CPG_CACHE_KEY_FILE", None)
    else:
        os.environ["INTAKE_CPG_CACHE_KEY_FILE"] = old


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>``) of a moto S3 server subprocess."""
    server = _moto_server_path()
    if not server.exists():
        pytest.fail(
            f"the moto S3 server is not installed at {server}. Run `make test`, which creates "
            "the .venv-moto virtualenv, or set INTAKE_CPG_MOTO_SERVER to a moto_server binary.",
            pytrace=False,
        )
    python = server.parent / "python"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    port = _free_port()
    cmd = (
        [str(python), "-c", _SERVER_CODE, "-H", "127.0.0.1", "-p", str(port)]
        if python.exists()
        else [str(server), "-H", "127.0.0.1", "-p", str(port)]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log_path)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def s3_options(moto_server: str) -> dict[str, Any]:
    """Anonymous storage_options for the loopback server."""
    return {"anon": True, "client_kwargs": {"endpoint_url": moto_server}}


def _admin_options(moto_server: str) -> dict[str, Any]:
    return {**_ADMIN_CREDENTIALS, "client_kwargs": {"endpoint_url": moto_server}}


@pytest.fixture(scope="session")
def s3_admin(moto_server: str):
    """An ``s3fs.S3FileSystem`` with dummy credentials, for creating buckets and uploading."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **_admin_options(moto_server))


@pytest.fixture(scope="session")
def demo_s3(moto_server: str, s3_admin, s3_options: dict[str, Any]):
    """The demo gallery in the public-read bucket ``cpg-demo`` (with one multipart object)."""
    import s3fs

    from intake_cpg.demo import build_demo

    s3_admin.mkdir(DEMO_BUCKET, acl="public-read")
    demo = build_demo(
        f"s3://{DEMO_BUCKET}", _admin_options(moto_server), large_object=True, max_workers=4
    )
    anon = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    probe = f"{DEMO_BUCKET}/{demo.manifest_key}"
    if not (anon.ls(DEMO_BUCKET) and anon.info(probe)["size"] and anon.cat(probe)):
        pytest.fail("anonymous list/HEAD/GET of the demo bucket failed", pytrace=False)
    return demo


@pytest.fixture(scope="session")
def demo_local(tmp_path_factory: pytest.TempPathFactory):
    """The demo gallery (default size) built into a temporary folder."""
    from intake_cpg.demo import build_demo

    return build_demo(str(tmp_path_factory.mktemp("demo") / "gallery"))


@pytest.fixture(scope="session")
def demo_jump(tmp_path_factory: pytest.TempPathFactory):
    """The demo gallery with its mirror of the JUMP metadata (``jump_metadata=True``)."""
    from intake_cpg.demo import build_demo

    return build_demo(str(tmp_path_factory.mktemp("demo-jump") / "gallery"), jump_metadata=True)


@pytest.fixture
def make_bucket(s3_admin) -> Iterator[Callable[..., str]]:
    """Factory ``make_bucket(name=None) -> "s3://<name>"``: a fresh public-read bucket."""
    made: list[str] = []

    def factory(name: str | None = None) -> str:
        bucket = name or f"test-{uuid.uuid4().hex[:12]}"
        s3_admin.mkdir(bucket, acl="public-read")
        made.append(bucket)
        return f"s3://{bucket}"

    yield factory
    for bucket in made:
        try:
            s3_admin.rm(bucket, recursive=True)
        except OSError:  # a test may already have removed it
            pass
    s3_admin.invalidate_cache()


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A ``distributed.Client`` on ``LocalCluster(n_workers=2, processes=True)``."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # without a dashboard the scheduler still serves /health on 8787 or, when another
        # cluster holds that port, a random one (and warns about it)
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def pytest_report_header(config: pytest.Config) -> str:
    return f"moto server: {_moto_server_path()} (python {sys.version.split()[0]})"
