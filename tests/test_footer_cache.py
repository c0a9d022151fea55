"""The parquet footer cache over a real S3 server on loopback (moto): same values with and
without it, a replaced object is never served its old footer, broken cache files are ignored."""

from __future__ import annotations

import glob
import io
import os
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_cpg import readers
from intake_cpg.errors import ParameterError
from intake_cpg.footer_cache import FooterCache, resolve_footer_cache
from intake_cpg.gallery_source import GallerySource
from intake_cpg.sources import ProfilesSource

COLUMNS = ["Metadata_Plate", "Metadata_Well"]


@pytest.fixture(autouse=True)
def _fresh_memory():
    FooterCache.clear_memory()
    yield
    FooterCache.clear_memory()


def _plate_urls(demo, n: int = 3) -> list[str]:
    rows = demo.plates[demo.plates.project == "cpg0016-jump"]
    rows = rows[rows.source == "source_4"].head(n)
    return [demo.url(k) for k in rows.key]


def _feature_columns(url: str, s3_options, k: int = 4) -> list[str]:
    names = readers.read_schema(url, s3_options).columns
    return [c for c in names if not c.startswith("Metadata_")][:k]


def _entries(directory) -> list[str]:
    """Per-object entries of a ``footer_cache=`` folder: full footers, or (selective S3 reads,
    which decode no full footer) the read engine's warm entries under ``warm/``."""
    footers = glob.glob(os.path.join(str(directory), "*", "*.footer"))
    warm = glob.glob(os.path.join(str(directory), "warm", "objects", "*", "*.cpgw"))
    return sorted(warm or footers)


def test_values_identical_with_and_without_cache(demo_s3, s3_options, tmp_path):
    urls = _plate_urls(demo_s3)
    cols = COLUMNS + _feature_columns(urls[0], s3_options)
    filters = [("Metadata_Well", "in", ["A01", "B07", "P24"])]
    plain = ProfilesSource(urls, columns=cols, filters=filters, storage_options=s3_options).read()
    cached_cold = ProfilesSource(
        urls, columns=cols, filters=filters, storage_options=s3_options, footer_cache=tmp_path
    ).read()
    assert len(_entries(tmp_path)) == len(urls)  # one footer per object, on disk
    FooterCache.clear_memory()  # the next read comes from disk, as in a new process
    cached_warm = ProfilesSource(
        urls, columns=cols, filters=filters, storage_options=s3_options, footer_cache=tmp_path
    ).read()
    assert len(plain) == 3 * len(urls)
    assert sorted(plain.Metadata_Well.unique()) == ["A01", "B07", "P24"]
    pd.testing.assert_frame_equal(cached_cold, plain)
    pd.testing.assert_frame_equal(cached_warm, plain)


def test_whole_table_and_schema_from_cache(demo_s3, s3_options, tmp_path):
    url = _plate_urls(demo_s3, 1)[0]
    cache = FooterCache(tmp_path)
    want, names = readers.read_file(url, None, s3_options)
    first, _ = readers.read_file(url, None, s3_options, footer_cache=cache)
    assert cache.stats["miss"] == 1 and cache.stats["stored"] == 1
    FooterCache.clear_memory()
    again, again_names = readers.read_file(url, None, s3_options, footer_cache=cache)
    assert cache.stats["hit_disk"] == 1
    schema = readers.read_schema(url, s3_options, footer_cache=cache)
    assert cache.stats["hit_memory"] == 1
    assert again_names == names
    assert schema.columns == names and schema.num_rows == len(want) == 384
    pd.testing.assert_frame_equal(first, want)
    pd.testing.assert_frame_equal(again, want)


def _table(values: list[int]) -> bytes:
    t = pa.table(
        {
            "Metadata_Plate": pa.array(["P1"] * len(values)),
            "Metadata_Well": pa.array([f"A{i:02d}" for i in range(len(values))]),
            "Cells_X": pa.array(values, pa.int64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="NONE", write_statistics=False)
    return buf.getvalue()


def test_replaced_object_is_never_served_its_old_footer(
    make_bucket, s3_admin, s3_options, tmp_path
):
    import s3fs

    bucket = make_bucket()
    url = f"{bucket}/cpg0016-jump/source_4/workspace/profiles/B1/P1/P1.parquet"
    old, new = _table([1, 2, 3]), _table([7, 8, 9])
    assert len(old) == len(new) and old != new  # same size: only the ETag tells them apart
    s3_admin.pipe(url, old)
    cache = FooterCache(tmp_path)
    got, _ = readers.read_file(url, ["Cells_X"], s3_options, footer_cache=cache)
    assert got.Cells_X.tolist() == [1, 2, 3]

    s3_admin.pipe(url, new)
    s3fs.S3FileSystem.clear_instance_cache()  # the reader's HEAD must see the new object
    got, _ = readers.read_file(url, ["Cells_X"], s3_options, footer_cache=cache)
    assert got.Cells_X.tolist() == [7, 8, 9]
    assert cache.stats["miss"] == 2 and not cache.stats["hit_memory"] + cache.stats["hit_disk"]
    assert len(_entries(tmp_path)) == 2  # both versions, each under its own ETag

    # a footer stored under the old ETag is not reachable with the new one
    info = s3fs.S3FileSystem(**s3_options).info(url)
    assert cache.get(url, info["ETag"].strip('"'), info["size"]) is not None
    assert cache.get(url, "0" * 32, info["size"]) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other_key"])
def test_corrupted_cache_file_is_ignored_and_rebuilt(demo_s3, s3_options, tmp_path, damage):
    urls = _plate_urls(demo_s3, 2)
    cols = COLUMNS + _feature_columns(urls[0], s3_options, 2)
    want, _ = readers.read_file(urls[0], cols, s3_options)
    cache = FooterCache(tmp_path)
    for u in urls:
        readers.read_file(u, cols, s3_options, footer_cache=cache)
    entries = _entries(tmp_path)
    assert len(entries) == 2
    target = cache._path(cache._key(urls[0], *_identity(urls[0], s3_options)))
    with open(target, "rb") as f:
        blob = f.read()
    if damage == "truncate":
        bad = blob[: len(blob) // 2]
    elif damage == "flip":
        i = len(blob) - 100
        bad = blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :]
    elif damage == "garbage":
        bad = os.urandom(len(blob))
    else:  # a valid entry of another object under this object's name
        other = next(e for e in entries if e != target)
        with open(other, "rb") as f:
            bad = f.read()
    with open(target, "wb") as f:
        f.write(bad)

    FooterCache.clear_memory()
    fresh = FooterCache(tmp_path)
    got, _ = readers.read_file(urls[0], cols, s3_options, footer_cache=fresh)
    pd.testing.assert_frame_equal(got, want)
    assert fresh.stats["corrupt"] == 1 and fresh.stats["stored"] == 1  # ignored, then rebuilt
    FooterCache.clear_memory()
    again = FooterCache(tmp_path)
    again.get(urls[0], *_identity(urls[0], s3_options))
    assert again.stats["hit_disk"] == 1 and not again.stats["corrupt"]


def _identity(url: str, s3_options) -> tuple[str, int]:
    import s3fs

    info = s3fs.S3FileSystem(**s3_options).info(url)
    return info["ETag"].strip('"'), info["size"]


def test_local_files_are_read_without_caching(tmp_path):
    path = tmp_path / "P1.parquet"
    path.write_bytes(_table([4, 5]))
    cache = FooterCache(tmp_path / "cache")
    got, _ = readers.read_file(str(path), ["Cells_X"], footer_cache=cache)
    assert got.Cells_X.tolist() == [4, 5]
    assert not _entries(tmp_path / "cache")  # no ETag, so nothing is cached


def test_gallery_source_passes_the_option(demo_s3, s3_options, tmp_path):
    kw = {"project": "cpg0016-jump", "source": "source_4", "product": "profiles"}
    plain = GallerySource(demo_s3.root, storage_options=s3_options, **kw).read()
    src = GallerySource(demo_s3.root, storage_options=s3_options, footer_cache=str(tmp_path), **kw)
    got = src.read()
    assert len(_entries(tmp_path)) == len(src.file_keys()) >= 2
    pd.testing.assert_frame_equal(got, plain)
    assert np.isfinite(got.select_dtypes("number").to_numpy()).all()


def test_pickles_as_its_folder_and_options_are_checked(tmp_path):
    cache = FooterCache(tmp_path)
    cache.stats["miss"] += 5
    clone = pickle.loads(pickle.dumps(cache))
    assert clone == cache and clone.directory == str(tmp_path) and not clone.stats
    assert resolve_footer_cache(str(tmp_path)) == cache
    assert resolve_footer_cache(True).directory is None
    assert resolve_footer_cache(False) is None
    with pytest.raises(ParameterError, match="footer_cache"):
        ProfilesSource("s3://b/x.parquet", footer_cache=1.5)


# -- the column chunks of a known footer: fetched pinned to the ETag, served as known parts ---------
def _wide(n_rows: int = 60_000, n_cols: int = 6) -> bytes:
    rng = np.random.default_rng(0)
    table = pa.table(
        {"Metadata_Well": [f"W{i % 384}" for i in range(n_rows)]}
        | {f"c{i}": rng.random(n_rows) for i in range(n_cols)}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none")
    return buf.getvalue()


@pytest.fixture
def wide_url(make_bucket, s3_admin) -> str:
    url = f"{make_bucket()}/cpg0016-jump/source_4/workspace/profiles/B/P/P.parquet"
    s3_admin.pipe(url, _wide())
    return url


def test_known_footer_reads_each_chunk_once_with_if_match(wide_url, moto_server, tmp_path):
    from faultproxy import FaultProxy

    from intake_cpg.footer_cache import column_ranges

    cols = ["c0", "c2", "c4"]
    with FaultProxy(moto_server) as proxy:
        opts = {"anon": True, "client_kwargs": {"endpoint_url": proxy.url}}
        cache = FooterCache(tmp_path)
        want, _ = readers.read_file(wide_url, cols, opts)  # no cache: the plain reader
        readers.read_file(wide_url, cols, opts, footer_cache=cache)  # stores the footer
        etag, size = _identity(wide_url, opts)
        ranges = column_ranges(cache.get(wide_url, etag, size), cols)
        assert len(ranges) == 3  # three chunks far apart: three ranged reads
        proxy.log.clear()
        got, _ = readers.read_file(wide_url, cols, opts, footer_cache=cache)
        gets = [r for r in proxy.log if r.method == "GET"]
    pd.testing.assert_frame_equal(got, want)
    assert cache.stats["hit_memory"] >= 2
    assert len(gets) == len(ranges)
    for r in gets:
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["if-match"].strip('"') == etag  # pinned to the footer's object version
    assert sorted(g.headers.get("Range", g.headers.get("range")) for g in gets) == sorted(
        f"bytes={s}-{e - 1}" for s, e in ranges
    )


def test_a_read_outside_the_fetched_chunks_falls_back(
    wide_url, s3_options, tmp_path, monkeypatch, caplog
):
    import logging

    from intake_cpg import footer_cache

    cols = ["c0", "c2", "c4"]
    want, _ = readers.read_file(wide_url, cols, s3_options)
    cache = FooterCache(tmp_path)
    readers.read_file(wide_url, cols, s3_options, footer_cache=cache)
    real = footer_cache.column_ranges
    monkeypatch.setattr(footer_cache, "column_ranges", lambda md, c: real(md, c)[:-1])  # one short
    caplog.set_level(logging.DEBUG, logger="intake_cpg.footer_cache")
    got, _ = readers.read_file(wide_url, cols, s3_options, footer_cache=cache)
    assert "read outside the prefetched column ranges" in caplog.text
    pd.testing.assert_frame_equal(got, want)  # never zero-filled or partial
