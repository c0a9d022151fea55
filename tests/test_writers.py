"""Export formats: each writer streams tables of one schema into a file its readers load."""

from __future__ import annotations

import gzip

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from intake_cpg.errors import ParameterError
from intake_cpg.writers import FORMATS, format_for

PARTS = [
    pa.table({"Metadata_Plate": ["1053601756", "BR1"], "x": pa.array([1.5, 2.5], pa.float32())}),
    pa.table({"Metadata_Plate": ["0042"], "x": pa.array([3.5], pa.float32())}),
]

READ_BACK = {
    "parquet": lambda p: pq.read_table(p).to_pandas(),
    "csv": lambda p: pd.read_csv(p, dtype={"Metadata_Plate": str}),
    "arrow": lambda p: feather.read_table(p).to_pandas(),
}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("t.parquet", "parquet"), ("t.csv", "csv"), ("t.csv.gz", "csv"), ("t.feather", "arrow"),
     ("t.arrow", "arrow")],
)  # fmt: skip
def test_each_format_writes_every_part_and_reads_back(tmp_path, name, fmt):
    path = str(tmp_path / name)
    chosen = format_for(path)
    assert chosen.name == fmt
    writer = chosen.open(path, PARTS[0].schema, chosen.compression(path, None))
    for part in PARTS:
        writer.write_table(part)
    writer.close()
    got = READ_BACK[fmt](path)
    assert got["Metadata_Plate"].tolist() == ["1053601756", "BR1", "0042"]
    assert got["x"].tolist() == [1.5, 2.5, 3.5]
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            assert f.readline().strip() == '"Metadata_Plate","x"'
    if fmt == "arrow":  # Feather v2 is what polars and pandas read too
        assert pl.read_ipc(path)["Metadata_Plate"].to_list()[0] == "1053601756"
        assert pd.read_feather(path)["x"].dtype == "float32"


def test_csv_refuses_list_columns_with_what_to_do(tmp_path):
    schema = pa.schema([("plate", pa.string()), ("emb", pa.list_(pa.float32()))])
    with pytest.raises(ParameterError, match="expand_embeddings=True"):
        FORMATS["csv"].open(str(tmp_path / "e.csv"), schema, None)
    assert not (tmp_path / "e.csv").exists()  # refused before any file is made


def test_format_names_and_errors():
    assert format_for("x.out", "feather").name == "arrow"
    assert format_for("x.out", "PARQUET").name == "parquet"
    with pytest.raises(ParameterError, match="unknown output format 'xlsx'"):
        format_for("x.out", "xlsx")
    with pytest.raises(ParameterError, match="from its extension"):
        format_for("x.json")
