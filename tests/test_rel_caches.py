"""The on-disk listing cache and footer cache: concurrent writers, corrupt files, stale entries."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_cpg import readers
from intake_cpg.footer_cache import FooterCache
from intake_cpg.storage import Storage

REPO = Path(__file__).resolve().parents[1]
PREFIXES = [
    "",
    "cpg0016-jump",
    "cpg0016-jump/source_4",
    "cpg0016-jump/source_4/workspace/profiles",
    "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1",
    "cpg0004-lincs/broad/workspace/profiles",
]

# Each writer process lists (refresh=True: always writes) and reads back the same cache files.
_LISTING_WORKER = """
import sys
from intake_cpg.storage import Storage
root, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
prefixes = sys.argv[4:]
for i in range(n):
    st = Storage(root, cache_dir=cache)
    for p in prefixes:
        st.ls(p, refresh=(i % 2 == 0))
print("ok")
"""

_FOOTER_WORKER = """
import sys
import pyarrow.parquet as pq
from intake_cpg.footer_cache import FooterCache
path, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
md = pq.read_metadata(path)
for i in range(n):
    FooterCache.clear_memory()
    fc = FooterCache(cache)
    fc.put("s3://b/p.parquet", "etag-1", 1234, md)
    got = fc.get("s3://b/p.parquet", "etag-1", 1234)
    assert got is not None and got.num_columns == md.num_columns, "bad footer from cache"
print("ok")
"""

N_PROCESSES = 4


def _spawn(code: str, *args: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(N_PROCESSES)
    ]


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
        assert "Traceback" not in err and "ignoring unreadable" not in err, err[-2000:]


def _truth(root: str) -> dict[str, tuple]:
    st = Storage(root)
    return {p: st.ls(p) for p in PREFIXES}


# -- listing cache ------------------------------------------------------------------------------
def test_listing_cache_survives_concurrent_writers(demo_local, tmp_path):
    cache = tmp_path / "cache"
    _wait(_spawn(_LISTING_WORKER, demo_local.root, str(cache), "30", *PREFIXES))
    files = list((cache / "listings").rglob("*.json"))
    assert len(files) == len(PREFIXES)
    assert not list((cache / "listings").rglob(".tmp-*"))  # every temporary file was renamed
    st = Storage(demo_local.root, cache_dir=cache)
    assert {p: st.ls(p) for p in PREFIXES} == _truth(demo_local.root)
    assert st.requests["ls"] == 0  # all served from the files the writers left


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "binary junk": lambda b: os.urandom(200),
    "a JSON list": lambda b: b"[1, 2, 3]",
    "JSON null": lambda b: b"null",
    "tampered entries": lambda b: b.replace(b"source_4", b"source_X"),
    "wrong format number": lambda b: b.replace(b'"format": 1', b'"format": 99'),
    "invalid utf-8": lambda b: b"\xff\xfe" + b,
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_listing_cache_is_ignored_and_rebuilt(demo_local, tmp_path, caplog, kind):
    cache = tmp_path / "cache"
    prefix = "cpg0016-jump"
    truth = Storage(demo_local.root, cache_dir=cache).ls(prefix)
    (fn,) = list((cache / "listings").rglob("*.json"))
    fn.write_bytes(CORRUPTIONS[kind](fn.read_bytes()))
    caplog.set_level(logging.WARNING, logger="intake_cpg.storage")
    st = Storage(demo_local.root, cache_dir=cache)
    assert st.ls(prefix) == truth
    assert st.requests["ls"] == 1  # not trusted: listed again
    assert "ignoring unreadable listing cache" in caplog.text
    again = Storage(demo_local.root, cache_dir=cache)
    assert again.ls(prefix) == truth and again.requests["ls"] == 0  # rebuilt
    json.loads(fn.read_text())


def test_a_cache_file_of_another_prefix_is_not_served(demo_local, tmp_path):
    cache = tmp_path / "cache"
    st = Storage(demo_local.root, cache_dir=cache)
    st.ls("cpg0016-jump")
    st.ls("cpg0004-lincs")
    a, b = (st._cache_file(p) for p in ("cpg0016-jump", "cpg0004-lincs"))
    Path(a).write_bytes(Path(b).read_bytes())  # swapped in by hand
    fresh = Storage(demo_local.root, cache_dir=cache)
    assert [e.name for e in fresh.ls("cpg0016-jump")] == [
        "source_13",
        "source_2",
        "source_4",
        "source_5",
    ]
    assert fresh.requests["ls"] == 1


def test_listing_cache_is_bounded_by_ttl_and_refresh(demo_local, tmp_path):
    root = tmp_path / "g"
    (root / "cpg0016-jump").mkdir(parents=True)
    cache = tmp_path / "cache"
    assert [e.name for e in Storage(str(root), cache_dir=cache).ls("")] == ["cpg0016-jump"]
    (root / "cpg0099-new").mkdir()
    # within the TTL a listing is served from disk (documented); refresh lists again
    assert [e.name for e in Storage(str(root), cache_dir=cache).ls("")] == ["cpg0016-jump"]
    st = Storage(str(root), cache_dir=cache)
    assert [e.name for e in st.ls("", refresh=True)] == ["cpg0016-jump", "cpg0099-new"]
    (root / "cpg0100-newer").mkdir()
    expired = Storage(str(root), cache_dir=cache, listing_ttl=0)
    assert [e.name for e in expired.ls("")][-1] == "cpg0100-newer"


# -- footer cache -------------------------------------------------------------------------------
def _parquet(values: list[float]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(
        pa.table({"Metadata_Well": [f"W{i}" for i in range(len(values))], "x": values}), buf
    )
    return buf.getvalue()


def test_footer_cache_survives_concurrent_writers(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(_parquet([1.0, 2.0]))
    cache = tmp_path / "footers"
    _wait(_spawn(_FOOTER_WORKER, str(path), str(cache), "40"))
    FooterCache.clear_memory()
    got = FooterCache(cache).get("s3://b/p.parquet", "etag-1", 1234)
    assert got is not None and got.num_columns == 2
    assert not list(cache.rglob(".tmp-*"))


@pytest.mark.parametrize("kind", ["truncated", "empty", "binary junk", "a JSON list", "tampered"])
def test_corrupt_footer_entry_is_ignored_and_rebuilt(tmp_path, kind):
    path = tmp_path / "p.parquet"
    path.write_bytes(_parquet([1.0, 2.0]))
    md = pq.read_metadata(path)
    cache = tmp_path / "footers"
    FooterCache(cache).put("s3://b/p.parquet", "e1", 10, md)
    (fn,) = list(cache.rglob("*.footer"))
    blob = fn.read_bytes()
    bad = {
        "truncated": blob[: len(blob) // 2],
        "empty": b"",
        "binary junk": os.urandom(300),
        "a JSON list": b"[1, 2]",
        "tampered": blob[:-20] + bytes(20),
    }[kind]
    fn.write_bytes(bad)
    FooterCache.clear_memory()
    fc = FooterCache(cache)
    assert fc.get("s3://b/p.parquet", "e1", 10) is None  # never trusted
    assert fc.stats["corrupt"] == 1
    fc.put("s3://b/p.parquet", "e1", 10, md)
    FooterCache.clear_memory()
    assert FooterCache(cache).get("s3://b/p.parquet", "e1", 10).num_columns == 2


def test_replaced_object_never_read_with_a_stale_footer(
    make_bucket, s3_admin, s3_options, tmp_path
):
    """Same key, new bytes (more rows): the footer cache misses on the new ETag."""
    bucket = make_bucket()
    url = f"{bucket}/cpg0016-jump/source_4/workspace/profiles/B/P/P.parquet"
    s3_admin.pipe(url, _parquet([1.0, 2.0]))
    fc = FooterCache(tmp_path / "footers")
    first, _ = readers.read_file(url, None, s3_options, footer_cache=fc)
    s3_admin.pipe(url, _parquet([5.0, 6.0, 7.0]))
    FooterCache.clear_memory()
    fc2 = FooterCache(tmp_path / "footers")
    second, _ = readers.read_file(url, None, s3_options, footer_cache=fc2)
    assert first.x.tolist() == [1.0, 2.0]
    assert second.x.tolist() == [5.0, 6.0, 7.0]
    assert fc2.stats["miss"] == 1 and fc2.stats["hit_disk"] == 0
    third, _ = readers.read_file(url, None, s3_options, footer_cache=fc2)
    pd.testing.assert_frame_equal(third, second)
    assert fc2.stats["hit_memory"] == 1
