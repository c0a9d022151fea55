"""Tests of the gallery layout table: parse_key, format_key and the helpers around them.

Pure tests: no network, no Intake, no S3 endpoint.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_cpg.errors import GalleryPathError, ParameterError
from intake_cpg.layout import (
    FIELDS,
    PRODUCT_SPECS,
    PRODUCTS,
    GalleryPath,
    format_key,
    https_url,
    parse_key,
    s3_url,
    split_ext,
    split_url,
    validate_name,
    version_key,
)

DATA = Path(__file__).parent / "data" / "keys"
HTTPS = "https://cellpainting-gallery.s3.amazonaws.com/"


def _plates() -> list[dict[str, str]]:
    with gzip.open(DATA / "plate.csv.gz", "rt", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------
# every cpg0016 plate round-trips through its profile key
# ------------------------------------------------------------------------------------------


def test_every_cpg0016_plate_round_trips_through_its_profile_key():
    plates = _plates()
    assert len(plates) == 2525
    for row in plates:
        source, batch, plate = row["Metadata_Source"], row["Metadata_Batch"], row["Metadata_Plate"]
        key = format_key(
            "profiles",
            project="cpg0016-jump",
            source=source,
            batch=batch,
            plate=plate,
            extension="parquet",
        )
        assert key == f"cpg0016-jump/{source}/workspace/profiles/{batch}/{plate}/{plate}.parquet"
        for text in (key, "s3://cellpainting-gallery/" + key, HTTPS + key):
            p = parse_key(text, strict=True)
            assert (p.product, p.project, p.source, p.batch, p.plate) == (
                "profiles",
                "cpg0016-jump",
                source,
                batch,
                plate,
            )
            assert (p.variant, p.well, p.site, p.extension, p.stem) == (
                None,
                None,
                None,
                "parquet",
                plate,
            )
            assert p.key == key


def test_plate_names_stay_strings_even_when_all_digits():
    p = parse_key(
        "cpg0016-jump/source_9/workspace/profiles/20211103-Run16/1053601756/1053601756.parquet"
    )
    assert p.plate == "1053601756" and isinstance(p.plate, str)


# ------------------------------------------------------------------------------------------
# real keys (DESIGN.md, the gallery docs and the manifests) parse to the right fields
# ------------------------------------------------------------------------------------------

CPG16 = "cpg0016-jump/source_4/"
REAL_KEYS: list[tuple[str, dict[str, str]]] = [
    (
        CPG16 + "workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet",
        {
            "product": "profiles",
            "batch": "2021_04_26_Batch1",
            "plate": "BR00117037",
            "extension": "parquet",
        },
    ),
    (
        "cpg0016-jump/source_13/workspace/profiles/20220914_Run1/CP-CC9-R1-04/CP-CC9-R1-04.parquet",
        {
            "product": "profiles",
            "source": "source_13",
            "batch": "20220914_Run1",
            "plate": "CP-CC9-R1-04",
        },
    ),
    (
        "cpg0016-jump/source_5/workspace/profiles/JUMPCPE-20210623-Run01_20210624_003152/"
        "APTJUM122/APTJUM122.parquet",
        {
            "product": "profiles",
            "source": "source_5",
            "batch": "JUMPCPE-20210623-Run01_20210624_003152",
            "plate": "APTJUM122",
        },
    ),
    (
        "cpg0004-lincs/broad/workspace/profiles/2016_04_01_a549_48hr_batch1/SQ00014812/"
        "SQ00014812_normalized_feature_select_negcon_batch.csv.gz",
        {
            "product": "profiles",
            "project": "cpg0004-lincs",
            "source": "broad",
            "plate": "SQ00014812",
            "variant": "normalized_feature_select_negcon_batch",
            "extension": "csv.gz",
            "filename": "SQ00014812_normalized_feature_select_negcon_batch.csv.gz",
        },
    ),
    (
        "cpg0020-varchamp/broad/workspace/profiles/2024_12_09_Batch_12/2024-12-09_B12A1R2_widefield/"
        "2024-12-09_B12A1R2_widefield_normalized.csv.gz",
        {"product": "profiles", "plate": "2024-12-09_B12A1R2_widefield", "variant": "normalized"},
    ),
    (
        CPG16 + "images/2021_04_26_Batch1/illum/BR00117035/BR00117035_IllumBrightfield_H.npy",
        {
            "product": "illum",
            "plate": "BR00117035",
            "variant": "IllumBrightfield_H",
            "extension": "npy",
        },
    ),
    (
        "cpg0000-jump-pilot/source_4/images/2020_11_04_CPJUMP1/images/"
        "BR00116991__2020-11-05T19_51_35-Measurement1/Images/r01c01f01p01-ch5sk1fk1fl1.tiff",
        {
            "product": "images",
            "batch": "2020_11_04_CPJUMP1",
            # the plate without the Phenix measurement suffix; the folder as named (issue 14)
            "plate": "BR00116991",
            "plate_folder": "BR00116991__2020-11-05T19_51_35-Measurement1",
            "well": "A01",
            "site": "1",
            "channel": "5",
            "filename": "r01c01f01p01-ch5sk1fk1fl1.tiff",
            "extension": "tiff",
        },
    ),
    (
        "cpg0016-jump/source_13/images/20220914_Run1/images/CP-CC9-R1-04/"
        "CP-CC9-R1-04_P24_T0001F009L01A02Z01C02.tif",
        {
            "product": "images",
            "plate": "CP-CC9-R1-04",
            "plate_folder": "CP-CC9-R1-04",
            "well": "P24",
            "site": "9",
            "channel": "2",
        },
    ),
    (
        CPG16
        + "workspace/analysis/2021_04_26_Batch1/BR00117035/analysis/BR00117035-A01-1/Cells.csv",
        {
            "product": "analysis",
            "plate": "BR00117035",
            "well": "A01",
            "site": "1",
            "variant": "Cells",
        },
    ),
    (
        "cpg0016-jump/source_13/workspace/analysis/20220914_Run1/CP-CC9-R1-04/analysis/"
        "CP-CC9-R1-04-P24-9/Image.csv.gz",
        {
            "product": "analysis",
            "plate": "CP-CC9-R1-04",
            "well": "P24",
            "site": "9",
            "variant": "Image",
            "extension": "csv.gz",
        },
    ),
    (
        "cpg0016-jump/source_13/workspace/analysis/20220914_Run1/CP-CC9-R1-04/analysis/"
        "CP-CC9-R1-04-B02/Experiment.csv",
        {"product": "analysis", "plate": "CP-CC9-R1-04", "well": "B02", "site": None},
    ),
    (
        "cpg0016-jump/source_13/workspace/analysis/20220914_Run1/CP-CC9-R1-04/analysis/"
        "CP-CC9-R1-04/Nuclei.csv.gz",
        {
            "product": "analysis",
            "plate": "CP-CC9-R1-04",
            "well": None,
            "site": None,
            "variant": "Nuclei",
        },
    ),
    (
        CPG16 + "workspace/backend/2021_04_26_Batch1/BR00117035/BR00117035.sqlite",
        {"product": "backend", "plate": "BR00117035", "variant": None, "extension": "sqlite"},
    ),
    (
        CPG16 + "workspace/load_data_csv/2021_04_26_Batch1/BR00117035/load_data_with_illum.csv.gz",
        {"product": "load_data", "plate": "BR00117035", "variant": "with_illum", "version": None},
    ),
    (
        CPG16 + "workspace/load_data_csv_orig/2021_04_26_Batch1/BR00117035/load_data.parquet",
        {"product": "load_data", "plate": "BR00117035", "variant": None, "version": "orig"},
    ),
    (
        "cpg0000-jump-pilot/source_4/workspace/metadata/platemaps/2020_11_04_CPJUMP1/"
        "barcode_platemap.csv",
        {
            "product": "barcode_platemap",
            "batch": "2020_11_04_CPJUMP1",
            "plate": None,
            "extension": "csv",
        },
    ),
    (
        "cpg0004-lincs/broad/workspace/metadata/platemaps/2016_04_01_a549_48hr_batch1/platemap/"
        "C-7161-01-LM6-001.txt",
        {
            "product": "platemap",
            "batch": "2016_04_01_a549_48hr_batch1",
            "variant": "C-7161-01-LM6-001",
        },
    ),
    (
        CPG16 + "workspace/metadata/platemaps/2021_04_26_Batch1/platemap/OAA01.02.03.04.A.txt",
        {"product": "platemap", "variant": "OAA01.02.03.04.A", "extension": "txt"},
    ),
    (
        CPG16 + "workspace/metadata/external_metadata/external_metadata.tsv",
        {"product": "external_metadata", "variant": "external_metadata", "batch": None},
    ),
    (
        CPG16 + "workspace/quality_control/heatmap/2021_04_26_Batch1/BR00117035/"
        "BR00117035_position_effect.png",
        {
            "product": "quality_control",
            "subset": "heatmap",
            "plate": "BR00117035",
            "variant": "position_effect",
        },
    ),
    (
        "cpg0020-varchamp/broad/workspace/pipelines/2024_12_09_Batch_12/analysis.cppipe",
        {"product": "pipelines", "batch": "2024_12_09_Batch_12", "filename": "analysis.cppipe"},
    ),
    (
        CPG16 + "workspace/segmentation/cellpose_c632b05b6930/objects/2021_04_26_Batch1/BR00117036/"
        "BR00117036.zarr/source_4__2021_04_26_Batch1__BR00117036__A01__1/.zgroup",
        {
            "product": "segmentation",
            "model": "cellpose_c632b05b6930",
            "batch": "2021_04_26_Batch1",
            "plate": "BR00117036",
            "filename": ".zgroup",
            "extension": None,
        },
    ),
    (
        CPG16 + "workspace/segmentation/cellpose_c632b05b6930/model/README.md",
        {"product": "segmentation", "subset": "model", "batch": None, "plate": None},
    ),
    (
        CPG16 + "workspace_dl/profiles/efficientnet_v2_imagenet1k_s_feature_vector_2_ec756ff/"
        "2021_04_26_Batch1/BR00117035/BR00117035.parquet",
        {
            "product": "dl_profiles",
            "model": "efficientnet_v2_imagenet1k_s_feature_vector_2_ec756ff",
            "plate": "BR00117035",
        },
    ),
    (
        CPG16 + "workspace_dl/embeddings/efficientnet_v2_imagenet1k_s_feature_vector_2_ec756ff/"
        "2021_04_26_Batch1/BR00117035/A01-1/embedding.parquet",
        {
            "product": "embeddings",
            "plate": "BR00117035",
            "well": "A01",
            "site": "1",
            "extension": "parquet",
        },
    ),
    (
        CPG16 + "workspace_dl/embeddings/m1/2021_04_26_Batch1/BR00117035/BR00117035/A01/"
        "embedding.parquet",
        {
            "product": "embeddings",
            "model": "m1",
            "plate": "BR00117035",
            "well": "A01",
            "site": None,
        },
    ),
    (
        CPG16 + "workspace_dl/embeddings/m1/2021_04_26_Batch1/BR00117035/A01/2/embedding.npz",
        {
            "product": "embeddings",
            "plate": "BR00117035",
            "well": "A01",
            "site": "2",
            "extension": "npz",
        },
    ),
    # manifests: jump-cellpainting/datasets profile_index v0.13 (current layout)
    (
        HTTPS + "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/"
        "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony.parquet",
        {
            "product": "profiles_assembled",
            "project": "cpg0016-jump-assembled",
            "source": "source_all",
            "subset": "ORF",
            "version": "v1.0a",
            "variant": "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony",
            "batch": None,
            "plate": None,
        },
    ),
    (
        HTTPS + "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/COMPOUND/v1.0/"
        "profiles_var_mad_int_featselect_harmony.parquet",
        {"product": "profiles_assembled", "subset": "COMPOUND", "version": "v1.0"},
    ),
    # manifests v0.9 / v0.10: recipe-run folder, subset, pipeline folder, file
    (
        HTTPS
        + "cpg0016-jump-assembled/source_all/workspace/profiles/jump-profiling-recipe_2024_a917fa7/"
        "ORF/profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony/"
        "profiles_wellpos_cc_var_mad_outlier.parquet",
        {
            "product": "profiles_assembled",
            "subset": "ORF",
            "version": "jump-profiling-recipe_2024_a917fa7",
            "variant": "profiles_wellpos_cc_var_mad_outlier",
            "batch": None,
            "plate": None,
        },
    ),
    (
        HTTPS
        + "cpg0042-chandrasekaran-jump/source_all/workspace/profiles/jump-profiling-recipe_2024_598189f/"
        "compound_no_source7/profiles_var_mad_int_featselect_harmony/"
        "profiles_var_mad_int_featselect_harmony.parquet",
        {
            "product": "profiles_assembled",
            "project": "cpg0042-chandrasekaran-jump",
            "subset": "compound_no_source7",
            "version": "jump-profiling-recipe_2024_598189f",
        },
    ),
    # cpg0042 manifest: subset/version/variant directly under profiles/
    (
        HTTPS
        + "cpg0042-chandrasekaran-jump/source_all/workspace/profiles/compound_no_source7/v1.0/"
        "profiles_var_mad_int_featselect.parquet",
        {
            "product": "profiles_assembled",
            "subset": "compound_no_source7",
            "version": "v1.0",
            "variant": "profiles_var_mad_int_featselect",
            "batch": None,
            "plate": None,
        },
    ),
    # not in the table: tolerant parse reads only what needs no guessing
    (
        "index.html",
        {"product": "other", "project": None, "filename": "index.html", "extension": "html"},
    ),
    (
        "cpg0016-jump-assembled/source_all/README.md",
        {
            "product": "other",
            "project": "cpg0016-jump-assembled",
            "source": "source_all",
            "batch": None,
        },
    ),
    (
        "dev-cpg0016-jump/source_4/workspace/metadata/Batch1/Barcodes.csv",
        {
            "product": "other",
            "project": "dev-cpg0016-jump",
            "source": "source_4",
            "batch": None,
            "plate": None,
        },
    ),
    (
        CPG16 + "workspace/profiles/2021_04_26_Batch1/BR00117035/unrelated.csv",
        {"product": "other", "batch": None, "plate": None, "subset": None, "version": None},
    ),
]


@pytest.mark.parametrize(
    ("key", "expected"),
    REAL_KEYS,
    ids=[f"{i}-{e['product']}" for i, (_, e) in enumerate(REAL_KEYS)],
)
def test_real_keys_parse_to_the_right_fields(key, expected):
    p = parse_key(key)
    for name, value in expected.items():
        assert getattr(p, name) == value, (name, p)
    if "project" not in expected and p.product != "other":
        assert p.project.startswith("cpg")


def test_per_plate_profiles_are_never_mistaken_for_assembled():
    # same depth as the cpg0042 legacy layout, but the file stem starts with its plate folder
    p = parse_key(
        "cpg0001-cellpainting-protocol/broad/workspace/profiles/v1.0/v1.0/v1.0_normalized.csv.gz"
    )
    assert (p.product, p.batch, p.plate, p.variant) == ("profiles", "v1.0", "v1.0", "normalized")


# ------------------------------------------------------------------------------------------
# strict and tolerant parsing
# ------------------------------------------------------------------------------------------

BAD_KEYS = [
    # (key, the failing segment named in the message)
    ("cpg0016-jump/source_4/workspace/profilez/b/p/p.parquet", "segment 4 'profilez'"),
    ("cpg0016-jump/source_4/workspace/profiles/b/p/q.parquet", "segment 7 'q.parquet'"),
    ("cpg0016-jump/source_4/scratch/x.csv", "segment 3 'scratch'"),
    ("index.html", "segment 1 'index.html'"),
    (
        "cpg0016-jump/source_4/workspace/analysis/b/P1/analysis/P2-A01-1/Cells.csv",
        "segment 8 'P2-A01-1'",
    ),
    (
        "cpg0016-jump/source_4/workspace/analysis/b/P1/analysis/P1-A01-x/Cells.csv",
        "segment 8 'P1-A01-x'",
    ),
    (
        "cpg0016-jump/source_4/workspace_dl/embeddings/m/b/P1/A01-x/embedding.parquet",
        "segment 8 'A01-x'",
    ),
    ("cpg0016-jump/source_4/workspace/backend/b/P1/", "segment 7 ''"),
    ("cpg0016-jump/source_4/workspace/load_data_csv/b/P1/loaddata.csv", "'loaddata.csv'"),
]


@pytest.mark.parametrize(("key", "segment"), BAD_KEYS)
def test_strict_raises_naming_key_and_segment(key, segment):
    with pytest.raises(GalleryPathError) as info:
        parse_key(key, strict=True)
    msg = str(info.value)
    assert repr(key) in msg
    assert segment in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("key", "segment"), BAD_KEYS)
def test_tolerant_returns_other_without_guessing(key, segment):
    p = parse_key(key)
    assert p.product == "other"
    assert (p.batch, p.plate, p.well, p.site, p.subset, p.version, p.variant, p.model) == (
        None,
    ) * 8
    parts = key.split("/")
    assert p.project == (parts[0] if len(parts) > 1 else None)
    assert p.key == key


def test_strict_accepts_every_real_table_key():
    for key, expected in REAL_KEYS:
        if expected["product"] != "other":
            assert parse_key(key, strict=True).product == expected["product"]


# ------------------------------------------------------------------------------------------
# format_key: inverse of parse_key for every product (property-based)
# ------------------------------------------------------------------------------------------

_name = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,13}[A-Za-z0-9_-])?", fullmatch=True).filter(
    lambda s: ".." not in s
)
_values = {
    "well": st.from_regex(r"[A-P](0[1-9]|1[0-9]|2[0-4])", fullmatch=True),
    "site": st.integers(0, 99).map(str),
    "extension": st.sampled_from(
        ["parquet", "csv", "csv.gz", "sqlite", "npy", "npz", "txt", "png"]
    ),
    "filename": st.tuples(_name, st.sampled_from(["tiff", "cppipe", "json", "md", "csv.gz"])).map(
        ".".join
    ),
    "version": st.sampled_from(["v1.0", "v1.0a", "v2.1b", "orig"]),
}
_formattable = [
    (spec.name, lay) for spec in PRODUCT_SPECS.values() for lay in spec.layouts if not lay.legacy
]


@st.composite
def _product_fields(draw):
    product, lay = draw(st.sampled_from(_formattable))
    values = {"project": draw(_name), "source": draw(_name)}
    for name in lay.fields:
        if name == "extension" and lay.fields[-1] == "extension" and "filename" in lay.fields:
            continue  # derived from the file name
        if name in lay.optional and draw(st.booleans()):
            continue
        values[name] = draw(_values.get(name, _name))
    values.update(lay.fixed)
    # an optional part needs the parts before it: drop site when well is absent
    if "site" in lay.optional and "well" not in values:
        values.pop("site", None)
    return product, values


@settings(max_examples=600, deadline=None)
@given(_product_fields())
def test_parse_inverts_format_for_every_product(case):
    product, values = case
    try:
        key = format_key(product, **values)
    except ParameterError as exc:
        # the only refusal allowed: names that would read back differently
        assert "ambiguous" in str(exc)
        return
    parsed = parse_key(key, strict=True)
    assert parsed.product == product
    for name, value in values.items():
        assert getattr(parsed, name) == value, (name, key)
    for name in set(FIELDS) - set(values) - {"filename", "extension"}:
        assert getattr(parsed, name) is None, (name, key)
    assert parsed.key == key
    # the formatter is the inverse as well: formatting the parsed fields gives the key back
    again = {n: getattr(parsed, n) for n in values}
    assert format_key(product, **again) == key


def test_hypothesis_strategy_reaches_every_product():
    assert {p for p, _ in _formattable} == set(PRODUCTS) - {"other"}


def test_format_examples_from_the_contract():
    base = {"project": "cpg0016-jump", "source": "source_4", "batch": "2021_04_26_Batch1"}
    assert (
        format_key("profiles", plate="BR00117037", extension="parquet", **base)
        == "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
    )
    assert format_key(
        "profiles", plate="BR00117037", variant="normalized", extension="csv.gz", **base
    ).endswith("/BR00117037/BR00117037_normalized.csv.gz")
    assert (
        format_key("profiles", plate="*", extension="parquet", allow_glob=True, **base)
        == "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/*/*.parquet"
    )
    assert format_key(
        "analysis",
        plate="CP-CC9-R1-04",
        well="A01",
        site="3",
        variant="Cells",
        extension="csv",
        **base,
    ).endswith("/CP-CC9-R1-04/analysis/CP-CC9-R1-04-A01-3/Cells.csv")
    assert format_key(
        "load_data", plate="P1", version="orig", extension="parquet", **base
    ).endswith("/workspace/load_data_csv_orig/2021_04_26_Batch1/P1/load_data.parquet")
    assert format_key(
        "embeddings", model="m", plate="P1", well="A01", extension="parquet", **base
    ).endswith("/workspace_dl/embeddings/m/2021_04_26_Batch1/P1/P1/A01/embedding.parquet")


@pytest.mark.parametrize(
    ("product", "fields", "message"),
    [
        ("profile", {"project": "p", "source": "s"}, "did you mean 'profiles'"),
        (
            "profiles",
            {"project": "p", "source": "s", "batch": "b", "extension": "parquet"},
            "plate",
        ),
        (
            "profiles",
            {
                "project": "p",
                "source": "s",
                "batch": "b",
                "plate": "P",
                "extension": "parquet",
                "well": "A01",
            },
            "well",
        ),
        (
            "profiles",
            {"project": "p", "source": "s", "batch": "b", "plate": "*", "extension": "parquet"},
            "glob",
        ),
        (
            "profiles",
            {"project": "p", "source": "s", "batch": "..", "plate": "P", "extension": "parquet"},
            "'..'",
        ),
        (
            "profiles",
            {
                "project": "p",
                "source": "s",
                "batch": "b",
                "plate": "P",
                "extension": "parquet",
                "colour": "x",
            },
            "unknown fields",
        ),
        (
            "embeddings",
            {
                "project": "p",
                "source": "s",
                "model": "m",
                "batch": "b",
                "plate": "P",
                "well": "1A",
                "site": "1",
                "extension": "npz",
            },
            "well",
        ),
        (
            "analysis",
            {
                "project": "p",
                "source": "s",
                "batch": "b",
                "plate": "P",
                "site": "1",
                "variant": "Cells",
                "extension": "csv",
            },
            "site",
        ),
        (
            "profiles_assembled",
            {
                "project": "p",
                "source": "s",
                "subset": "x.csv",
                "version": "v1",
                "variant": "a.csv",
                "extension": "gz",
            },
            "ambiguous",
        ),
    ],
)
def test_format_key_rejects_bad_fields(product, fields, message):
    with pytest.raises(ParameterError) as info:
        format_key(product, **fields)
    assert message in str(info.value)


# ------------------------------------------------------------------------------------------
# validate_name, URLs, extensions, versions, the table itself
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "a/b",
        "/abs",
        "a\\b",
        "..",
        ".",
        "a..b",
        "%2e%2e",
        "x%2Fy",
        "%5c",
        "a\x00b",
        "a\nb",
        "tab\there",
        "{{ plate }}",
        "x}}",
        "{% if %}",
        "!cmd",
        "~root",
        "s3://bucket",
        " lead",
        "trail ",
        "a*b",
        "a?",
        "[ab]",
    ],
)
def test_validate_name_rejects_containment_tricks(bad):
    with pytest.raises(ParameterError) as info:
        validate_name(bad, "plate")
    assert "plate" in str(info.value)


@pytest.mark.parametrize(
    "good",
    [
        "BR00117037",
        "CP-CC9-R1-04",
        "1053601756",
        "JUMPCPE-20210623-Run01_20210624_003152",
        "v1.0a",
        "csv.gz",
        "100%",
    ],
)
def test_validate_name_accepts_real_names(good):
    assert validate_name(good, "plate") == good


def test_validate_name_glob_only_when_allowed():
    assert validate_name("BR*", "plate", allow_glob=True) == "BR*"
    assert validate_name("[AB]??", "plate", allow_glob=True) == "[AB]??"
    with pytest.raises(ParameterError):
        validate_name("../*", "plate", allow_glob=True)
    with pytest.raises(ParameterError):
        validate_name(7, "plate")  # type: ignore[arg-type]


def test_urls_round_trip():
    key = "cpg0016-jump/source_4/workspace/profiles/b/p/p,1 x.parquet"
    assert split_url(https_url("cellpainting-gallery", key)) == ("cellpainting-gallery", key)
    assert split_url(s3_url("cellpainting-gallery", key)) == ("cellpainting-gallery", key)
    assert split_url(key) == (None, key)
    assert split_url("https://cellpainting-gallery.s3.us-east-1.amazonaws.com/a/b") == (
        "cellpainting-gallery",
        "a/b",
    )
    assert split_url("https://s3.amazonaws.com/cellpainting-gallery/a/b") == (
        "cellpainting-gallery",
        "a/b",
    )
    for bad in ("ftp://x/y", "https://example.org/a/b", "s3:///a"):
        with pytest.raises(GalleryPathError) as info:
            split_url(bad)
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("name", "stem", "ext"),
    [
        ("a.csv.gz", "a", "csv.gz"),
        ("a.parquet", "a", "parquet"),
        ("OAA01.02.03.04.A.txt", "OAA01.02.03.04.A", "txt"),
        ("README", "README", None),
        (".zgroup", ".zgroup", None),
        ("x.gz", "x", "gz"),
        ("x.tar.zst", "x", "tar.zst"),
    ],
)
def test_split_ext_keeps_compression_suffixes(name, stem, ext):
    assert split_ext(name) == (stem, ext)


def test_version_key_orders_versions():
    versions = ["v2.0", "v1.0b", "v1.1", "v1.0", "v1.0a", "v10.0", "v1.9"]
    assert sorted(versions, key=version_key) == [
        "v1.0",
        "v1.0a",
        "v1.0b",
        "v1.1",
        "v1.9",
        "v2.0",
        "v10.0",
    ]
    assert max(["v1.0a", "v1.0", "jump-profiling-recipe_2024_a917fa7"], key=version_key) == "v1.0a"


def test_product_table_is_consistent():
    assert PRODUCTS[-1] == "other"
    assert set(PRODUCT_SPECS) == set(PRODUCTS) - {"other"}
    spec = PRODUCT_SPECS["profiles"]
    assert (spec.tier, spec.base, spec.levels) == (1, ("workspace", "profiles"), ("batch", "plate"))
    assert PRODUCT_SPECS["profiles_assembled"].levels == ("subset", "version")
    assert PRODUCT_SPECS["profiles_assembled"].tier == 2
    assert PRODUCT_SPECS["dl_profiles"].base == ("workspace_dl", "profiles")
    assert PRODUCT_SPECS["embeddings"].levels[:3] == ("model", "batch", "plate")
    for spec in PRODUCT_SPECS.values():
        assert spec.template.startswith("{project}/{source}/" + "/".join(spec.base))
        assert set(spec.levels) <= set(FIELDS)


def test_listing_prefixes():
    spec = PRODUCT_SPECS["analysis"]
    assert spec.prefix(project="p", source="s") == "p/s/workspace/analysis/"
    assert (
        spec.prefix(project="p", source="s", batch="b", plate="P")
        == "p/s/workspace/analysis/b/P/analysis/"
    )
    assert PRODUCT_SPECS["profiles_assembled"].prefix(project="p", source="s", subset="ORF") == (
        "p/s/workspace/profiles_assembled/ORF/"
    )
    with pytest.raises(ParameterError):
        spec.prefix(project="p", source="s", batch="../x")


def test_gallery_path_is_immutable_and_comparable():
    key = "cpg0016-jump/source_4/workspace/profiles/b/P/P.parquet"
    p = parse_key(key)
    with pytest.raises(AttributeError):
        p.plate = "other"  # type: ignore[misc]
    assert p == GalleryPath(
        project="cpg0016-jump",
        source="source_4",
        product="profiles",
        batch="b",
        plate="P",
        filename="P.parquet",
        extension="parquet",
        key=key,
    )
    assert parse_key("s3://bucket/" + key) == p
    assert hash(p) == hash(parse_key(key))


@pytest.mark.parametrize(
    ("product", "layout"), _formattable, ids=[lay.template for _, lay in _formattable]
)
def test_every_formattable_layout_round_trips_plain_values(product, layout):
    plain = {"well": "B07", "site": "4", "extension": "parquet", "filename": "f1.tiff"}
    values = {"project": "cpg0099-x", "source": "source_1", **layout.fixed}
    for name in layout.fields:
        if name == "extension" and "filename" in layout.fields:
            continue
        values.setdefault(name, plain.get(name, f"{name}_1"))
    key = format_key(product, **values)
    parsed = parse_key(key, strict=True)
    assert parsed.product == product
    assert {n: getattr(parsed, n) for n in values} == values


@pytest.mark.parametrize("url", ["://cpg0016-jump", "ftp://b/cpg0016-jump/x.csv", "s3:///k"])
def test_tolerant_parse_of_a_url_it_cannot_split_is_other(url):
    # hypothesis found '://cpg0016-jump' raising in tolerant mode (test_parse_key_fuzzed)
    assert parse_key(url).product == "other"
    with pytest.raises(GalleryPathError):
        parse_key(url, strict=True)


KEY = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117035/BR00117035.parquet"


@pytest.mark.parametrize(
    "url",
    [
        f"s3://cellpainting-gallery/{KEY}",
        f"s3://bucket/mirror/{KEY}?versionId=abc",
        f"/data/cpg0001-copies/{KEY}",  # a folder named like a project before the real one
        f"s3://bucket//{KEY}",
        f"s3://bucket/{KEY.replace('/workspace/', '/workspace//')}",  # an empty segment
        f"https://cellpainting-gallery.s3.amazonaws.com/{KEY}",
    ],
)
def test_a_gallery_key_is_found_under_any_prefix(url):
    """``find_gallery_path`` finds the key wherever it starts in a URL: from the first
    project folder when that parses (without splitting the URL), else from any segment."""
    from intake_cpg.refs import find_gallery_path

    gp = find_gallery_path(url)
    assert gp is not None and gp.key == KEY
    assert (gp.product, gp.batch, gp.plate) == ("profiles", "2021_04_26_Batch1", "BR00117035")
