"""Annotation: JUMP tables and platemaps joined row for row, locally and on the 2-process cluster."""

from __future__ import annotations

import logging

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from jump_fixtures import build_release_tree, demo_jump_plates, metadata_folder

from intake_cpg.annotate import (
    Annotations,
    annotate_dask,
    annotate_frame,
    platemap_lookup,
    prepare,
    resolve_tables,
)
from intake_cpg.errors import MetadataError, ParameterError, ProductNotFoundError
from intake_cpg.metadata import USUAL_TABLES, JumpMetadata
from intake_cpg.readers import STRING_DTYPE

WELL_KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory, demo_local):
    root = tmp_path_factory.mktemp("jump")
    release = build_release_tree(root, demo_jump_plates(demo_local))
    store = JumpMetadata(metadata_folder(release, root), release=release)
    return store.read_many(USUAL_TABLES)


@pytest.fixture(scope="module")
def profiles(demo_local):
    """The demo's cpg0016 per-plate profiles, read with plain pandas (strings as strings)."""
    sel = demo_local.plates[
        (demo_local.plates.project == "cpg0016-jump") & demo_local.plates.variant.isna()
    ]
    frames = [pd.read_parquet(demo_local.url(k)) for k in sel.key]
    df = pd.concat([f[f.columns[:8]] for f in frames], ignore_index=True)
    return df.astype(dict.fromkeys(WELL_KEYS, STRING_DTYPE))


def _by_hand(profiles: pd.DataFrame, t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The usual set joined with plain pandas merges (what a user writes today)."""
    out = profiles.merge(t["well"], on=WELL_KEYS, how="left")
    out = out.merge(t["plate"], on=["Metadata_Source", "Metadata_Plate"], how="left")
    for name in ("perturbation_control", "compound", "orf", "crispr"):
        right = t[name]
        out = out.merge(right, on="Metadata_JCP2022", how="left", suffixes=("", "__new"))
        for col in [c for c in out.columns if c.endswith("__new")]:
            base = col.removesuffix("__new")
            out[base] = out[base].fillna(out[col])
            out = out.drop(columns=col)
    return out


def test_usual_set_equals_hand_written_merges(profiles, tables):
    got = annotate_frame(profiles, prepare(tables))
    want = _by_hand(profiles, tables)
    assert len(got) == len(profiles)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert set(got.columns) == set(want.columns)
    # the joins did something: compounds, genes, plate types and batches are there
    assert got.Metadata_InChIKey.notna().any() and got.Metadata_Symbol.notna().any()
    assert set(got.Metadata_PlateType) >= {"ORF", "CRISPR", "COMPOUND", "TARGET2"}
    assert (got.Metadata_Plate == "1053601756").sum() == 384


def test_controls_take_the_curated_pert_type(profiles, tables):
    got = annotate_frame(profiles, prepare(tables))
    orf_rows = got[got.Metadata_PlateType == "ORF"]
    neg = orf_rows[orf_rows.Metadata_Well.str.endswith("01")]
    assert set(neg.Metadata_pert_type) == {"negcon"}  # perturbation_control, not orf's own
    assert set(orf_rows.Metadata_pert_type.dropna()) >= {"negcon", "trt"}


def test_rows_the_metadata_lacks_are_kept_and_counted(profiles, tables, caplog):
    cut = dict(tables)
    well = tables["well"]
    gone = (well.Metadata_Plate == "APTJUM122") & well.Metadata_Well.str.startswith("B")
    cut["well"] = well[~gone]
    cut["plate"] = tables["plate"][tables["plate"].Metadata_Plate != "CP-CC9-R1-01"]
    with caplog.at_level(logging.WARNING, logger="intake_cpg.annotate"):
        got = annotate_frame(profiles, prepare(cut))
    assert len(got) == len(profiles) and got.index.equals(profiles.index)
    assert f"{int(gone.sum())} of {len(profiles)} rows have no match in the well table" in (
        caplog.text
    )
    assert "384 of" in caplog.text and "plate table" in caplog.text
    assert "CP-CC9-R1-01" in caplog.text
    lost = got[(got.Metadata_Plate == "APTJUM122") & got.Metadata_Well.str.startswith("B")]
    assert lost.Metadata_JCP2022.isna().all() and lost.Metadata_InChIKey.isna().all()
    pd.testing.assert_frame_equal(got[profiles.columns], profiles)


def test_duplicate_keys_are_refused(tables):
    well = tables["well"]
    doubled = pd.concat([well, well.iloc[[7]]], ignore_index=True)
    with pytest.raises(MetadataError, match="repeated key") as err:
        prepare({"well": doubled})
    assert well.iloc[7].Metadata_Plate in str(err.value)


def test_index_order_and_existing_columns_are_kept(profiles, tables):
    shuffled = profiles.sample(frac=1.0, random_state=3)
    shuffled.index = shuffled.index * 10 + 5
    shuffled["Metadata_Batch"] = pd.Series("mine", index=shuffled.index, dtype=STRING_DTYPE)
    got = annotate_frame(shuffled, prepare(tables))
    assert got.index.equals(shuffled.index)
    assert (got.Metadata_Batch == "mine").all()  # the profiles' own column wins
    assert got.Metadata_Well.tolist() == shuffled.Metadata_Well.tolist()


def test_numeric_and_missing_keys_are_clear_errors(profiles, tables):
    bad = profiles.copy()
    bad["Metadata_Plate"] = np.arange(len(bad))
    with pytest.raises(ParameterError, match="'Metadata_Plate' is int64, expected strings"):
        annotate_frame(bad, prepare(tables))
    with pytest.raises(ParameterError, match="add the 'well' table"):
        annotate_frame(profiles, prepare({"compound": tables["compound"]}))


def test_resolve_tables():
    assert resolve_tables(["crispr", "plate"]) == ("well", "plate", "crispr")
    with pytest.raises(ProductNotFoundError, match="did you mean 'compound'"):
        resolve_tables(["compounds"])
    with pytest.raises(ParameterError, match="duplicate rows"):
        resolve_tables(["compound_source"])
    with pytest.raises(ParameterError, match="annotate=3"):
        resolve_tables(3)


# ------------------------------------------------------------------------------ dask


def _pickled(obj) -> int:
    import cloudpickle

    return len(cloudpickle.dumps(obj))


def _annotation_copies(graph, ann: Annotations, data: pd.DataFrame) -> float:
    """How many copies of ``ann`` the graph holds: each task pickled on its own (as the
    scheduler ships them), minus the data, over the size of one copy."""
    total = sum(_pickled(task) for task in dict(graph).values())
    return (total - _pickled(data)) / _pickled(ann)


def test_dask_wrapper_holds_one_copy_and_equals_local(profiles, tables):
    ann = prepare(tables)
    ddf = dd.from_pandas(profiles, npartitions=5)
    out = annotate_dask(ddf, ann)
    copies = _annotation_copies(out.__dask_graph__(), ann, profiles)
    assert 0.9 < copies < 1.5, copies  # one copy, not one per partition (5)
    assert out.npartitions == 5
    local = annotate_frame(profiles, ann)
    with dask.config.set(scheduler="sync"):
        got = out.compute()
    pd.testing.assert_frame_equal(got, local)
    assert list(out._meta.columns) == list(local.columns)


def test_annotated_load_on_the_cluster_equals_local(profiles, tables, dask_client):
    ann = prepare(tables).for_plates(profiles)
    ddf = dd.from_pandas(profiles, npartitions=4)
    got = dask_client.compute(annotate_dask(ddf, ann)).result()
    pd.testing.assert_frame_equal(got, annotate_frame(profiles, prepare(tables)))


def test_for_plates_keeps_only_the_plates_asked_for(profiles, tables):
    ann = prepare(tables)
    few = profiles[profiles.Metadata_Plate.isin(["BR00117037", "1053601756"])]
    small = ann.for_plates(few)
    well = next(lk for lk in small.lookups if lk.name == "well")
    assert len(well.index) == 2 * 384
    pd.testing.assert_frame_equal(annotate_frame(few, small), annotate_frame(few, ann))


# ------------------------------------------------------------------------------ platemaps


def test_platemap_annotation_matches_pycytominer(demo_local):
    from pycytominer import annotate as pycytominer_annotate

    base = "cpg0004-lincs/broad/workspace/metadata/platemaps/2016_04_01_a549_48hr_batch1"
    barcodes = pd.read_csv(demo_local.url(f"{base}/barcode_platemap.csv"), dtype=str)
    name = "C-7161-01-LM6-001"
    platemap = pd.read_csv(demo_local.url(f"{base}/platemap/{name}.txt"), sep="\t", dtype=str)
    plates = demo_local.plates[
        (demo_local.plates.project == "cpg0004-lincs") & demo_local.plates.variant.isna()
    ]
    assert len(plates) == 2
    ann = platemap_lookup(barcodes, {name: platemap})
    for key in plates.key:
        prof = pd.read_csv(demo_local.url(key), dtype={"Metadata_Plate": str, "Metadata_Well": str})
        got = annotate_frame(prof, ann)
        ref = pycytominer_annotate(
            profiles=prof, platemap=platemap, join_on=["Metadata_well_position", "Metadata_Well"]
        )
        assert len(got) == len(prof) == len(ref)
        ref = ref.set_index("Metadata_Well").loc[got.Metadata_Well]
        for col in ("Metadata_broad_sample", "Metadata_mg_per_ml", "Metadata_solvent"):
            assert got[col].fillna("").tolist() == ref[col].fillna("").astype(str).tolist(), col
        assert "Metadata_well_position" not in got.columns
        row = barcodes.set_index("Assay_Plate_Barcode").loc[prof.Metadata_Plate.iloc[0]]
        assert set(got.Metadata_Plate_Map_Name) == {row.Plate_Map_Name}
        assert set(got.Metadata_Batch_Date) == {row.Batch_Date}


def test_plate_without_platemap_keeps_its_rows(demo_local, caplog):
    barcodes = pd.DataFrame({"Assay_Plate_Barcode": ["SQ1"], "Plate_Map_Name": ["PM-missing"]})
    prof = pd.DataFrame({"Metadata_Plate": ["SQ1"] * 3, "Metadata_Well": ["A01", "A02", "A03"]})
    with caplog.at_level(logging.WARNING, logger="intake_cpg.annotate"):
        got = annotate_frame(prof, platemap_lookup(barcodes, {}))
    assert len(got) == 3 and "3 of 3 rows have no match in the platemap table" in caplog.text
    with pytest.raises(MetadataError, match="more than once"):
        platemap_lookup(pd.concat([barcodes, barcodes]), {})
