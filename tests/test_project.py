"""Project-level entries: plates chosen by what they hold, across sources, annotated."""

from __future__ import annotations

import pandas as pd
import pytest

from intake_cpg.annotate import annotate_frame, prepare
from intake_cpg.errors import ParameterError, ProductNotFoundError
from intake_cpg.metadata import USUAL_TABLES
from intake_cpg.metadata.source import open_store
from intake_cpg.project import ProjectPlatesSource, ProjectProfilesSource, search, unique
from intake_cpg.readers import STRING_DTYPE


@pytest.fixture(scope="module")
def meta(demo_jump):
    return {
        "metadata_root": demo_jump.metadata_root,
        "metadata_release": demo_jump.metadata_release,
    }


@pytest.fixture(scope="module")
def store(meta):
    return open_store(**meta)


def _on_disk(demo) -> pd.DataFrame:
    sel = demo.plates[(demo.plates.project == "cpg0016-jump") & demo.plates.variant.isna()]
    return sel.rename(columns={"source": "Metadata_Source", "plate": "Metadata_Plate"})


def test_plates_table_has_every_plate_with_its_type(demo_jump, meta, store):
    plates = ProjectPlatesSource(demo_jump.root, "cpg0016-jump", **meta).read()
    disk = _on_disk(demo_jump)
    assert sorted(plates.Metadata_Plate) == sorted(disk.Metadata_Plate)
    real = store.read("plate").set_index("Metadata_Plate").Metadata_PlateType
    assert (
        plates.Metadata_PlateType.to_numpy() == real.loc[plates.Metadata_Plate].to_numpy()
    ).all()
    assert plates.Metadata_Plate.dtype == STRING_DTYPE and set(plates.variants) == {("",)}
    summary = unique(plates)
    assert "TARGET2" in summary["Metadata_PlateType"] and "1053601756" in summary["Metadata_Plate"]
    assert set(search(plates, plate_type="TARGET2").Metadata_Plate) == set(
        disk.merge(store.read("plate")).query("Metadata_PlateType == 'TARGET2'").Metadata_Plate
    )


def test_sample_notebook_workflow_equals_pandas_by_hand(demo_jump, meta, store):
    """Two TARGET2 plates per source, five features, compound identifiers."""
    # with intake-cpg (the user code of the how-to, minus the catalog opening)
    plates = ProjectPlatesSource(demo_jump.root, "cpg0016-jump", **meta).read()
    target2 = plates[plates.Metadata_PlateType == "TARGET2"].groupby("Metadata_Source").head(2)
    feats = [
        "Cells_AreaShape_Area",
        "Cells_AreaShape_Zernike_5_1",
        "Cells_AreaShape_Zernike_5_3",
        "Cells_AreaShape_Zernike_5_5",
        "Cells_Correlation_Manders_AGP_DNA",
    ]
    got = ProjectProfilesSource(
        demo_jump.root, "cpg0016-jump", plates=target2, columns=feats, annotate=["compound"], **meta
    ).read()
    # by hand with pandas on the same files
    plate = store.read("plate")
    disk = _on_disk(demo_jump).merge(plate, on=["Metadata_Source", "Metadata_Plate"])
    chosen = (
        disk[disk.Metadata_PlateType == "TARGET2"]
        .sort_values(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
        .groupby("Metadata_Source")
        .head(2)
    )
    frames = [pd.read_parquet(demo_jump.url(k)) for k in chosen.key]
    df = pd.concat(frames, ignore_index=True)[
        ["Metadata_Source", "Metadata_Plate", "Metadata_Well", *feats]
    ]
    df = df.merge(
        store.read("well"), on=["Metadata_Source", "Metadata_Plate", "Metadata_Well"], how="left"
    )
    df = df.merge(store.read("compound"), on="Metadata_JCP2022", how="left")
    key = ["Metadata_Plate", "Metadata_Well"]
    got = got.sort_values(key).reset_index(drop=True)
    want = df.sort_values(key).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got.Metadata_InChIKey.notna().all() and len(got) == 384 * len(chosen)


def test_selection_by_name_glob_list_and_type(demo_jump, meta):
    src = ProjectProfilesSource(
        demo_jump.root,
        "cpg0016-jump",
        source=["source_2", "source_1*"],
        plate_type="CRISPR",
        columns=["Metadata_Plate", "Metadata_Well"],
        **meta,
    )
    assert set(src.chosen().Metadata_Source) == {"source_13"}
    assert src.read().Metadata_Plate.nunique() == len(src.chosen())
    with pytest.raises(ProductNotFoundError, match="did you mean 'TARGET2'"):
        ProjectProfilesSource(demo_jump.root, "cpg0016-jump", plate_type="TARGET", **meta).chosen()
    with pytest.raises(ParameterError, match="plate metadata"):
        ProjectProfilesSource(demo_jump.root, "cpg0004-lincs", plate_type="ORF").chosen()


def test_annotated_load_on_the_cluster_equals_local(demo_jump, meta, store, dask_client):
    src = ProjectProfilesSource(
        demo_jump.root,
        "cpg0016-jump",
        source="source_4",
        annotate=True,
        columns=["Cells_AreaShape_Area"],
        **meta,
    )
    ddf = src.to_dask()
    on_cluster = dask_client.compute(ddf).result()
    with __import__("dask").config.set(scheduler="sync"):
        local = ddf.compute()
    pd.testing.assert_frame_equal(on_cluster, local)
    by_hand = annotate_frame(
        src._loader().to_dask().compute(), prepare(store.read_many(USUAL_TABLES))
    )
    pd.testing.assert_frame_equal(local, by_hand)


def test_platemap_annotation_of_another_project(demo_jump):
    src = ProjectProfilesSource(demo_jump.root, "cpg0004-lincs", annotate=True)
    got = src.read()
    plain = ProjectProfilesSource(demo_jump.root, "cpg0004-lincs").read()
    assert len(got) == len(plain) and got.Metadata_broad_sample.notna().any()
    assert "Metadata_well_position" not in got.columns
    with pytest.raises(ParameterError, match="platemaps"):
        ProjectProfilesSource(demo_jump.root, "cpg0004-lincs", annotate=["compound"]).read()


# ------------------------------------------------------------------------------ per-source entries


def test_open_cpg_metadata_root_and_annotate_on_per_source_entries(demo_jump, meta, store):
    import intake

    cat = intake.open_cpg(demo_jump.root, **meta)
    src = cat["cpg0016-jump"]["source_4"]["profiles"](
        columns=["Cells_AreaShape_Area"], annotate=True
    )
    got = src.read()
    plain = cat["cpg0016-jump"]["source_4"]["profiles"](
        columns=["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Cells_AreaShape_Area"]
    ).read()
    want = annotate_frame(plain, prepare(store.read_many(USUAL_TABLES)))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    # assembled profiles carry Metadata_JCP2022: gene symbols for every ORF row
    orf = cat["cpg0016-jump-assembled"]["source_all"]["profiles_assembled"]["ORF"](
        annotate=["orf"]
    ).read()
    assert orf.Metadata_Symbol.notna().all()
    # another project: its platemaps
    lincs = cat["cpg0004-lincs"]["broad"]["profiles"](annotate=True).read()
    assert lincs.Metadata_broad_sample.notna().all() and "Metadata_solvent" in lincs


def test_yaml_catalogs_take_the_metadata_parameters(demo_jump, tmp_path):
    import shutil

    import intake
    from conftest import REPO

    shutil.copytree(REPO / "catalogs", tmp_path / "catalogs")
    cat = intake.open_catalog(str(tmp_path / "catalogs" / "demo.yaml"))
    gallery = cat.gallery(root=demo_jump.root)
    df = gallery["cpg0016-jump"]["source_13"]["profiles"](
        columns=["Metadata_Well"], annotate=["crispr"]
    ).read()
    assert df.Metadata_Symbol.notna().any()
    plates = cat.jump_plates(root=demo_jump.root).read()
    assert "TARGET2" in set(plates.Metadata_PlateType)
    tables = cat.jump_metadata(root=demo_jump.root)
    assert "perturbation_control" in list(tables)
    with pytest.raises(Exception, match="well.csv.gz"):  # the packaged pins refuse built tables
        cat.jump_metadata(
            root=demo_jump.root,
            metadata_release=str(REPO / "intake_cpg/data/jump_metadata_pins.csv"),
        )["well"].read()


# ------------------------------------------------------------------- project-level catalog entries


def test_project_entries_of_the_catalog_take_lists_and_a_plates_frame(demo_jump, meta):
    import intake

    project = intake.open_cpg(demo_jump.root, **meta)["cpg0016-jump"]
    plates = project["plates"].read()
    direct = ProjectPlatesSource(demo_jump.root, "cpg0016-jump", **meta).read()
    pd.testing.assert_frame_equal(plates, direct)
    # names, globs and lists reach the selector as given (not rendered as text)
    src = project["profiles"](
        source=["source_2", "source_1*"], plate_type="CRISPR", columns=["Metadata_Plate"]
    )
    assert set(src.plates().Metadata_Source) == {"source_13"}
    assert src.read().Metadata_Plate.nunique() == len(src.plates())
    # plates= a frame filtered with pandas, as the sample notebook does
    target2 = plates[plates.Metadata_PlateType == "TARGET2"].groupby("Metadata_Source").head(1)
    got = project["profiles"](plates=target2, columns=["Metadata_Plate", "Cells_AreaShape_Area"])
    got = got.read()
    assert sorted(got.Metadata_Plate.unique()) == sorted(target2.Metadata_Plate)
    # a bad value is refused before any listing, naming what exists
    with pytest.raises(ProductNotFoundError, match="did you mean 'source_4'"):
        project["profiles"](source=["source_44"]).read()
    with pytest.raises(ParameterError, match="'/'"):
        project["profiles"](plate=["../x"])
    with pytest.raises(ParameterError, match="project-level"):
        project["source_4"]["profiles"](plate_type="TARGET2").read()


def test_no_project_level_profiles_where_no_source_has_them(demo_jump, meta):
    import intake

    project = intake.open_cpg(demo_jump.root, **meta)["cpg0016-jump-assembled"]
    assert project["plates"].read().empty
    with pytest.raises(ProductNotFoundError, match="no source of cpg0016-jump-assembled holds"):
        project["profiles"].read()


# --------------------------------------------------------- search() and unique() on the project


def test_project_search_narrows_to_plates_and_chains(demo_jump, meta, tmp_path):
    import intake

    project = intake.open_cpg(demo_jump.root, **meta)["cpg0016-jump"]
    table = project.plates()
    assert project.unique() == unique(table)
    found = project.search(plate_type="TARGET2")
    assert list(found) == list(project)  # the same entries, narrowed
    want = search(table, plate_type="TARGET2")
    pd.testing.assert_frame_equal(found.plates(), want)
    pd.testing.assert_frame_equal(found["plates"].read(), want)
    assert found.unique()["Metadata_PlateType"] == ["TARGET2"]
    loaded = found["profiles"](columns=["Metadata_Source", "Metadata_Plate"]).read()
    assert sorted(loaded.Metadata_Plate.unique()) == sorted(want.Metadata_Plate)
    # searches chain: each narrows what the last one kept
    again = found.search(source=["source_4", "source_?"])
    assert set(again.plates().Metadata_Source) == {"source_4"}
    assert set(again.plates().Metadata_PlateType) == {"TARGET2"}
    # the narrowed project freezes with its criteria
    path = tmp_path / "target2.yaml"
    again.save(str(path))
    frozen = intake.open_catalog(str(path))
    pd.testing.assert_frame_equal(frozen["plates"].read(), again.plates())
    # criteria that match nothing name what exists; names and plate criteria do not mix
    with pytest.raises(ProductNotFoundError, match="did you mean 'TARGET2'"):
        project.search(plate_type="TARGET")
    with pytest.raises(ParameterError, match="not both"):
        project.search("source", plate_type="TARGET2")
    assert list(project.search("source_1")) == ["source_13"]  # entry names, as at every level
