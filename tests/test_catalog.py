"""The gallery catalog over the loopback S3 server: navigation, parameters, cost, freezing."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import intake
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs

import intake_cpg
from intake_cpg import storage
from intake_cpg.errors import EtagMismatchError, ParameterError, ProductNotFoundError

REPO = Path(__file__).resolve().parents[1]
ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PLATE_KEY = (
    "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
)


@pytest.fixture
def fresh():
    """Forget the process-wide storages so request counts start from zero."""
    storage._SHARED.clear()
    yield
    storage._SHARED.clear()


@pytest.fixture
def cat(demo_s3, s3_options, fresh):
    return intake.open_cpg(ROOT, storage_options=s3_options)


def _direct(s3_options, key: str) -> pd.DataFrame:
    fs = s3fs.S3FileSystem(**s3_options)
    with fs.open(f"{ROOT}/{key}", "rb") as f:
        return pq.read_table(f).to_pandas()


# -- navigation -------------------------------------------------------------------------------
def test_root_lists_projects_only(cat):
    assert cat.storage.requests["ls"] == 0  # opening lists nothing; iterating lists the root
    assert list(cat) == ["cpg0004-lincs", "cpg0016-jump", "cpg0016-jump-assembled"]
    assert cat.storage.requests["ls"] == 1
    assert cat.storage.storage_options["anon"] is True


def test_accession_alias_and_dotted_names(cat):
    assert cat["cpg0016"].project == "cpg0016-jump"
    assert cat["cpg0004"].project == "cpg0004-lincs"
    src = cat["cpg0016-jump.source_4"]
    assert src.source == "source_4"
    entry = cat["cpg0016.source_4.profiles"]
    assert isinstance(entry, intake_cpg.gallery_source.GallerySource)
    assert cat["cpg0016-jump", "source_4"].source == "source_4"


def test_products_present_per_source(cat):
    assert list(cat["cpg0016-jump"]["source_4"]) == [
        "profiles",
        "load_data",
        "analysis",
        "backend",
        "dl_profiles",
        "embeddings",
        "images",  # its images/ folder holds illumination functions only: listed by folder
    ]
    assert "platemaps" in list(cat["cpg0004-lincs"]["broad"])
    assert list(cat["cpg0016-jump-assembled"]["source_all"]) == ["profiles_assembled"]


def test_a_sources_products_are_found_in_one_round_trip(demo_s3, moto_server, fresh):
    """The source folder and its two stage folders (``workspace/``, ``workspace_dl/``) are
    listed at once. Each of those listings is held at the proxy until all three have
    arrived: listed one after another, the first would wait alone and time out."""
    import threading

    from faultproxy import FaultProxy

    arrived = threading.Barrier(3)
    waits: list[str] = []

    def together(record: object) -> None:
        try:
            arrived.wait(timeout=5)
            waits.append("together")
        except threading.BrokenBarrierError:
            waits.append("alone")

    with FaultProxy(moto_server) as proxy:
        stage = r"prefix=cpg0016-jump(/|%2F)source_4(/|%2F)(workspace(_dl)?(/|%2F))?(&|$)"
        proxy.add("hook", method="GET", path=stage, hook=together)
        opts = {"anon": True, "client_kwargs": {"endpoint_url": proxy.url}}
        products = list(intake.open_cpg(ROOT, storage_options=opts)["cpg0016-jump"]["source_4"])
    assert {"profiles", "dl_profiles"} <= set(products)
    assert waits == ["together"] * 3


def test_unknown_names_suggest_close_matches(cat):
    with pytest.raises(ProductNotFoundError, match="did you mean 'cpg0016-jump'") as err:
        cat["cpg0016-jmp"]
    assert isinstance(err.value, KeyError)
    with pytest.raises(KeyError, match="did you mean 'source_4'"):
        cat["cpg0016-jump"]["source4"]
    with pytest.raises(KeyError, match="did you mean 'profiles'"):
        cat["cpg0016-jump"]["source_4"]["profile"]


def test_unknown_batch_and_plate_say_which_exist(cat):
    entry = cat["cpg0016-jump"]["source_4"]["profiles"]
    with pytest.raises(ProductNotFoundError, match="2021_04_26_Batch1"):
        cat["cpg0016-jump"]["source_4"]["profiles"](batch="2021_04_26_Batch9")
    src = entry(batch=BATCH, plate="BR00000000")
    with pytest.raises(ProductNotFoundError, match="BR00117037") as err:
        src.to_dask()
    assert "no plate named 'BR00000000'" in str(err.value)


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "%2e%2e", "a/b", "{{ 7*7 }}"])
def test_bad_plate_values_rejected_before_any_request(cat, bad):
    src_cat = cat["cpg0016-jump"]["source_4"]
    src_cat["profiles"].describe()
    before = sum(src_cat.storage.requests.values())
    with pytest.raises(ParameterError):
        src_cat["profiles"](batch=BATCH, plate=bad).to_dask()
    assert sum(src_cat.storage.requests.values()) == before


# -- parameters and loading ---------------------------------------------------------------------
def test_profiles_parameters_list_allowed_values(cat):
    desc = cat["cpg0016-jump"]["source_4"]["profiles"].describe()
    params = {p["name"]: p for p in desc["user_parameters"]}
    assert set(params) == {"batch", "plate", "variant"}
    assert params["batch"]["allowed"] == ["2021_04_26_Batch1", "2021_05_31_Batch2", "*"]
    assert params["plate"]["default"] == "*"
    md = desc["metadata"]
    assert md["project"] == "cpg0016-jump" and md["product"] == "profiles"
    assert "{batch}/{plate}/{plate}" in md["template"]
    assert md["url_pattern"].startswith("s3://cpg-demo/cpg0016-jump/source_4/workspace/profiles/")


def test_one_plate_equals_direct_read(cat, s3_options):
    src = cat["cpg0016-jump"]["source_4"]["profiles"](batch=BATCH, plate="BR00117037")
    got = src.read()
    want = _direct(s3_options, PLATE_KEY)
    cols = list(want.columns)
    assert got[cols].reset_index(drop=True).astype(want.dtypes.to_dict()).equals(want)
    assert (got["Metadata_Batch"] == BATCH).all()


def test_batch_and_glob_and_all(cat):
    profiles = cat["cpg0016-jump"]["source_4"]["profiles"]
    batch = profiles(batch=BATCH).to_dask()
    assert batch.npartitions == 2
    counts = batch.groupby("Metadata_Plate").size().compute().to_dict()
    assert counts == {"BR00117037": 384, "BR00117038": 384}
    assert profiles(batch=BATCH, plate="BR0011703[7]").to_dask().npartitions == 1
    every = profiles().to_dask()
    md = profiles.describe()["metadata"]
    assert every.npartitions == md["n_plates"]


def test_digit_plate_names_stay_strings(cat):
    df = cat["cpg0016-jump"]["source_2"]["profiles"](plate="1053601756").read()
    assert df["Metadata_Plate"].unique().tolist() == ["1053601756"]
    assert pd.api.types.is_string_dtype(df["Metadata_Plate"])


def test_lincs_variants_and_platemaps(cat):
    broad = cat["cpg0004-lincs"]["broad"]
    desc = broad["profiles"].describe()
    variants = {p["name"]: p for p in desc["user_parameters"]}["variant"]
    assert "normalized_feature_select_negcon_batch" in variants["allowed"]
    assert {"", "augmented", "normalized"} <= set(variants["allowed"])
    df = broad["profiles"](variant="augmented").read()
    assert df["Metadata_Plate"].nunique() >= 2
    bp = broad["platemaps"]().read()
    assert {"Assay_Plate_Barcode", "Plate_Map_Name"} <= set(bp.columns)
    assert "C-7161-01-LM6-001" in set(bp["Plate_Map_Name"])
    pm = broad["platemaps"](platemap="C-7161-01-LM6-001").read()
    assert "well_position" in pm.columns and len(pm) == 384
    with pytest.raises(ProductNotFoundError, match="C-7161-01-LM6-001"):
        broad["platemaps"](platemap="C-7161-01-LM6-002").read()


def test_other_tables_load(cat):
    s4 = cat["cpg0016-jump"]["source_4"]
    ld = s4["load_data"](batch=BATCH, plate="BR00117037").read()
    assert (ld["Metadata_Plate"] == "BR00117037").all()
    cells = s4["analysis"](batch=BATCH, plate="BR00117037", compartment="Cells")
    assert cells.to_dask().npartitions >= 1
    assert len(cells.file_keys()) >= 2 and all(
        k.endswith(("Cells.csv", "Cells.csv.gz")) for k in cells.file_keys()
    )
    nuclei = s4["analysis"](batch=BATCH, plate="BR00117037", compartment="Nuclei").read()
    assert len(nuclei) > 0
    backend = s4["backend"](batch=BATCH, plate="BR00117037").read()
    assert len(backend) > 0
    dl = s4["dl_profiles"](batch=BATCH, plate="BR00117037")
    dl_df = dl.read()
    emb_cols = [c for c in dl_df.columns if c.endswith("_emb")]
    assert (
        emb_cols
        and isinstance(dl_df[emb_cols[0]].iloc[0], (list, tuple))
        or hasattr(dl_df[emb_cols[0]].iloc[0], "__len__")
    )
    emb = s4["embeddings"](batch=BATCH, plate="BR00117037")
    assert all(k.endswith("embedding.parquet") for k in emb.file_keys())


# -- assembled profiles -----------------------------------------------------------------------
def test_assembled_subsets_versions_variants(cat, s3_options):
    asm = cat["cpg0016-jump-assembled"]["source_all"]["profiles_assembled"]
    assert list(asm) == ["ALL", "COMPOUND", "CRISPR", "ORF"]
    orf = {p["name"]: p for p in asm["ORF"].describe()["user_parameters"]}
    assert orf["version"]["default"] == "v1.0a"  # the newest by version order
    assert orf["version"]["allowed"] == ["v1.0", "v1.0a"]
    # the bundled JUMP manifest points 'orf' at this variant
    assert (
        orf["variant"]["default"]
        == "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony"
    )
    md = asm["ORF"].describe()["metadata"]
    assert md["provenance"]["subset"] == "orf"
    assert md["provenance"]["recipe_ref"] == "a917fa79342ff92cf0ea05d6d9174d9028a90f8f"
    src = asm["ORF"](version="v1.0a", variant="profiles_wellpos_cc_var_mad_outlier")
    want = _direct(s3_options, src.file_keys()[0])
    got = src.read()[list(want.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert all(pd.api.types.is_string_dtype(got[c]) for c in got if c.startswith("Metadata_"))


def test_assembled_verify_uses_manifest_etags(demo_s3, s3_options, fresh):
    manifest = f"{ROOT}/{demo_s3.manifest_key}"
    cat = intake.open_cpg(ROOT, storage_options=s3_options, manifests=[manifest])
    asm = cat["cpg0016-jump-assembled.source_all.profiles_assembled"]
    assert len(asm["COMPOUND"](verify=True).read()) > 0  # the demo manifest has the true ETag
    # the bundled JUMP manifest carries the real bucket's ETag, which the demo cannot match
    storage._SHARED.clear()
    plain = intake.open_cpg(ROOT, storage_options=s3_options)
    with pytest.raises(EtagMismatchError, match="expected"):
        plain["cpg0016-jump-assembled.source_all.profiles_assembled.COMPOUND"](verify=True).read()


# -- cost bounds -------------------------------------------------------------------------------
def test_cost_of_browsing(cat):
    req = cat.storage.requests
    list(cat)
    assert req["ls"] == 1
    project = cat["cpg0016-jump"]
    assert req["ls"] == 1
    source = project["source_4"]
    assert req["ls"] == 2
    list(source)
    assert req["ls"] == 5  # the source, then workspace/ and workspace_dl/ concurrently
    assert len(source.df) == 7  # the 6 table products and images (present by folder, no listing)
    assert req["ls"] == 5
    source["profiles"].describe()  # the base folder, then one recursive listing per batch
    assert (req["ls"], req["find"]) == (5 + 1, 2)
    source["profiles"](batch=BATCH).to_dask()
    assert (req["ls"], req["find"]) == (6, 2)  # the files come from those same listings
    assert sum(req.values()) == req["ls"] + req["find"]


def test_reload_and_pickle_do_not_relist(cat):
    source = cat["cpg0016-jump"]["source_4"]
    list(source)
    n = source.storage.requests["ls"]
    source.force_reload()
    clone = pickle.loads(pickle.dumps(source))
    assert list(clone) == list(source)
    assert source.storage.requests["ls"] == n


def test_disk_cache_serves_a_second_process(demo_s3, s3_options, tmp_path, fresh):
    code = f"""
import json, intake
cat = intake.open_cpg({ROOT!r}, storage_options={s3_options!r}, cache_dir={str(tmp_path)!r})
src = cat["cpg0016-jump"]["source_4"]["profiles"]
src.describe()
print(json.dumps(dict(cat.storage.requests)))
"""
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(2)
    ]
    assert (runs[0]["ls"], runs[0]["find"]) == (6, 2)
    assert runs[1].get("ls", 0) == runs[1].get("find", 0) == 0


def test_refresh_lists_again(cat):
    cat["cpg0016-jump"]
    n = cat.storage.requests["ls"]
    list(cat)
    assert cat.storage.requests["ls"] == n
    cat.refresh()
    list(cat)
    assert cat.storage.requests["ls"] == n + 1


# -- tables, search, freeze ---------------------------------------------------------------------
def test_df_and_search_stay_on_one_level(cat):
    df = cat.df
    assert list(df["name"]) == list(cat)
    assert set(df["accession"]) == {"cpg0004", "cpg0016"}
    found = cat.search("lincs")
    assert list(found) == ["cpg0004-lincs"]
    assert list(cat.search(accession="cpg0016")) == ["cpg0016-jump", "cpg0016-jump-assembled"]
    assert cat.storage.requests["ls"] == 1  # searching did not descend
    with pytest.raises(ValueError, match="one level"):
        cat.search("x", depth=2)


def test_freeze_source_round_trip_without_listing(cat, s3_options, tmp_path):
    source = cat["cpg0016-jump"]["source_4"]
    path = tmp_path / "source_4.yaml"
    source.save(str(path))
    text = path.read_text()
    assert "testing" not in text  # no secrets; anonymous options only
    storage._SHARED.clear()
    frozen = intake.open_catalog(str(path))
    assert list(frozen) == list(source)
    want = {p["name"]: p.get("allowed") for p in source["profiles"].describe()["user_parameters"]}
    got = {p["name"]: p.get("allowed") for p in frozen["profiles"].describe()["user_parameters"]}
    assert got == want
    assert all(sum(st.requests.values()) == 0 for st in storage._SHARED.values())
    df = frozen["profiles"](batch=BATCH, plate="BR00117037").read()
    assert df["Metadata_Plate"].unique().tolist() == ["BR00117037"]


def test_yaml_catalogs(demo_s3, s3_options, fresh):
    cat = intake.open_catalog(str(REPO / "catalogs" / "cellpainting-gallery.yaml"))
    gallery = cat.gallery(root=ROOT, storage_options=s3_options)
    assert "cpg0016-jump" in list(gallery)
    demo = intake.open_catalog(str(REPO / "catalogs" / "demo.yaml"))
    g2 = demo.gallery(root=ROOT, storage_options=s3_options)
    assert list(g2) == list(gallery)


# -- distributed -------------------------------------------------------------------------------
def test_load_on_cluster_reads_on_workers(cat, dask_client):
    src = cat["cpg0016-jump"]["source_4"]["profiles"](batch=BATCH)
    local = src.read().sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    clone = pickle.loads(pickle.dumps(src))
    ddf = clone.to_dask()
    remote = dask_client.compute(ddf).result()
    remote = remote.sort_values(["Metadata_Plate", "Metadata_Well"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(remote, local)
    client_pid = __import__("os").getpid()
    pids = dask_client.run(lambda: __import__("os").getpid())
    assert client_pid not in pids.values()


def test_assembled_version_outside_allowed_names_what_exists(cat):
    asm = cat["cpg0016-jump-assembled.source_all.profiles_assembled"]
    with pytest.raises(ProductNotFoundError, match="did you mean .*'v1.0a'"):
        asm["ORF"](version="v1.0c")


def test_freeze_writes_an_absolute_root_and_verify_works_on_a_local_copy(
    demo_local, tmp_path, fresh
):
    import os

    here = os.getcwd()
    os.chdir(Path(demo_local.root).parent)
    try:
        rel = os.path.basename(demo_local.root)
        cat = intake.open_cpg(rel, manifests=[f"{rel}/{demo_local.manifest_key}"])
        asm = cat["cpg0016-jump-assembled.source_all.profiles_assembled"]
        # a local copy keeps no S3 ETag: the entry recomputes it from the bytes
        assert len(asm["COMPOUND"](verify=True).read()) > 0
        path = tmp_path / "asm.yaml"
        asm.save(str(path))
    finally:
        os.chdir(here)
    storage._SHARED.clear()
    frozen = intake.open_catalog(str(path))
    assert len(frozen["COMPOUND"].read()) > 0


def test_batch_glob_selects_matching_batches(cat):
    profiles = cat["cpg0016-jump"]["source_4"]["profiles"]
    src = profiles(batch="2021_0[45]*")
    assert src.to_dask().npartitions == profiles.describe()["metadata"]["n_plates"]
    with pytest.raises(ProductNotFoundError, match="2021_04_26_Batch1"):
        profiles(batch="1999_*")


def test_refresh_forgets_what_another_process_cached(demo_s3, s3_options, tmp_path, fresh):
    first = intake.open_cpg(ROOT, storage_options=s3_options, cache_dir=str(tmp_path))
    list(first)
    storage._SHARED.clear()  # a new process: nothing in memory, the disk cache remains
    second = intake.open_cpg(ROOT, storage_options=s3_options, cache_dir=str(tmp_path))
    second.refresh()
    list(second)
    assert second.storage.requests["ls"] == 1


def test_chained_urls_are_refused_with_advice(fresh):
    with pytest.raises(intake_cpg.StorageError, match="chained fsspec URLs"):
        list(intake.open_cpg("simplecache::s3://cellpainting-gallery"))


def test_every_level_describes_itself_without_listing(cat):
    d = cat.describe()
    assert d["level"] == "gallery" and d["root"] == ROOT
    assert cat["cpg0016-jump"].describe()["level"] == "project"
    assert (
        cat.storage.requests["ls"] == 1
    )  # the root, to find the project; describing lists nothing
