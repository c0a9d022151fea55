"""Plates chosen by what they hold: the plates table and selection on the real cpg0016 plate list."""

from __future__ import annotations

import pandas as pd
import pytest

from intake_cpg.errors import ParameterError, ProductNotFoundError
from intake_cpg.metadata import decode_table
from intake_cpg.metadata.synthetic import packaged_file
from intake_cpg.plates import plates_table, select_plates
from intake_cpg.readers import STRING_DTYPE


@pytest.fixture(scope="module")
def real():
    """Every real cpg0016 plate as if listed (one bare file each), with the real plate types."""
    meta = decode_table(packaged_file("plate"), "plate.csv.gz")
    found = [
        (r.Metadata_Source, r.Metadata_Batch, r.Metadata_Plate, "")
        for r in meta.itertuples(index=False)
    ]
    return plates_table(found, meta), meta


def test_one_row_per_plate_with_type_and_variants(real):
    table, meta = real
    assert len(table) == len(meta) == 2525
    assert list(table.columns) == [
        "Metadata_Source",
        "Metadata_Batch",
        "Metadata_Plate",
        "Metadata_PlateType",
        "variants",
    ]
    assert all(table[c].dtype == STRING_DTYPE for c in table.columns[:4])
    assert set(table.variants) == {("",)}
    want = meta.groupby("Metadata_PlateType").size().sort_index()
    got = table.groupby("Metadata_PlateType").size().sort_index()
    pd.testing.assert_series_equal(got, want)


def test_two_target2_plates_per_source_by_hand_and_by_selection(real):
    table, meta = real
    chosen = select_plates(table, plate_type="TARGET2").groupby("Metadata_Source").head(2)
    by_hand = (
        meta[meta.Metadata_PlateType == "TARGET2"]
        .sort_values(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
        .groupby("Metadata_Source")
        .head(2)
    )
    assert sorted(chosen.Metadata_Plate) == sorted(by_hand.Metadata_Plate)
    assert chosen.Metadata_Source.value_counts().eq(2).all()
    back = select_plates(table, plates=chosen[["Metadata_Source", "Metadata_Plate"]])
    assert sorted(back.Metadata_Plate) == sorted(chosen.Metadata_Plate)


def test_globs_lists_and_errors(real):
    table, _ = real
    got = select_plates(table, source=["source_2", "source_1?"], plate_type=["ORF", "CRISPR"])
    assert set(got.Metadata_Source) <= {"source_2", "source_10", "source_11", "source_13"}
    assert set(got.Metadata_PlateType) <= {"ORF", "CRISPR"} and len(got)
    assert (select_plates(table, plate="1053601756").Metadata_Source == "source_2").all()
    with pytest.raises(ProductNotFoundError, match="did you mean 'TARGET2'"):
        select_plates(table, plate_type="TARGET3")
    with pytest.raises(ProductNotFoundError, match="source_4/NOPE"):
        select_plates(table, plates=pd.DataFrame({"source": ["source_4"], "plate": ["NOPE"]}))
    with pytest.raises(ParameterError, match="not together"):
        select_plates(table, source="source_2", plate="BR00117037")
    with pytest.raises(ParameterError, match="has no plate metadata"):
        select_plates(table.drop(columns="Metadata_PlateType"), plate_type="ORF")
    with pytest.raises(ParameterError, match="lacks the column"):
        select_plates(table, plates=pd.DataFrame({"Metadata_Plate": ["BR00117037"]}))
