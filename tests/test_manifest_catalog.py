"""Manifests as Intake catalogs, ETag verification against the loopback S3 server, jump.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import intake
import pandas as pd
import pytest

from intake_cpg.errors import EtagMismatchError, ProductNotFoundError
from intake_cpg.etag import verify_manifest
from intake_cpg.manifest import read_manifest
from intake_cpg.manifest_catalog import ManifestCatalog, ManifestProfilesSource

REPO = Path(__file__).resolve().parents[1]
JUMP_YAML = REPO / "catalogs" / "jump.yaml"
JUMP_JSON = REPO / "catalogs" / "jump_profile_index.json"
SUBSETS = {"orf", "crispr", "compound", "orf_interpretable", "crispr_interpretable",
           "compound_interpretable", "all", "all_interpretable"}  # fmt: skip


def _direct(url: str, storage_options: dict | None = None) -> pd.DataFrame:
    return pd.read_parquet(url, storage_options=storage_options or None)


@pytest.fixture(scope="module")
def demo_manifest_url(demo_s3) -> str:
    return f"{demo_s3.root}/{demo_s3.manifest_key}"


def test_open_manifest_catalog_lists_records_with_provenance(
    demo_s3, demo_manifest_url, s3_options
):
    cat = intake.open_cpg_manifest(demo_manifest_url, root=demo_s3.root, storage_options=s3_options)
    assert isinstance(cat, ManifestCatalog)
    assert set(cat) == SUBSETS
    entry = cat["crispr"]
    md = entry.metadata
    assert md["url"].startswith(
        "https://cellpainting-gallery.s3.amazonaws.com/cpg0016-jump-assembled/"
    )
    assert md["storage_url"] == "s3://cellpainting-gallery/" + md["key"]
    assert md["resolved_url"] == f"{demo_s3.root}/{md['key']}"
    assert (md["project"], md["source"], md["path_subset"], md["version"]) == (
        "cpg0016-jump-assembled",
        "source_all",
        "CRISPR",
        "v1.0a",
    )
    assert (
        md["variant"]
        == "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony_PCA_corrected"
    )
    assert md["recipe_ref"] == "a917fa79342ff92cf0ea05d6d9174d9028a90f8f"
    assert md["config_permalink"].endswith("inputs/crispr.json")
    assert len(md["etag"]) >= 32
    # search needs a catalog name; it works and returns a catalog
    assert set(cat.search("interpretable")) == {s for s in SUBSETS if s.endswith("interpretable")}
    with pytest.raises(ProductNotFoundError, match="did you mean 'crispr'"):
        cat["crisper"]


def test_entries_load_as_dask_through_mirror_root(
    demo_s3, demo_manifest_url, s3_options, dask_client
):
    cat = intake.open_cpg_manifest(demo_manifest_url, root=demo_s3.root, storage_options=s3_options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bogus intake warnings on the way
        source = cat["compound"]
    assert isinstance(source, ManifestProfilesSource)
    ddf = source.to_dask()
    got = dask_client.compute(ddf).result()  # read by the worker processes
    want = _direct(source.metadata["resolved_url"], s3_options)
    assert len(got) == len(want) > 0
    cols = [c for c in want.columns if c in got.columns]
    assert len(cols) == len(want.columns)
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), want.reset_index(drop=True), check_dtype=False
    )


def test_verify_demo_manifest_all_ok(demo_s3, demo_manifest_url, s3_options):
    table = verify_manifest(demo_manifest_url, root=demo_s3.root, storage_options=s3_options)
    assert list(table.columns) == ["subset", "url", "expected", "found", "status", "message"]
    assert set(table.subset) == SUBSETS
    assert (table.status == "ok").all(), table.to_string()
    assert (table.expected == table.found).all()
    assert table.expected.str.contains("-").any()  # the demo's multipart object is checked too
    # deep: recomputed from the bytes, multipart part size inferred
    deep = verify_manifest(
        demo_manifest_url, root=demo_s3.root, storage_options=s3_options, deep=True
    )
    assert (deep.status == "ok").all(), deep.to_string()


def test_tampered_object_fails(demo_s3, demo_manifest_url, s3_admin, s3_options, make_bucket):
    bucket = make_bucket()
    records = {r.subset: r for r in read_manifest(demo_manifest_url, s3_options)}
    picked = [records["orf"], records["crispr"]]
    for rec in picked:
        s3_admin.copy(f"{demo_s3.root}/{rec.key}", f"{bucket}/{rec.key}")
    # rewrite the crispr object with other (valid parquet) content: its ETag changes
    tampered = _direct(f"{demo_s3.root}/{records['crispr'].key}", s3_options).iloc[:3]
    s3_admin.pipe(f"{bucket}/{records['crispr'].key}", tampered.to_parquet())
    s3_admin.invalidate_cache()
    manifest = f"{bucket}/manifest.json"
    doc = json.loads(s3_admin.cat(f"{demo_s3.root}/{demo_s3.manifest_key}"))
    s3_admin.pipe(
        manifest, json.dumps([d for d in doc if d["subset"] in ("orf", "crispr")]).encode()
    )

    table = verify_manifest(manifest, root=bucket, storage_options=s3_options).set_index("subset")
    assert table.loc["orf", "status"] == "ok"
    assert table.loc["crispr", "status"] == "mismatch"
    assert table.loc["crispr", "found"] != table.loc["crispr", "expected"]
    # a record whose object is absent under the root is reported, not raised
    missing = verify_manifest(list(records.values()), root=bucket, storage_options=s3_options)
    assert set(missing.status) == {"ok", "mismatch", "missing"}

    cat = intake.open_cpg_manifest(manifest, root=bucket, storage_options=s3_options)
    assert len(cat["orf"](verify=True).read()) > 0
    with pytest.raises(EtagMismatchError) as err:
        cat["crispr"](verify=True).read()
    msg = str(err.value)
    expected = records["crispr"].etag
    assert "'crispr'" in msg and records["crispr"].key in msg and expected in msg
    assert table.loc["crispr", "found"] in msg
    # verify defaults to off and loads; the catalog-wide default turns it on
    assert len(cat["crispr"].read()) == 3
    strict = intake.open_cpg_manifest(
        manifest, root=bucket, verify=True, storage_options=s3_options
    )
    with pytest.raises(EtagMismatchError):
        strict["crispr"].to_dask()


def test_deep_verification_of_local_copy(demo_local, tmp_path):
    manifest = f"{demo_local.root}/{demo_local.manifest_key}"
    ok = verify_manifest(manifest, root=demo_local.root, deep=True)
    assert (ok.status == "ok").all(), ok.to_string()
    # a HEAD-only check of local files has no ETag to compare
    head = verify_manifest(manifest, root=demo_local.root)
    assert (head.status == "error").all() and head.message.str.contains("deep=True").all()
    # tamper one byte of a copy
    copy = tmp_path / "copy"
    shutil.copytree(demo_local.root, copy)
    rec = read_manifest(manifest)[0]
    target = copy / rec.key
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    bad = verify_manifest(manifest, root=str(copy), deep=True).set_index("subset")
    assert bad.loc[rec.subset, "status"] == "mismatch"
    assert (bad.drop(index=rec.subset).status == "ok").all()


def test_verify_parameter_survives_save(demo_local, tmp_path):
    manifest = f"{demo_local.root}/{demo_local.manifest_key}"
    cat = ManifestCatalog(manifest, root=demo_local.root)
    out = tmp_path / "saved.yaml"
    cat.save(str(out))
    text = out.read_text()
    assert "type: bool" in text and "verify" in text
    reopened = intake.open_catalog(str(out))
    assert set(reopened) == SUBSETS
    params = {p.name: p for p in reopened._entries["orf"]._user_parameters}
    assert params["verify"].type == "bool" and params["verify"].default is False


def test_jump_yaml_raises_no_bogus_warning():
    """A fresh process with UserWarnings as errors opens, parameterises and instantiates entries."""
    code = (
        f"import intake; cat = intake.open_catalog({str(JUMP_YAML)!r}); "
        "s = cat(root='/mirror', storage_options={'anon': False}).crispr; "
        "t = cat.orf(root='s3://other/p', verify=True); "
        "print(s.urlpath[0]); print(t.urlpath[0], t._verify)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith(
        "/mirror/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/CRISPR/"
    )
    assert second.startswith("s3://other/p/cpg0016-jump-assembled/") and second.endswith(" True")


def test_jump_yaml_lists_real_subsets_and_loads_from_mirror(demo_s3, demo_local, s3_options):
    cat = intake.open_catalog(str(JUMP_YAML))
    names = list(cat)
    real = [r["subset"] for r in json.loads(JUMP_JSON.read_text())]
    assert names == real and {"compound", "orf", "crispr"} <= set(names)
    # default root: the real bucket, anonymously (no request is made here)
    orf = cat.orf
    assert orf.urlpath == [read_manifest(str(JUMP_JSON))[0].storage_url]
    assert orf.storage_options == {"anon": True}
    assert orf.metadata["etag"] == "064759b3a850dc351b357116b3e7b32d"
    # mirror on the loopback S3 server (catalog-wide parameters)
    mirrored = cat(root=demo_s3.root, storage_options=s3_options)
    source = mirrored.crispr
    key = read_manifest(str(JUMP_JSON))[1].key
    assert source.urlpath == [f"{demo_s3.root}/{key}"]
    got = source.read()
    want = _direct(f"{demo_s3.root}/{key}", s3_options)
    assert len(got) == len(want) > 0
    assert got["Metadata_JCP2022"].tolist() == want["Metadata_JCP2022"].tolist()
    # a local mirror through the entry parameter
    local = cat.orf(root=demo_local.root).to_dask().compute()
    assert len(local) == len(_direct(f"{demo_local.root}/{read_manifest(str(JUMP_JSON))[0].key}"))
