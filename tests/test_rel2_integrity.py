"""Reliability round two (issue 17): never return wrong data.

* a manifest opened with ``root=`` never reads outside that root, whatever its URLs hold
  (``..``, ``%2e%2e``, backslashes, NUL), directly and through ``catalogs/jump.yaml``;
* ``verify=True`` pins every read to the verified ETag, so an object replaced between
  ``to_dask()`` and ``compute()`` is an ``EtagMismatchError`` naming it (on the 2-process
  cluster), never the new rows;
* ``?versionId=`` in a manifest URL is kept and that version is read;
* a plate whose file does not follow the batch's sample plate is read from where it is, and
  a plate folder without a table is skipped with a warning naming it (or refused with
  ``strict=True``).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import intake
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_cpg import storage
from intake_cpg.errors import CPGError, EtagMismatchError, ProductNotFoundError
from intake_cpg.etag import verify_manifest
from intake_cpg.gallery_source import GallerySource
from intake_cpg.manifest import read_manifest
from intake_cpg.manifest_catalog import ManifestCatalog

REPO = Path(__file__).resolve().parents[1]
GALLERY = "https://cellpainting-gallery.s3.amazonaws.com"
SECRET_ROWS = pd.DataFrame({"Metadata_Well": ["Z99"], "Cells_secret": [42.0]})


# -- containment under root= --------------------------------------------------------------------------
#: Record URLs that try to leave a mirror root.
ESCAPING_URLS = {
    "dotdot": f"{GALLERY}/cpg0016-jump/../../outside/secret.parquet",
    "encoded dotdot": f"{GALLERY}/cpg0016-jump/%2e%2e/%2E%2E/outside/secret.parquet",
    "encoded slash": f"{GALLERY}/cpg0016-jump/..%2f..%2foutside/secret.parquet",
    "backslash": f"{GALLERY}/cpg0016-jump/..\\..\\outside/secret.parquet",
    "nul": f"{GALLERY}/cpg0016-jump/%00/../../outside/secret.parquet",
    "leading dotdot": f"{GALLERY}/../outside/secret.parquet",
}


@pytest.fixture
def mirror(tmp_path) -> Path:
    """``tmp/mirror`` (the root) beside ``tmp/outside/secret.parquet`` (must never be read)."""
    root = tmp_path / "mirror"
    (root / "cpg0016-jump").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    SECRET_ROWS.to_parquet(tmp_path / "outside" / "secret.parquet")
    return root


@pytest.mark.parametrize("name", list(ESCAPING_URLS))
def test_manifest_record_cannot_leave_root(mirror, tmp_path, name):
    fn = tmp_path / "m.json"
    fn.write_text(json.dumps([{"subset": "s", "url": ESCAPING_URLS[name]}]))
    cat = ManifestCatalog(str(fn), root=str(mirror))
    with pytest.raises(CPGError) as err:
        cat["s"].read()
    assert "root" in str(err.value)
    table = verify_manifest(str(fn), root=str(mirror), deep=True)
    assert table["status"].tolist() == ["error"] and "root" in table["message"][0]


def test_tampered_manifest_through_jump_yaml_cannot_leave_root(mirror, tmp_path):
    shutil.copy(REPO / "catalogs" / "jump.yaml", tmp_path / "jump.yaml")
    records = json.loads((REPO / "catalogs" / "jump_profile_index.json").read_text())
    listed = records["datasets"] if isinstance(records, dict) else records
    for rec in listed:
        for field in ("url", "profile_url"):
            if field in rec:
                rec[field] = ESCAPING_URLS["dotdot"]
    (tmp_path / "jump_profile_index.json").write_text(json.dumps(records))
    cat = intake.open_catalog(str(tmp_path / "jump.yaml"))
    with pytest.raises(CPGError) as err:
        cat.orf(root=str(mirror)).read()
    assert "root" in str(err.value)


# -- verify=True pins the reads ---------------------------------------------------------------------------
def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    return buf.getvalue()


@pytest.fixture
def pinned(make_bucket, s3_admin, demo_s3, s3_options, tmp_path) -> dict[str, Any]:
    """A copy of one assembled profile in a fresh bucket, and a manifest with its ETag."""
    recs = list(read_manifest(f"s3://cpg-demo/{demo_s3.manifest_key}", s3_options))
    rec = next(r for r in recs if r.etag and "-" not in r.etag)
    bucket = make_bucket().removeprefix("s3://")
    data = s3_admin.cat(f"cpg-demo/{rec.key}")
    s3_admin.pipe(f"{bucket}/{rec.key}", data)
    s3_admin.invalidate_cache()
    fn = tmp_path / "m.json"
    fn.write_text(
        json.dumps([{"subset": "s", "url": f"s3://{bucket}/{rec.key}", "etag": rec.etag}])
    )
    rows = len(pd.read_parquet(io.BytesIO(data)))
    return {"bucket": bucket, "key": rec.key, "manifest": fn, "rows": rows, "data": data}


def test_verified_etag_pins_every_read_on_the_cluster(pinned, s3_admin, s3_options, dask_client):
    storage._SHARED.clear()
    src = ManifestCatalog(str(pinned["manifest"]), storage_options=s3_options)["s"](verify=True)
    ddf = src.to_dask()
    assert len(ddf.compute()) == pinned["rows"]  # verified, read whole on the workers
    replaced = pd.read_parquet(io.BytesIO(pinned["data"])).head(5)  # same columns, 5 rows
    s3_admin.pipe(f"{pinned['bucket']}/{pinned['key']}", _parquet(replaced))
    s3_admin.invalidate_cache()
    with pytest.raises(EtagMismatchError) as err:
        ddf.compute()
    assert pinned["key"] in str(err.value)


# -- ?versionId= -------------------------------------------------------------------------------------------
@pytest.fixture
def versioned(make_bucket, s3_admin) -> dict[str, Any]:
    bucket = make_bucket().removeprefix("s3://")
    s3_admin.call_s3(
        "put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    key = "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/x.parquet"
    old = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A03"], "Cells_x": [1.0, 2.0, 3.0]})
    s3_admin.pipe(f"{bucket}/{key}", _parquet(old))
    version = s3_admin.info(f"{bucket}/{key}", refresh=True)["VersionId"]
    s3_admin.pipe(f"{bucket}/{key}", _parquet(old.head(1)))
    s3_admin.invalidate_cache()
    return {"bucket": bucket, "key": key, "version": version, "rows": 3}


@pytest.mark.parametrize("form", ["s3", "https"])
def test_version_id_in_a_manifest_url_reads_that_version(versioned, s3_options, tmp_path, form):
    b, k, v = versioned["bucket"], versioned["key"], versioned["version"]
    url = f"s3://{b}/{k}" if form == "s3" else f"https://{b}.s3.amazonaws.com/{k}"
    fn = tmp_path / "m.json"
    fn.write_text(json.dumps([{"subset": "s", "url": f"{url}?versionId={v}"}]))
    cat = ManifestCatalog(str(fn), storage_options=s3_options)
    assert v in cat["s"].metadata["resolved_url"] or cat["s"].metadata.get("version_id") == v
    assert len(cat["s"].read()) == versioned["rows"]


# -- file names guessed from one sample plate --------------------------------------------------------------
BASE = "cpg0099-rel/source_1/workspace/profiles/B1"


@pytest.fixture
def uneven_batch(make_bucket, s3_admin) -> str:
    """P1 as parquet (the sample), P2 as csv.gz only, P3 an empty plate folder (a README)."""
    bucket = make_bucket().removeprefix("s3://")
    frame = pd.DataFrame({"Metadata_Well": ["A01", "A02"], "Cells_x": [1.0, 2.0]})
    s3_admin.pipe(f"{bucket}/{BASE}/P1/P1.parquet", _parquet(frame))
    s3_admin.pipe(
        f"{bucket}/{BASE}/P2/P2.csv.gz", gzip.compress(frame.to_csv(index=False).encode())
    )
    s3_admin.pipe(f"{bucket}/{BASE}/P3/README.md", b"nothing here yet")
    s3_admin.invalidate_cache()
    return f"s3://{bucket}"


def _source(root: str, opts: dict[str, Any], **kw: Any) -> GallerySource:
    storage._SHARED.clear()
    return GallerySource(
        root, project="cpg0099-rel", source="source_1", product="profiles",
        storage_options=opts, batch="B1", **kw,
    )  # fmt: skip


def test_plates_not_like_the_sample_are_read_from_where_they_are(uneven_batch, s3_options, caplog):
    src = _source(uneven_batch, s3_options)
    with caplog.at_level(logging.WARNING, logger="intake_cpg"):
        keys = src.file_keys()
    assert keys == [f"{BASE}/P1/P1.parquet", f"{BASE}/P2/P2.csv.gz"]
    assert any("P3" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    out = src.read()
    assert sorted(out["Metadata_Plate"].unique()) == ["P1", "P2"] and len(out) == 4


def test_a_plate_without_a_table_raises_with_strict(uneven_batch, s3_options):
    with pytest.raises(ProductNotFoundError) as err:
        _source(uneven_batch, s3_options, strict=True).file_keys()
    assert "P3" in str(err.value)
