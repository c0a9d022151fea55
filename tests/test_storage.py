"""The I/O seam: filesystem() and open_url() with one options rule, secrets, the listing cache key.

S3 requests go to the loopback moto server; HTTP(S) ones to a loopback ``http.server``.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import logging
import threading
from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy

from intake_cpg import storage
from intake_cpg.errors import ManifestError, ParameterError, StorageError
from intake_cpg.manifest import read_manifest
from intake_cpg.storage import (
    SecretFilter,
    Storage,
    effective_options,
    filesystem,
    open_url,
    scrub,
    secret_values,
)


@pytest.fixture
def http_root(tmp_path) -> Iterator[tuple[str, object]]:
    """``(base URL, folder)`` of a loopback HTTP server serving ``tmp_path / "www"``."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- the options rule ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("protocol", "given", "expected"),
    [
        ("s3", None, {"anon": True}),
        ("s3", {"client_kwargs": {"endpoint_url": "http://x"}}, None),  # anon added
        ("s3", {"key": "AKIA1", "secret": "s"}, {"key": "AKIA1", "secret": "s"}),
        ("s3", {"profile": "lab"}, {"profile": "lab"}),
        ("s3", {"anon": False}, {"anon": False}),
        ("s3a", None, {"anon": True}),
        ("file", {"anon": True, "client_kwargs": {"endpoint_url": "http://x"}}, {}),
        ("https", {"anon": True, "client_kwargs": {"endpoint_url": "http://x"}}, {}),
        ("http", {"key": "AKIA1"}, {}),
        ("memory", {"skip_instance_cache": True}, {"skip_instance_cache": True}),
    ],
)
def test_one_rule_for_storage_options(protocol, given, expected):
    got = effective_options(protocol, given)
    if expected is None:
        expected = {**given, "anon": True}
    assert got == expected
    assert given is None or got is not given  # a copy: the caller's dict is never changed


def test_filesystem_reads_s3_anonymously(demo_s3, s3_options):
    url = f"s3://cpg-demo/{demo_s3.manifest_key}"
    no_anon = {k: v for k, v in s3_options.items() if k != "anon"}
    fs, path = filesystem(url, no_anon)
    assert fs.anon is True and path == f"cpg-demo/{demo_s3.manifest_key}"
    with open_url(url, no_anon) as f:
        assert f.read(1) == b"["


def test_http_urls_are_not_given_s3_options(http_root, s3_options):
    base, folder = http_root
    (folder / "table.csv").write_text("Metadata_Plate,x\nP1,1\n")
    fs, _ = filesystem(f"{base}/table.csv", s3_options)
    assert "endpoint_url" not in str(getattr(fs, "client_kwargs", {}))
    with open_url(f"{base}/table.csv", s3_options) as f:  # aiohttp refuses S3 client_kwargs
        assert f.read() == b"Metadata_Plate,x\nP1,1\n"


def test_a_manifest_over_http_reads_with_s3_options_given(http_root, s3_options):
    base, folder = http_root
    (folder / "index.csv").write_text(
        "subset,url\norf,https://cellpainting-gallery.s3.amazonaws.com/k/orf.parquet\n"
    )
    records = read_manifest(f"{base}/index.csv", s3_options)
    assert [r.subset for r in records] == ["orf"]
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(f"{base}/missing.csv", s3_options)


def test_open_url_passes_open_options(tmp_path):
    fn = tmp_path / "t.csv.gz"
    fn.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with open_url(str(fn), compression="gzip") as f:
        assert f.read() == b"a,b\n1,2\n"
    with open_url(f"file://{fn}", {"client_kwargs": {"endpoint_url": "http://x"}}) as f:
        assert f.read(2) == b"\x1f\x8b"  # local files ignore the gallery store's options


@pytest.mark.parametrize("url", ["", "   ", None])
def test_no_url_is_a_parameter_error(url):
    with pytest.raises(ParameterError, match="non-empty path or URL"):
        filesystem(url)


def test_an_unknown_protocol_names_the_url():
    with pytest.raises(ParameterError, match=r"cannot open 'nosuch://b/k'.*fsspec protocol"):
        open_url("nosuch://b/k")


# -- secrets ------------------------------------------------------------------------------------
def test_secret_values_and_scrub():
    opts = {
        "key": "AKIAEXAMPLEKEY",
        "secret": "wJalrXUtnFEMI",
        "anon": False,
        "client_kwargs": {"aws_session_token": "FwoGZXIvYXdzEtoken", "region_name": "us-east-1"},
        "token": "ab",  # too short to scrub safely
    }
    found = secret_values(opts)
    assert found == {"AKIAEXAMPLEKEY", "wJalrXUtnFEMI", "FwoGZXIvYXdzEtoken"}
    text = "key=AKIAEXAMPLEKEY secret=wJalrXUtnFEMI t=FwoGZXIvYXdzEtoken region us-east-1 ab"
    assert scrub(text, found) == "key=*** secret=*** t=*** region us-east-1 ab"


def test_secret_filter_scrubs_records_of_the_client_loggers(caplog):
    opts = {"key": "AKIAGUARDED0001", "secret": "guarded-secret-value"}
    effective_options("s3", opts)  # guards them
    caplog.set_level(logging.DEBUG, logger="botocore.endpoint")
    logging.getLogger("botocore.endpoint").debug("headers: %s", {"X-Amz": "AKIAGUARDED0001"})
    assert "AKIAGUARDED0001" not in caplog.text and "***" in caplog.text
    record = logging.LogRecord("x", logging.INFO, "", 0, "a %s b", ("tok-123",), None)
    assert SecretFilter(["tok-123"]).filter(record) and record.getMessage() == "a *** b"


# -- the listing cache key ----------------------------------------------------------------------
def test_listings_made_with_other_credentials_are_cached_apart(demo_s3, s3_options, tmp_path):
    anon = Storage("s3://cpg-demo", s3_options, cache_dir=tmp_path)
    admin_options = {"key": "testing", "secret": "testing", **{"client_kwargs": s3_options["client_kwargs"]}}  # fmt: skip
    admin = Storage("s3://cpg-demo", admin_options, cache_dir=tmp_path)
    assert anon._cache_root() != admin._cache_root()
    assert "testing" not in admin._cache_root()  # a hash, no credential in the path
    anon.ls("")
    admin.ls("")
    assert anon.requests["ls"] == 1 and admin.requests["ls"] == 1  # not served the other's
    again = Storage("s3://cpg-demo", s3_options, cache_dir=tmp_path)
    assert again.ls("") == anon.ls("") and again.requests["ls"] == 0


def test_default_root_is_the_gallery_bucket():
    from intake_cpg import cli, gallery_source

    assert storage.DEFAULT_ROOT == f"s3://{storage.GALLERY_BUCKET}" == "s3://cellpainting-gallery"
    assert cli.DEFAULT_ROOT is storage.DEFAULT_ROOT
    assert gallery_source.DEFAULT_ROOT is storage.DEFAULT_ROOT


# -- anonymous listings over plain HTTP -----------------------------------------------------------
def _entries(s: Storage, prefix: str, recursive: bool = False) -> list[tuple]:
    got = s.find(prefix) if recursive else s.ls(prefix)
    return [(e.name, e.key, e.is_dir, e.size, e.etag) for e in got]


def test_anonymous_listings_page_through_and_match_signed_ones(
    make_bucket, s3_admin, s3_options, moto_server, monkeypatch
):
    """Every page is read (a page of 2 keys here), keys that need URL encoding come back
    as written, and the entries are those of a signed listing through s3fs and botocore."""
    from intake_cpg import fetch

    b = make_bucket()
    keys = [f"top/f{i}.csv" for i in range(5)] + ["top/a b+c%.csv", "top/d1/x", "top/d2/y/z"]
    for i, k in enumerate(keys):
        s3_admin.pipe(f"{b}/{k}", b"x" * i)
    root = b.removeprefix("s3://")
    monkeypatch.setattr(fetch, "LIST_PAGE_KEYS", 2)
    signed = Storage(f"s3://{root}", {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_server}})  # fmt: skip
    with FaultProxy(moto_server) as proxy:
        anon = Storage(f"s3://{root}", {**s3_options, "client_kwargs": {"endpoint_url": proxy.url}})
        assert fetch.plain_listing(anon.fs) and not fetch.plain_listing(signed.fs)
        level, below = _entries(anon, "top"), _entries(anon, "top", recursive=True)
        pages = [r for r in proxy.log if "list-type=2" in r.path]
    assert level == _entries(signed, "top") and below == _entries(signed, "top", recursive=True)
    assert ("a b+c%.csv", "top/a b+c%.csv", False, 5, level[0][4]) in level
    assert [e[0] for e in level if e[2]] == ["d1", "d2"] and len(below) == len(keys)
    assert len(pages) == 4 + 4  # 5 files + 2 folders in pages of 2; 8 files in pages of 2
    assert all("Authorization" not in r.headers for r in pages)


def test_anonymous_listing_errors_name_the_bucket_or_the_cause(moto_server, s3_options):
    with pytest.raises(
        StorageError,
        match=r"cannot list s3://no-such-bucket-0: the bucket does not exist.*NoSuchBucket",
    ):
        Storage("s3://no-such-bucket-0", s3_options).ls("")
    with FaultProxy(moto_server) as proxy:
        opts = {**s3_options, "client_kwargs": {"endpoint_url": proxy.url}}
        proxy.add("403", method="GET", count=1)
        with pytest.raises(StorageError, match=r"s3://cpg-demo/.*denied \(HTTP 403\).*credentials"):
            Storage("s3://cpg-demo", opts).ls("cpg0016-jump")
        proxy.add("500", method="GET")  # every attempt: the budget is spent, then said
        few = {**opts, "config_kwargs": {"retries": {"max_attempts": 1}}}
        with pytest.raises(StorageError, match=r"could not list s3://cpg-demo/.*Internal.*retr"):
            Storage("s3://cpg-demo", few).ls("")


def test_an_anonymous_browse_and_load_need_no_botocore_client(demo_s3, s3_options, monkeypatch):
    """Creating botocore's client costs 0.1-0.25 s: anonymous listings, footers and reads
    go over plain HTTP, so a browse and a parquet load never create one."""
    import intake
    import s3fs

    def no_client(self, *a, **k):
        raise AssertionError("botocore's client was created")

    storage._SHARED.clear()
    monkeypatch.setattr(s3fs.S3FileSystem, "set_session", no_client)
    cat = intake.open_cpg("s3://cpg-demo", storage_options=s3_options)
    entry = cat["cpg0016-jump"]["source_4"]["profiles"](batch="*", plate="*")
    df = entry.to_dask().compute()
    assert len(df) > 0 and df["Metadata_Plate"].nunique() == len(entry.file_urls())
    storage._SHARED.clear()
