"""Reliability round two (issue 17): errors a user can act on, and ``verify`` per record.

Bare ``FileNotFoundError``/``TypeError``/``ValueError`` that still escaped become
``CPGError`` subclasses naming the input; ``verify`` gives every record its own status and
checks every URL scheme that loads. Over the demo gallery on the loopback S3 server, a local
copy of it, and a loopback HTTP server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import intake
import pandas as pd
import pytest
from test_storage import http_root  # noqa: F401  (a fixture, used by name)

from intake_cpg import cli, storage
from intake_cpg.errors import CPGError, ParameterError, StorageError
from intake_cpg.etag import verify_manifest
from intake_cpg.gallery_source import GallerySource
from intake_cpg.manifest import read_manifest
from intake_cpg.manifest_catalog import ManifestCatalog

ROOT = "s3://cpg-demo"


@pytest.fixture(scope="module")
def small_records(demo_s3, s3_options) -> list[Any]:
    recs = read_manifest(f"{ROOT}/{demo_s3.manifest_key}", s3_options)
    return [r for r in recs if r.etag and "-" not in r.etag][:2]


# -- verify: one status per record, every scheme that loads -------------------------------------------
def _mixed_manifest(tmp_path: Path, demo_local, small_records) -> tuple[Path, list[str]]:
    rec = small_records[0]
    local = Path(demo_local.root.removeprefix("file://")) / rec.key
    rows = [
        {"subset": "s3", "url": f"{ROOT}/{rec.key}", "etag": rec.etag},
        {"subset": "chained", "url": f"simplecache::{ROOT}/{rec.key}", "etag": rec.etag},
        {"subset": "file-url", "url": f"file://{local}", "etag": rec.etag},
        {"subset": "path", "url": str(local), "etag": rec.etag},
    ]
    fn = tmp_path / "mixed.json"
    fn.write_text(json.dumps(rows))
    return fn, [r["subset"] for r in rows]


def test_verify_gives_every_record_its_own_status_for_every_scheme(
    tmp_path, demo_s3, demo_local, small_records, s3_options, monkeypatch
):
    fn, names = _mixed_manifest(tmp_path, demo_local, small_records)
    # each record loads as written (the chained one through a local cache)
    cat = ManifestCatalog(str(fn), storage_options=s3_options)
    shapes = {n: cat[n].read().shape for n in names}
    assert len(set(shapes.values())) == 1
    monkeypatch.chdir(tmp_path)  # file:// URLs are absolute, whatever the current folder
    table = verify_manifest(str(fn), storage_options=s3_options, deep=True)
    assert table["subset"].tolist() == names
    assert table["status"].tolist() == ["ok"] * 4, table[["subset", "status", "message"]]


def test_cli_verify_does_not_abort_on_a_chained_record(
    tmp_path, demo_s3, demo_local, small_records, moto_server, capsys, monkeypatch
):
    fn, names = _mixed_manifest(tmp_path, demo_local, small_records)
    monkeypatch.chdir(tmp_path)
    storage._SHARED.clear()
    code = cli.main(["--endpoint-url", moto_server, "verify", str(fn), "--deep", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = json.loads(out)
    assert [(r["subset"], r["status"]) for r in rows] == [(n, "ok") for n in names]


# -- bare exceptions ----------------------------------------------------------------------------------
def test_non_numeric_listing_ttl_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError) as err:
        list(intake.open_cpg(str(tmp_path), listing_ttl="an hour"))
    assert "listing_ttl" in str(err.value) and "an hour" in str(err.value)
    yaml = tmp_path / "cat.yaml"
    yaml.write_text(
        "sources:\n  g:\n    driver: cpg\n    args:\n"
        f"      urlpath: {tmp_path}\n      listing_ttl: soon\n"
    )
    with pytest.raises(ParameterError):
        list(intake.open_catalog(str(yaml)).g)


def test_http_record_with_s3_options_is_a_cpg_error_naming_it(request, tmp_path, s3_options):
    base, www = request.getfixturevalue("http_root")  # test_storage's loopback HTTP server
    pd.DataFrame({"Metadata_Well": ["A01"], "Cells_x": [1.0]}).to_csv(www / "t.csv", index=False)
    fn = tmp_path / "m.json"
    fn.write_text(json.dumps([{"subset": "t", "url": f"{base}/t.csv"}]))
    assert ManifestCatalog(str(fn))["t"].read()["Cells_x"].tolist() == [1.0]
    try:  # the options are the S3 store's: HTTP gets none, or a ParameterError names them
        got = ManifestCatalog(str(fn), storage_options=s3_options)["t"].read()
    except CPGError as exc:
        assert f"{base}/t.csv" in str(exc)
    else:
        assert got["Cells_x"].tolist() == [1.0]


def test_chained_url_under_root_is_a_cpg_error_or_loads(
    demo_s3, small_records, s3_options, tmp_path
):
    rec = small_records[0]
    fn = tmp_path / "m.json"
    fn.write_text(json.dumps([{"subset": "a", "url": rec.url, "etag": rec.etag}]))
    try:
        out = ManifestCatalog(str(fn), root=f"simplecache::{ROOT}", storage_options=s3_options)[
            "a"
        ].read()
    except CPGError as exc:
        assert "simplecache::" in str(exc)
    else:
        want = ManifestCatalog(str(fn), root=ROOT, storage_options=s3_options)["a"].read()
        pd.testing.assert_frame_equal(out, want)


@pytest.fixture
def one_plate_bucket(make_bucket, s3_admin, demo_local) -> str:
    bucket = make_bucket()
    src = Path(demo_local.root.removeprefix("file://"))
    base = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1"
    for plate in ("BR00117037", "BR00117038"):
        key = f"{base}/{plate}/{plate}.parquet"
        s3_admin.pipe(f"{bucket.removeprefix('s3://')}/{key}", (src / key).read_bytes())
    s3_admin.invalidate_cache()
    return bucket


def test_plate_deleted_after_listing_is_a_storage_error_suggesting_refresh(
    one_plate_bucket, s3_admin, s3_options
):
    storage._SHARED.clear()
    src = GallerySource(
        one_plate_bucket, project="cpg0016-jump", source="source_4", product="profiles",
        storage_options=s3_options, batch="2021_04_26_Batch1",
    )  # fmt: skip
    ddf = src.to_dask()
    assert len(src.file_keys()) == 2
    s3_admin.rm(f"{one_plate_bucket.removeprefix('s3://')}/{src.file_keys()[1]}")
    with pytest.raises(StorageError) as err:
        ddf.compute()
    assert "BR00117038" in str(err.value) and "refresh" in str(err.value)


def test_missing_bucket_through_the_catalog_is_a_cpg_error(s3_options):
    storage._SHARED.clear()
    src = GallerySource(
        "s3://no-such-bucket-i17", project="cpg0016-jump", source="source_4",
        product="profiles", storage_options=s3_options,
    )  # fmt: skip
    with pytest.raises(StorageError) as err:  # not "there are no batches here"
        src.read()
    assert "no-such-bucket-i17" in str(err.value) and "bucket" in str(err.value)
