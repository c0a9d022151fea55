"""The ``images`` entry of a source: a row of the entry table, read from the demo's raw images.

The demo holds 1x1 TIFFs named as a Yokogawa microscope names them (``source_13``, plate folder
= plate) and as a Phenix one does (``source_5``, plate folder with the measurement suffix);
``source_4/images/`` holds illumination functions only. Reads go through the real loopback S3
server where ETags matter.
"""

from __future__ import annotations

import intake
import pytest

from intake_cpg import storage
from intake_cpg.entries import ENTRY_TABLE
from intake_cpg.errors import ParameterError, ProductNotFoundError
from intake_cpg.image_names import image_fields, plate_of_folder
from intake_cpg.images import IMAGE_COLUMNS, ImagesSource
from intake_cpg.layout import parse_key
from intake_cpg.resolve import Gallery

ROOT = "s3://cpg-demo"
JUMP = "cpg0016-jump"


@pytest.fixture
def fresh():
    """Storage objects (and their request counters) made anew for the test."""
    storage._SHARED.clear()
    yield
    storage._SHARED.clear()


def _image_keys(demo, source: str) -> list[str]:
    return sorted(
        k
        for k in demo.keys
        if k.startswith(f"{JUMP}/{source}/") and parse_key(k).product == "images"
    )


def test_listing_a_source_costs_no_more_with_the_images_row(demo_local, fresh):
    """The images entry is present by the source's images/ folder, which the source's own
    listing shows: listing a source makes the same requests with and without the row."""
    products = {r.product for r in ENTRY_TABLE.at_level("source")}
    assert "images" in products
    costs = {}
    for name, asked in (("without", products - {"images"}), ("with", products)):
        storage._SHARED.clear()
        st = storage.get_storage(demo_local.root)
        present = Gallery(st).present(JUMP, "source_4", asked)
        costs[name] = (dict(st.requests), "images" in present)
    assert costs["without"][0] == costs["with"][0]
    assert costs == {"without": (costs["with"][0], False), "with": (costs["with"][0], True)}

    storage._SHARED.clear()
    source = intake.open_cpg(demo_local.root)[JUMP]["source_4"]
    before = dict(source.storage.requests)
    assert "images" in list(source)
    listed = {k: v - before.get(k, 0) for k, v in source.storage.requests.items()}
    assert listed == {k: v for k, v in costs["with"][0].items() if v}
    assert len(source.df) == len(list(source))  # the entries table lists nothing more
    assert {k: v - before.get(k, 0) for k, v in source.storage.requests.items()} == listed


def test_images_table_from_s3(demo_s3, s3_options, fresh):
    """One row per image file: URL, key, size and ETag from the listing, fields from the name."""
    cat = intake.open_cpg(ROOT, storage_options=s3_options)
    for source, scheme in (("source_13", "yokogawa"), ("source_5", "phenix")):
        df = cat[JUMP][source]["images"].read()
        keys = _image_keys(demo_s3, source)
        assert list(df.columns) == list(IMAGE_COLUMNS)
        assert df.key.tolist() == keys and len(keys) == 4  # 2 wells x 1 site x 2 channels
        assert df.url.tolist() == [f"{ROOT}/{k}" for k in keys]
        assert df["size"].tolist() == [demo_s3.sizes[k] for k in keys]
        assert df.etag.tolist() == [demo_s3.etags[k] for k in keys]
        for row in df.itertuples():
            p = parse_key(row.key)
            assert (row.Metadata_Source, row.Metadata_Batch) == (source, p.batch)
            assert row.Metadata_Plate == plate_of_folder(row.plate_folder) == p.plate
            f = image_fields(row.plate_folder, p.filename)
            assert (row.scheme, row.Metadata_Well, row.Metadata_Site, row.channel) == (
                scheme,
                f["well"],
                f["site"],
                f["channel"],
            )
        assert sorted(set(df.Metadata_Well)) == ["A01", "A02"]
        assert sorted(set(df.channel)) == ["1", "2"]


def test_filters_choose_images_by_plate_well_site_channel(demo_local, fresh):
    cat = intake.open_cpg(demo_local.root)
    entry = cat[JUMP]["source_5"]["images"]
    every = entry.read()
    folder = every.plate_folder.iloc[0]
    plate = every.Metadata_Plate.iloc[0]
    assert folder != plate and folder.startswith(plate + "__")  # the Phenix measurement suffix
    # a plate matches its folder with or without the suffix, by name or glob
    for pattern in (plate, folder, plate[:4] + "*"):
        assert entry(plate=pattern).read().key.tolist() == every.key.tolist()
    one = entry(well="A01", channel="2").read()
    assert (
        one.key.tolist()
        == every[(every.Metadata_Well == "A01") & (every.channel == "2")].key.tolist()
    )
    assert len(one) == 1
    assert entry(well="A0?", site="1").read().key.tolist() == every.key.tolist()
    with pytest.raises(ProductNotFoundError, match="no image file named \"well='P24'\""):
        entry(well="P24").read()
    with pytest.raises(ProductNotFoundError, match=f"no plate named 'XYZ'.*Available: {plate}"):
        entry(plate="XYZ").read()
    with pytest.raises(ParameterError, match="contains '/'"):
        entry(well="../A01")


def test_a_source_with_illumination_functions_only_says_so(demo_local, fresh):
    """source_4's images/ folder holds illum/ only: the entry is listed (by folder, no listing
    below), describing it lists no batch with raw images, reading it names what is there."""
    cat = intake.open_cpg(demo_local.root)
    s4 = cat[JUMP]["source_4"]
    assert "images" in list(s4)
    entry = s4["images"]
    batch = next(p for p in entry.describe()["user_parameters"] if p["name"] == "batch")
    assert batch["allowed"] == ["*"]
    assert entry.describe()["metadata"]["batches"] == []
    with pytest.raises(ProductNotFoundError, match="holds only illumination functions"):
        entry.read()
    s13 = cat[JUMP]["source_13"]["images"]
    (with_images,) = s13.describe()["metadata"]["batches"]
    with pytest.raises(ProductNotFoundError, match=f"did you mean '{with_images}'"):
        s13(batch=with_images[:-1] + "X").read()


def test_images_through_intake2_and_a_frozen_catalog(demo_local, fresh, tmp_path):
    cat = intake.open_cpg(demo_local.root)
    source = cat[JUMP]["source_13"]
    want = source["images"](channel="1").read()
    v2 = source.to_intake2("pandas")["images"]
    got = v2.read(channel="1")
    assert got.key.tolist() == want.key.tolist() and len(want) == 2
    path = tmp_path / "source_13.yaml"
    source.save(str(path))
    frozen = intake.open_catalog(str(path))["images"](channel="1").read()
    assert frozen.key.tolist() == want.key.tolist()


def test_images_source_refuses_unknown_options(demo_local):
    with pytest.raises(ParameterError, match="unknown option.*'wells'"):
        ImagesSource(demo_local.root, JUMP, "source_13", wells="A01")
