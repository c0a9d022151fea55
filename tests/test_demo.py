"""The demo gallery: structure, real names, string metadata, determinism, the module's CLI."""

from __future__ import annotations

import gzip
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_cpg.demo import (
    GALLERY_BUCKET,
    WELLS,
    build_demo,
    feature_names,
    plate_profile,
    select_features,
)
from intake_cpg.errors import ParameterError, StorageError
from intake_cpg.etag import compute_etag
from intake_cpg.layout import parse_key

JUMP = "cpg0016-jump"


def _keys_of(demo, product: str) -> list[str]:
    return [k for k in demo.keys if parse_key(k).product == product]


def test_top_level_items(demo_local):
    tops = {k.split("/", 1)[0] for k in demo_local.keys}
    assert tops == {JUMP, "cpg0004-lincs", "cpg0016-jump-assembled", "dev-scratch", "index.html"}
    assert sorted(demo_local.keys) == list(demo_local.keys)
    on_disk = {
        p.relative_to(demo_local.root).as_posix()
        for p in Path(demo_local.root).rglob("*")
        if p.is_file()
    }
    assert on_disk == set(demo_local.keys)


def test_every_product_is_present_and_parses(demo_local):
    products = {parse_key(k).product for k in demo_local.keys}
    assert {
        "profiles",
        "profiles_assembled",
        "load_data",
        "analysis",
        "backend",
        "dl_profiles",
        "embeddings",
        "illum",
        "barcode_platemap",
        "platemap",
    } <= products
    analysis = {parse_key(k).variant for k in _keys_of(demo_local, "analysis")}
    assert analysis == {"Cells", "Nuclei", "Image"}
    load_data = {Path(k).name for k in _keys_of(demo_local, "load_data")}
    assert {"load_data_with_illum.csv", "load_data_with_illum.parquet"} <= load_data
    assert any("/load_data_csv_orig/" in k for k in _keys_of(demo_local, "load_data"))
    models = {parse_key(k).model for k in _keys_of(demo_local, "dl_profiles")}
    assert models == {
        "cpcnn_zenodo_7114558",
        "efficientnet_v2_imagenet21k_s_feature_vector_2_0260bc96",
    }
    assembled = [parse_key(k) for k in _keys_of(demo_local, "profiles_assembled")]
    assert {p.subset for p in assembled} == {"ALL", "COMPOUND", "CRISPR", "ORF"}
    assert {p.version for p in assembled} == {"v1.0", "v1.0a", "v1.0b"}
    assert "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony" in {
        p.variant for p in assembled
    }


def test_real_batch_and_plate_names(demo_local):
    plates = demo_local.plates
    jump = plates[plates.project == JUMP]
    pairs = set(zip(jump.source, jump.batch, jump.plate, strict=True))
    assert ("source_4", "2021_04_26_Batch1", "BR00117037") in pairs
    assert ("source_4", "2021_04_26_Batch1", "BR00117038") in pairs
    assert ("source_13", "20220914_Run1", "CP-CC9-R1-04") in pairs
    assert any(s == "source_5" and b.startswith("JUMPCPE-") for s, b, _ in pairs)
    digits = jump[jump.plate.str.fullmatch(r"\d+")]
    assert "1053601756" in set(digits.plate) and set(digits.source) == {"source_2"}
    real = pd.read_csv(
        Path(__file__).parents[1] / "intake_cpg/data/cpg0016_plate.csv.gz", dtype=str
    )
    real_pairs = set(
        zip(real.Metadata_Source, real.Metadata_Batch, real.Metadata_Plate, strict=True)
    )
    assert pairs <= real_pairs
    for key in jump.key:
        assert key in demo_local.keys


def test_all_digit_plate_reads_back_as_strings(demo_local):
    (key,) = demo_local.plates.query("plate == '1053601756'").key
    df = pd.read_parquet(Path(demo_local.root, key))
    assert df.Metadata_Plate.unique().tolist() == ["1053601756"]
    assert df.Metadata_Well.tolist() == list(WELLS)
    assert all(pd.api.types.is_string_dtype(df[c]) for c in df.columns if c.startswith("Metadata_"))


def test_metadata_and_dl_id_columns_are_strings_in_every_parquet(demo_local):
    checked = 0
    for key in demo_local.keys:
        if not key.endswith(".parquet"):
            continue
        schema = pq.read_schema(Path(demo_local.root, key))
        ids = [
            f
            for f in schema
            if f.name.startswith("Metadata_") or f.name in ("source", "batch", "plate", "well")
        ]
        assert ids, key
        assert all(f.type == pa.string() for f in ids), (key, ids)
        checked += 1
    assert checked > 20


def test_per_plate_profile_shape_and_values(demo_local):
    key = f"{JUMP}/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
    table = pq.read_table(Path(demo_local.root, key))
    assert table.column_names[:3] == ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]
    assert table.num_rows == 384 and table.num_columns == 3 + 60
    assert all(t == pa.float32() for t in table.schema.types[3:])
    assert set(table.column_names[3:]) <= set(feature_names())
    assert table.equals(plate_profile("source_4", "BR00117037"))
    # the packaged real profile's values are carried over for the columns it has
    real = pq.read_table(Path(__file__).parents[1] / "intake_cpg/data/profiles/BR00117037.parquet")
    real = real.to_pandas().set_index("Metadata_Well").reindex(list(WELLS))
    got = table.to_pandas().set_index("Metadata_Well")
    np.testing.assert_array_equal(
        got["Cells_AreaShape_Zernike_5_1"].to_numpy(),
        real["Cells_AreaShape_Zernike_5_1"].to_numpy(dtype=np.float32),
    )


def test_mixed_feature_source_differs(demo_local):
    root = Path(demo_local.root)
    cols = {}
    for row in demo_local.plates[demo_local.plates.project == JUMP].itertuples():
        cols.setdefault(row.source, set()).add(tuple(pq.read_schema(root / row.key).names[3:]))
    assert all(len(v) == 1 for v in cols.values())  # one feature set per source
    base = set(next(iter(cols["source_4"])))
    mixed = set(next(iter(cols["source_2"])))
    assert base - mixed and mixed - base
    assert all(c.split("_", 1)[0] in ("Cells", "Cytoplasm", "Nuclei", "Image") for c in mixed)
    assert set(next(iter(cols["source_13"]))) == base


def test_lincs_pycytominer_files(demo_local):
    lincs = demo_local.plates[demo_local.plates.project == "cpg0004-lincs"]
    assert set(lincs.source) == {"broad"} and set(lincs.batch) == {"2016_04_01_a549_48hr_batch1"}
    assert set(lincs.variant.dropna()) >= {
        "augmented",
        "normalized",
        "normalized_feature_select_negcon_batch",
    }
    key = lincs[(lincs.plate == "SQ00015116") & (lincs.variant == "augmented")].key.item()
    df = pd.read_csv(Path(demo_local.root, key), dtype=str, keep_default_na=False)
    assert df.Metadata_Plate.unique().tolist() == ["SQ00015116"]
    assert df.Metadata_Plate_Map_Name.unique().tolist() == ["C-7161-01-LM6-001"]
    a07 = df.set_index("Metadata_Well").loc["A07"]
    assert a07.Metadata_broad_sample == "BRD-K25114078-003-08-1"  # from the real platemap
    fs_key = key.replace("_augmented", "_normalized_feature_select_negcon_batch")
    narrow = pd.read_csv(Path(demo_local.root, fs_key), nrows=1)
    assert narrow.shape[1] < df.shape[1]
    barcode = f"cpg0004-lincs/broad/workspace/metadata/platemaps/{lincs.batch.iloc[0]}/barcode_platemap.csv"
    packaged = Path(__file__).parents[1] / (
        "intake_cpg/data/cpg0004-lincs/2016_04_01_a549_48hr_batch1/barcode_platemap.csv"
    )
    assert Path(demo_local.root, barcode).read_bytes() == packaged.read_bytes()


def test_dl_profiles_have_list_embeddings(demo_local):
    (key,) = [k for k in _keys_of(demo_local, "dl_profiles") if "cpcnn" in k and "BR00117037" in k]
    table = pq.read_table(Path(demo_local.root, key))
    assert table.column_names == ["source", "batch", "plate", "well", "all_emb"]
    assert pa.types.is_list(table.schema.field("all_emb").type)
    assert table.column("plate").to_pylist() == ["BR00117037"] * 384


def test_analysis_csv_looks_like_cellprofiler(demo_local):
    key = next(
        k for k in _keys_of(demo_local, "analysis") if k.endswith("CP-CC9-R1-04-A01-1/Cells.csv")
    )
    df = pd.read_csv(
        Path(demo_local.root, key), dtype={"Metadata_Plate": str, "Metadata_Site": str}
    )
    assert list(df.columns[:6]) == [
        "ImageNumber",
        "ObjectNumber",
        "Metadata_Source",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
    ]
    assert df.ObjectNumber.tolist() == list(range(1, len(df) + 1))
    assert set(df.Metadata_Plate) == {"CP-CC9-R1-04"} and set(df.Metadata_Site) == {"1"}
    assert "AreaShape_Area" in df.columns  # per-object tables drop the compartment prefix


def test_manifest_shape_and_local_etags(demo_local):
    records = json.loads(Path(demo_local.root, demo_local.manifest_key).read_bytes())
    assert isinstance(records, list) and len(records) == 8
    prefix = f"https://{GALLERY_BUCKET}.s3.amazonaws.com/"
    for rec in records:
        assert list(rec) == ["subset", "url", "recipe_permalink", "config_permalink", "etag"]
        key = rec["url"].removeprefix(prefix)
        assert key in demo_local.keys
        assert rec["etag"] == compute_etag(Path(demo_local.root, key).read_bytes())
    assert {r["subset"] for r in records} >= {"compound", "orf", "crispr", "all"}
    assert demo_local.multipart_keys == ()


def test_summary_and_sizes(demo_local):
    text = demo_local.summary()
    assert demo_local.root in text and "cpg0016-jump:" in text
    assert demo_local.total_bytes == sum(
        Path(demo_local.root, k).stat().st_size for k in demo_local.keys
    )


def test_deterministic_with_seed(tmp_path):
    a = build_demo(str(tmp_path / "a"), plates_per_batch=1, seed=3)
    b = build_demo(str(tmp_path / "b"), plates_per_batch=1, seed=3)
    c = build_demo(str(tmp_path / "c"), plates_per_batch=1, seed=4)
    assert a.keys == b.keys == c.keys
    assert a.etags == b.etags
    changed = [k for k in a.keys if a.etags[k] != c.etags[k]]
    assert any(k.endswith(".parquet") for k in changed)
    assert "index.html" not in changed  # seed-independent objects stay put


def test_full_width_plate(tmp_path):
    table = plate_profile("source_4", "BR00117037", 4762)
    assert table.num_columns == 4765
    assert table.column_names[3:] == list(feature_names())
    assert len(select_features(100)) == 100


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"n_features": 0}, "n_features"),
        ({"n_features": 4763}, "n_features"),
        ({"plates_per_batch": 0}, "plates_per_batch"),
        ({"analysis_sites": -1}, "analysis_sites"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, word):
    with pytest.raises(ParameterError, match=word):
        build_demo(str(tmp_path / "g"), **kwargs)
    assert not (tmp_path / "g").exists()


def test_unwritable_bucket_is_a_storage_error(s3_options):
    opts = {"key": "testing", "secret": "testing", **{"client_kwargs": s3_options["client_kwargs"]}}
    with pytest.raises(StorageError, match="no-such-bucket"):
        build_demo("s3://no-such-bucket", opts, plates_per_batch=1, max_workers=2)


def test_module_cli(tmp_path):
    target = tmp_path / "cli-gallery"
    done = subprocess.run(
        [sys.executable, "-m", "intake_cpg.demo", str(target), "--plates-per-batch", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"demo gallery at {target}" in done.stdout
    assert done.stderr == ""
    manifest = (
        target / "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/manifest.json"
    )
    assert json.loads(manifest.read_text())

    bad = subprocess.run(
        [sys.executable, "-m", "intake_cpg.demo", str(tmp_path / "x"), "--n-features", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "n_features" in bad.stderr and bad.stdout == ""


def test_gzip_outputs_are_reproducible(demo_local):
    key = next(k for k in demo_local.keys if k.endswith("_normalized.csv.gz"))
    data = Path(demo_local.root, key).read_bytes()
    assert data[4:8] == b"\x00\x00\x00\x00"  # gzip mtime zeroed, so bytes and ETags are stable
    assert pd.read_csv(io.BytesIO(gzip.decompress(data))).shape[0] == 384


def test_one_command_line_for_the_demo(tmp_path, capsys):
    """``intake-cpg demo`` takes the demo module's options and builds the same bytes."""
    import argparse

    from intake_cpg import cli
    from intake_cpg.demo import add_arguments

    module = argparse.ArgumentParser()
    add_arguments(module)
    options = {o for a in module._actions for o in a.option_strings} - {"-h", "--help"}
    in_cli = {o for a in cli.command_parsers()["demo"]._actions for o in a.option_strings}
    assert options and options <= in_cli
    argv = ["--plates-per-batch", "1", "--seed", "5", "--analysis-sites", "1"]
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:  # main() configures logging for a command-line process: put it back afterwards
        assert cli.main(["demo", str(tmp_path / "a"), *argv, "-q"]) == 0
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    assert "open it with:" in capsys.readouterr().out
    ref = build_demo(str(tmp_path / "b"), plates_per_batch=1, seed=5, analysis_sites=1)
    for key in ref.keys:
        assert (tmp_path / "a" / key).read_bytes() == (tmp_path / "b" / key).read_bytes(), key
