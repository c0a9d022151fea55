"""Raw image names: plate without the measurement suffix; well/site/channel from three schemes."""

from __future__ import annotations

import pandas as pd
import pytest

from intake_cpg.image_names import IMAGE_SCHEMES, image_fields, plate_of_folder


@pytest.mark.parametrize(
    "folder, plate",
    [
        ("BR00117037__2021-05-13T13_37_20-Measurement1", "BR00117037"),
        ("BR00121437__2021-06-01T08_01_02-Measurement 2", "BR00121437"),
        ("APTJUM122__Measurement1", "APTJUM122"),
        ("1053601756", "1053601756"),
        ("CP-CC9-R1-04", "CP-CC9-R1-04"),
        ("Plate__odd_name", "Plate__odd_name"),  # not a measurement suffix: kept whole
    ],
)
def test_plate_of_folder(folder, plate):
    assert plate_of_folder(folder) == plate


@pytest.mark.parametrize(
    "filename, scheme, well, site, channel",
    [
        ("r01c01f01p01-ch1sk1fk1fl1.tiff", "phenix", "A01", "1", "1"),
        ("r16c24f09p01-ch6sk1fk1fl1.tiff", "phenix", "P24", "9", "6"),
        ("1053601756_B12_T0001F006L01A03Z01C03.tif", "yokogawa", "B12", "6", "3"),
        ("CP-CC9-R1-04_A01_T0001F001L01A01Z01C01.tif", "yokogawa", "A01", "1", "1"),
        ("20210813_Plate1_C03_s4_w2A1B2C3D4-E5F6.tif", "imagexpress", "C03", "4", "2"),
        ("Plate1_H07_s12_w5.TIF", "imagexpress", "H07", "12", "5"),
        ("Index.idx.xml", None, None, None, None),
        ("r01c01f01p01-ch1sk1fk1fl1_thumb.png", None, None, None, None),
    ],
)
def test_file_name_schemes(filename, scheme, well, site, channel):
    got = image_fields("X__2021-05-13T13_37_20-Measurement1", filename)
    assert (got["scheme"], got["well"], got["site"], got["channel"]) == (
        scheme,
        well,
        site,
        channel,
    )
    assert got["plate"] == "X" and got["plate_folder"].endswith("Measurement1")


def test_every_scheme_parses_its_own_example():
    assert {image_fields("p", s.example)["scheme"] for s in IMAGE_SCHEMES} == {
        s.name for s in IMAGE_SCHEMES
    }


def test_demo_load_data_file_names_give_their_rows_well_and_site(demo_local):
    """The demo's LoadData tables name Phenix files; every name gives its row's well and site."""
    key = next(k for k in demo_local.keys if "/load_data_csv/" in k)
    load = pd.read_csv(demo_local.url(key), dtype=str)
    for ch, col in enumerate(["FileName_OrigDNA", "FileName_OrigRNA"], start=1):
        fields = [image_fields("p", f) for f in load[col]]
        assert [f["well"] for f in fields] == load.Metadata_Well.tolist()
        assert [f["site"] for f in fields] == load.Metadata_Site.tolist()
        assert {f["channel"] for f in fields} == ({"1"} if ch == 1 else {"5"})


def test_images_table_from_s3(make_bucket, s3_admin, s3_options):
    """Three microscopes' folders in a bucket on the loopback S3 server, listed as one table."""
    from intake_cpg.images import ImagesSource

    bucket = make_bucket()
    base = f"{bucket[5:]}/cpg0016-jump/source_4/images"
    files = {
        "B1/images/BR1__2021-05-13T13_37_20-Measurement1/Images/r03c04f02p01-ch2sk1fk1fl1.tiff": 5,
        "B1/images/BR1__2021-05-13T13_37_20-Measurement1/Images/Index.idx.xml": 3,
        "B1/images/BR2/BR2_C05_T0001F004L01A02Z01C03.tif": 7,
        "B2/images/PX1/TimePoint_1/PX1_D06_s2_w4ABCD.tif": 9,
    }
    for key, size in files.items():
        s3_admin.pipe(f"{base}/{key}", b"x" * size)
    s3_admin.invalidate_cache()
    df = ImagesSource(bucket, "cpg0016-jump", "source_4", s3_options).read()
    got = df[
        [
            "Metadata_Batch",
            "Metadata_Plate",
            "scheme",
            "Metadata_Well",
            "Metadata_Site",
            "channel",
            "size",
        ]
    ].values.tolist()
    assert got == [
        ["B1", "BR1", "phenix", "C04", "2", "2", 5],
        ["B1", "BR2", "yokogawa", "C05", "4", "3", 7],
        ["B2", "PX1", "imagexpress", "D06", "2", "4", 9],
    ]
    assert df.url.str.startswith("s3://").all()
    one = ImagesSource(bucket, "cpg0016-jump", "source_4", s3_options, plate="BR1").read()
    assert set(one.plate_folder) == {"BR1__2021-05-13T13_37_20-Measurement1"}
    every = ImagesSource(bucket, "cpg0016-jump", "source_4", s3_options, all_files=True).read()
    assert len(every) == 4 and every.scheme.isna().sum() == 1


def test_images_of_the_demo_parse_to_their_fields(demo_local):
    """The demo's real-named images of two microscopes: parse_key gives the plate without the
    measurement suffix, the folder as named, well, site and channel."""
    from pathlib import Path

    from intake_cpg.images import ImagesSource
    from intake_cpg.layout import parse_key

    for source, scheme in (("source_5", "phenix"), ("source_13", "yokogawa")):
        df = ImagesSource(demo_local.root, "cpg0016-jump", source).read()
        assert len(df) == 4 and set(df.scheme) == {scheme}, source
        assert sorted(set(df.Metadata_Well)) == ["A01", "A02"] and set(df.channel) == {"1", "2"}
        for row in df.itertuples():
            p = parse_key(row.key)
            assert (p.product, p.plate, p.plate_folder, p.well, p.site, p.channel) == (
                "images",
                row.Metadata_Plate,
                row.plate_folder,
                row.Metadata_Well,
                "1",
                row.channel,
            )
            assert Path(demo_local.root, row.key).read_bytes()[:4] == b"II*\x00"  # a TIFF
    phenix = ImagesSource(demo_local.root, "cpg0016-jump", "source_5").read()
    assert phenix.plate_folder.str.endswith("-Measurement1").all()
    assert not phenix.Metadata_Plate.str.contains("__").any()
