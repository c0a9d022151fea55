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
