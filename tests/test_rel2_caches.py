"""Reliability round two (issue 17): shared cache folders.

* the listing cache is keyed by the endpoint actually used (``storage_options`` or
  ``AWS_ENDPOINT_URL``) and by an identity (anonymous, or a hash of the access key): a
  listing made with credentials is never served to another identity, and the cache holds
  neither the key nor the secret;
* a forged cache entry (recomputed checksum) cannot change what is read: footer entries are
  bound to the object's size and footer length, listing entries are signed with a per-user
  key kept outside the cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faultproxy import FaultProxy

from intake_cpg.footer_cache import FooterCache
from intake_cpg.sources import ProfilesSource
from intake_cpg.storage import Storage

REPO = Path(__file__).resolve().parents[1]
ROOT = "s3://cpg-demo"
ACCESS_KEY, SECRET_KEY = "AKIAI17TESTKEY", "i17-secret-access-key"


@pytest.fixture
def proxy(demo_s3, moto_server) -> Any:  # the tests make their own Storage objects
    with FaultProxy(moto_server) as p:
        yield p


def _lists(proxy: FaultProxy) -> int:
    return sum(1 for r in proxy.log if r.method == "GET" and "list-type=2" in r.path)


def test_credentialed_listing_is_not_served_to_an_anonymous_user(proxy, tmp_path):
    ep = {"endpoint_url": proxy.url}
    cache = tmp_path / "shared-cache"
    creds = Storage(
        ROOT, {"key": ACCESS_KEY, "secret": SECRET_KEY, "client_kwargs": ep}, cache_dir=cache
    )
    names = [e.name for e in creds.ls("")]
    assert names and _lists(proxy) == 1
    anon = Storage(ROOT, {"anon": True, "client_kwargs": ep}, cache_dir=cache)
    assert [e.name for e in anon.ls("")] == names
    assert _lists(proxy) == 2  # listed again under its own identity
    other = Storage(
        ROOT, {"key": "AKIAOTHER", "secret": "x" * 20, "client_kwargs": ep}, cache_dir=cache
    )
    other.ls("")
    assert _lists(proxy) == 3
    blob = b"".join(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    assert SECRET_KEY.encode() not in blob and ACCESS_KEY.encode() not in blob


_LIST = """
import sys
from intake_cpg.storage import Storage
print(",".join(e.name for e in Storage("s3://cpg-demo", cache_dir=sys.argv[1]).ls("")))
"""


def test_listing_cache_is_keyed_by_the_endpoint_from_the_environment(proxy, moto_server, tmp_path):
    cache = str(tmp_path / "cache")
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def run(endpoint: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", _LIST, cache], capture_output=True, text=True, cwd=REPO,
            env={**base, "AWS_ENDPOINT_URL": endpoint}, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip()

    first = run(moto_server)
    assert first and _lists(proxy) == 0
    assert run(proxy.url) == first
    assert _lists(proxy) == 1  # another endpoint: not served the first one's listing


# -- forged entries --------------------------------------------------------------------------------------
@pytest.fixture
def attacker_key(tmp_path, monkeypatch) -> Any:
    """Run a block as someone else who can write the cache folder (their own signing key)."""
    import contextlib

    @contextlib.contextmanager
    def as_attacker() -> Any:
        own = os.environ["INTAKE_CPG_CACHE_KEY_FILE"]
        monkeypatch.setenv("INTAKE_CPG_CACHE_KEY_FILE", str(tmp_path / "attacker.key"))
        try:
            yield
        finally:
            monkeypatch.setenv("INTAKE_CPG_CACHE_KEY_FILE", own)

    return as_attacker


def test_forged_listing_entry_is_not_served(demo_local, tmp_path, attacker_key):
    from intake_cpg.diskcache import DiskCache

    cache = tmp_path / "cache"
    prefix = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1"
    st = Storage(demo_local.root, cache_dir=cache)
    plates = [e.name for e in st.ls(prefix)]
    assert len(plates) >= 2
    docs = {p: json.loads(p.read_text()) for p in cache.rglob("*.json")}
    [(fn, doc)] = [(p, d) for p, d in docs.items() if prefix in json.dumps(d.get("key"))]
    value = dict(doc["value"])
    value["entries"] = value["entries"][1:]  # drop a plate
    with attacker_key():  # checksums recomputed, signed with the attacker's own key
        DiskCache(fn.parent, suffix=".json").put_json(json.loads(doc["key"]), value)
    assert json.loads(fn.read_text())["value"]["entries"] == value["entries"]
    fresh = Storage(demo_local.root, cache_dir=cache)
    assert [e.name for e in fresh.ls(prefix)] == plates
    assert fresh.requests["ls"] == 1  # the forged entry was refused and listed again


def test_forged_footer_entry_cannot_change_what_is_read(
    make_bucket, s3_admin, s3_options, tmp_path, attacker_key
):
    bucket = make_bucket().removeprefix("s3://")
    real = pa.table({"Metadata_Well": ["A01", "A02"], "Cells_a": [1.0, 2.0], "Cells_b": [3.0, 4.0]})
    swapped = pa.table(
        {"Metadata_Well": ["A01", "A02"], "Cells_b": [1.0, 2.0], "Cells_a": [3.0, 4.0]}
    )
    pq.write_table(real, tmp_path / "real.parquet")
    pq.write_table(swapped, tmp_path / "swapped.parquet")
    s3_admin.pipe(f"{bucket}/p.parquet", (tmp_path / "real.parquet").read_bytes())
    s3_admin.invalidate_cache()
    url = f"s3://{bucket}/p.parquet"
    info = s3_admin.info(f"{bucket}/p.parquet")
    etag, size = info["ETag"].strip('"'), info["size"]
    FooterCache.clear_memory()
    # someone who can write the folder stores the other file's footer under this object's key
    with attacker_key():
        forged = pq.read_metadata(tmp_path / "swapped.parquet")
        FooterCache(tmp_path / "footers").put(url, etag, size, forged)
    FooterCache.clear_memory()
    got = ProfilesSource(
        url, storage_options=s3_options, footer_cache=str(tmp_path / "footers")
    ).read()
    want = real.to_pandas()[["Cells_a", "Cells_b"]]
    pd.testing.assert_frame_equal(got[["Cells_a", "Cells_b"]], want)


def test_signing_key_is_private_and_a_shared_one_disables_the_cache(tmp_path, monkeypatch, caplog):
    from intake_cpg import diskcache
    from intake_cpg.errors import StorageError

    fn = tmp_path / "config" / "intake-cpg" / "cache-signing.key"
    monkeypatch.setenv(diskcache.KEY_FILE_ENV, str(fn))
    key = diskcache.signing_key()
    assert len(key) >= 32 and fn.stat().st_mode & 0o777 == 0o600
    cache = diskcache.DiskCache(tmp_path / "cache")
    assert cache.put("k", b"v") and cache.get("k") == b"v"
    fn.chmod(0o644)  # readable by others: anyone could sign entries
    diskcache._KEYS.clear()
    with pytest.raises(StorageError):
        diskcache.signing_key()
    assert cache.get("k") is None and not cache.put("k", b"w")  # no cache, never a crash
    assert "0600" in caplog.text
    diskcache._KEYS.clear()
