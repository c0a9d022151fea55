"""Readers on local files: formats, dtypes, projection bytes, filters, errors, schema modes."""

from __future__ import annotations

import io
import logging
import pathlib

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from intake_cpg import readers
from intake_cpg.errors import DataReadError, ParameterError, SchemaMismatchError
from intake_cpg.readers import STRING_DTYPE, FileSchema, ReadPlan

DATA = pathlib.Path(__file__).parent / "data" / "sources"
S4 = DATA / "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1"
BR37 = S4 / "BR00117037/BR00117037.parquet"
CPCNN = (
    DATA / "cpg0016-jump/source_4/workspace_dl/profiles/cpcnn_zenodo_7114558/2021_04_26_Batch1"
    "/BR00117037/BR00117037.parquet"
)


# -- a filesystem that counts the bytes it hands out -------------------------------------
class _CountingFile(io.RawIOBase):
    def __init__(self, f, counter):
        self.f, self.counter = f, counter

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, *a):
        return self.f.seek(*a)

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        b = self.f.read(n)
        self.counter["bytes"] += len(b)
        return b

    def readinto(self, buf):
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def close(self):
        self.f.close()
        super().close()

    @property
    def size(self):
        return self.f.size


class CountingFileSystem(LocalFileSystem):
    protocol = "countfile"
    counter = {"bytes": 0}

    def _open(self, path, mode="rb", **kwargs):
        kwargs.pop("cache_type", None)
        return _CountingFile(
            super()._open(self._strip_protocol(path), mode, **kwargs), self.counter
        )


fsspec.register_implementation("countfile", CountingFileSystem, clobber=True)


@pytest.fixture
def wide(tmp_path):
    """A wide plate: 3 string metadata + 500 float32 features, 4 row groups of 96 wells."""
    rng = np.random.default_rng(0)
    n = 384
    cols = {
        "Metadata_Source": pa.array(["source_4"] * n),
        "Metadata_Plate": pa.array(["BR00117037"] * n),
        "Metadata_Well": pa.array(
            [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
        ),
        "Metadata_Row": pa.array(np.repeat(np.arange(16), 24).astype("int64")),
        "Image_Row": pa.array(np.repeat(np.arange(16), 24).astype("int64")),
    }
    for i in range(500):
        cols[f"Cells_F{i}"] = pa.array(rng.random(n).astype("float32"))
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=96)
    return path


def _count(url, **kw):
    CountingFileSystem.counter["bytes"] = 0
    df, names = readers.read_file(url, **kw)
    return df, CountingFileSystem.counter["bytes"]


# -- formats -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind", "sep", "comp"),
    [
        ("a/BR1.parquet", "parquet", None, None),
        ("a/BR1_normalized.csv.gz", "text", ",", "gzip"),
        ("a/load_data.csv", "text", ",", None),
        ("a/platemap/C-7161-01-LM6-001.txt", "text", "\t", None),
        ("https://b.s3.amazonaws.com/x.TSV?versionId=1", "text", "\t", None),
    ],
)
def test_detect_format(name, kind, sep, comp):
    assert readers.detect_format(name) == readers.FileFormat(kind, sep, comp)


def test_detect_format_override_and_errors():
    assert readers.detect_format("x.bin", "csv.gz") == readers.FileFormat("text", ",", "gzip")
    with pytest.raises(ParameterError, match="format="):
        readers.detect_format("x.sqlite")
    with pytest.raises(ParameterError, match="unknown format"):
        readers.detect_format("x.csv", "excel")


# -- schema ------------------------------------------------------------------------------
def test_read_schema_parquet_matches_file():
    s = readers.read_schema(str(BR37))
    table = pq.read_table(BR37)
    assert s.columns == tuple(table.schema.names)
    assert s.num_rows == table.num_rows == 384
    assert s.dtypes["Metadata_Plate"] == STRING_DTYPE
    assert s.dtypes["Cells_AreaShape_Zernike_5_1"] == np.dtype("float32")


def test_read_schema_reads_footer_only(wide):
    url = f"countfile://{wide}"
    CountingFileSystem.counter["bytes"] = 0
    s = readers.read_schema(url)
    footer = pq.ParquetFile(wide).metadata.serialized_size
    assert len(s.columns) == 505
    assert CountingFileSystem.counter["bytes"] < footer + 70_000  # footer plus pyarrow's tail read
    assert CountingFileSystem.counter["bytes"] < wide.stat().st_size / 3


def test_digit_plate_stays_string_in_csv(tmp_path):
    path = tmp_path / "1053601756.csv.gz"
    pd.DataFrame(
        {
            "Metadata_Plate": ["1053601756", "0012"],
            "Metadata_Well": ["A01", "A02"],
            "Metadata_Site": [1, 2],
            "Cells_Count": [10, 12],
            "Cells_Area": [1.5, np.nan],
        }
    ).to_csv(path, index=False, compression="gzip")
    s = readers.read_schema(str(path))
    assert s.dtypes["Metadata_Plate"] == STRING_DTYPE
    assert s.dtypes["Metadata_Site"] == STRING_DTYPE
    assert s.dtypes["Cells_Count"] == np.dtype("float64")
    df, names = readers.read_file(str(path), None, dtypes=s.dtypes)
    assert df["Metadata_Plate"].tolist() == ["1053601756", "0012"]  # leading zero kept
    assert df["Metadata_Site"].tolist() == ["1", "2"]
    assert names == (
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "Cells_Count",
        "Cells_Area",
    )


def test_platemap_txt_is_tab_separated(tmp_path):
    path = tmp_path / "platemap" / "P1.txt"
    path.parent.mkdir()
    path.write_text("plate_map_name\twell_position\tbroad_sample\nP1\tA01\tBRD-K1\nP1\tA02\t\n")
    df, _ = readers.read_file(str(path), None)
    assert list(df.columns) == ["plate_map_name", "well_position", "broad_sample"]
    assert df["well_position"].tolist() == ["A01", "A02"]


def test_string_metadata_cast_in_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"Metadata_Source": [1, 2], "v": [1.0, 2.0]}), path)
    s = readers.read_schema(str(path))
    df, _ = readers.read_file(str(path), None)
    assert s.dtypes["Metadata_Source"] == STRING_DTYPE == df["Metadata_Source"].dtype
    assert df["Metadata_Source"].tolist() == ["1", "2"]


# -- projection and pushdown: bytes actually read ------------------------------------------
def test_columns_projection_reads_few_bytes(wide):
    url = f"countfile://{wide}"
    cols = ["Metadata_Well"] + [f"Cells_F{i}" for i in range(0, 450, 50)]
    full, full_bytes = _count(url, columns=None)
    part, part_bytes = _count(url, columns=cols)
    footer = pq.ParquetFile(wide).metadata.serialized_size
    assert full_bytes >= wide.stat().st_size * 0.9
    data_bytes = part_bytes - footer - 65536  # pyarrow first reads the last 64 KiB, then the footer
    # 10 of 505 columns: their data is about 2 % of the file's data
    assert data_bytes < 0.05 * (wide.stat().st_size - footer), (part_bytes, footer)
    assert part_bytes < 0.3 * full_bytes
    expected = pq.read_table(wide, columns=cols).to_pandas()
    pd.testing.assert_frame_equal(part, expected, check_dtype=False)
    assert list(part.columns) == cols


def test_filters_prune_row_groups_and_rows(wide):
    url = f"countfile://{wide}"
    cols = ["Image_Row", "Cells_F7"]
    _, all_bytes = _count(url, columns=cols)
    got, some_bytes = _count(
        url, columns=cols, filters=[("Cells_F7", "<", 2.0), ("Image_Row", ">=", 12)]
    )
    assert len(got) == 96
    assert set(got["Image_Row"]) == {12, 13, 14, 15}
    overhead = pq.ParquetFile(wide).metadata.serialized_size + 65536  # footer + pyarrow's tail read
    # only the last of 4 row groups can match: about a quarter of the column data is read
    assert some_bytes - overhead < 0.4 * (all_bytes - overhead), (some_bytes, all_bytes, overhead)


def test_filters_on_metadata_compare_strings(wide):
    """Metadata columns are strings in the output, so filters on them compare strings too,
    even when the file stores integers (no pushdown then; rows filtered after the cast)."""
    got, _ = readers.read_file(
        str(wide), ["Metadata_Row"], filters=[("Metadata_Row", "in", ["3", "15"])]
    )
    assert sorted(set(got["Metadata_Row"])) == ["15", "3"]
    assert len(got) == 48


def test_filters_exact_rows():
    df, _ = readers.read_file(str(BR37), None, filters=[("Metadata_Well", "in", ["A01", "P24"])])
    assert df["Metadata_Well"].tolist() == ["A01", "P24"]
    ref = pq.read_table(BR37).to_pandas()
    ref = ref[ref["Metadata_Well"].isin(["A01", "P24"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(df, ref, check_dtype=False)


# -- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"PAR1garbage", None])
def test_corrupt_parquet_raises_data_read_error(tmp_path, content):
    path = tmp_path / "bad.parquet"
    data = BR37.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(DataReadError, match=str(path)):
        readers.read_schema(str(path))
    with pytest.raises(DataReadError, match="parquet"):
        readers.read_file(str(path), None)


def test_truncated_gzip_raises_data_read_error(tmp_path):
    good = tmp_path / "good.csv.gz"
    pd.DataFrame({"Metadata_Plate": ["p"] * 5000, "x": np.arange(5000.0)}).to_csv(good, index=False)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(DataReadError, match="bad.csv.gz"):
        readers.read_file(str(bad), None)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataReadError, match="empty.csv"):
        readers.read_schema(str(empty))


# -- pure helpers ------------------------------------------------------------------------
def test_apply_filters_dnf():
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["x", "y", "z", None]})
    assert readers.apply_filters(df, [("a", ">=", 2), ("a", "<", 4)])["a"].tolist() == [2, 3]
    assert readers.apply_filters(df, [[("b", "==", "x")], [("a", "==", 4)]])["a"].tolist() == [1, 4]
    assert readers.apply_filters(df, [("b", "not in", ["x", "y"])])["a"].tolist() == [3, 4]
    with pytest.raises(ParameterError, match="operator"):
        readers.apply_filters(df, [("a", "~", 1)])


def test_expand_list_columns_values_and_width_error():
    table = pq.read_table(CPCNN)
    df = table.to_pandas()
    k = len(df["all_emb"].iloc[0])
    out = readers.expand_list_columns(df, {"all_emb": k})
    assert [c for c in out.columns if c.startswith("all_emb")] == [f"all_emb_{j}" for j in range(k)]
    np.testing.assert_allclose(
        out[[f"all_emb_{j}" for j in range(k)]].to_numpy(), np.stack(df["all_emb"])
    )
    with pytest.raises(DataReadError, match="expected 2"):
        readers.expand_list_columns(df, {"all_emb": 2}, "u")


def test_combine_schemas_modes():
    a = FileSchema("a", {"m": STRING_DTYPE, "x": np.dtype("float32"), "y": np.dtype("float32")})
    b = FileSchema("b", {"m": STRING_DTYPE, "x": np.dtype("float64"), "z": np.dtype("float64")})
    assert list(readers.combine_schemas([a, b], "union")) == ["m", "x", "y", "z"]
    assert readers.combine_schemas([a, b], "union")["x"] == np.dtype("float64")
    assert list(readers.combine_schemas([a, b], "intersection")) == ["m", "x"]
    assert readers.combine_schemas([a, b], "first") == dict(a.dtypes)
    with pytest.raises(ParameterError, match="schema"):
        readers.combine_schemas([a], "loose")


def test_path_fields_under_any_prefix():
    # a user-given URL is parsed once, into its FileRef; the readers take the parsed path
    from intake_cpg.refs import ref_from_url

    assert readers.path_values(ref_from_url(str(BR37)).path) == {
        "Metadata_Source": "source_4",
        "Metadata_Batch": "2021_04_26_Batch1",
        "Metadata_Plate": "BR00117037",
    }
    assert readers.path_values(ref_from_url("/tmp/somewhere/table.parquet").path) == {}


# -- partitions under a plan -------------------------------------------------------------
def _plan(meta_cols, dtypes, mode, **kw):
    meta = pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in meta_cols})
    return ReadPlan(meta=meta, expected=tuple(c for c in meta_cols if c in dtypes), mode=mode, **kw)


@pytest.fixture
def mixed(tmp_path):
    """Two plates of one batch whose feature sets differ (as between sources)."""
    root = tmp_path / "cpg0016-jump/source_4/workspace/profiles/B1"
    t = pq.read_table(BR37)
    a = root / "P1/P1.parquet"
    b = root / "P2/P2.parquet"
    a.parent.mkdir(parents=True)
    b.parent.mkdir(parents=True)
    pq.write_table(t, a)
    tb = t.drop_columns(["Cells_AreaShape_Zernike_5_5"]).append_column(
        "Nuclei_New", pa.array(np.arange(t.num_rows, dtype="float32"))
    )
    pq.write_table(tb, b)
    return a, b


def test_plan_strict_mismatch_names_file_and_columns(mixed):
    a, b = mixed
    s = readers.read_schema(str(a))
    plan = _plan(list(s.columns), s.dtypes, "strict")
    assert len(readers.read_partition([str(a)], plan)) == 384
    with pytest.raises(SchemaMismatchError) as err:
        readers.read_partition([str(b)], plan)
    msg = str(err.value)
    assert str(b) in msg and "Cells_AreaShape_Zernike_5_5" in msg and "Nuclei_New" in msg
    assert "schema='union'" in msg and "schema='first'" in msg


def test_plan_first_fills_nan_and_warns(mixed, caplog):
    a, b = mixed
    s = readers.read_schema(str(a))
    plan = _plan(list(s.columns), s.dtypes, "first")
    with caplog.at_level(logging.WARNING, logger="intake_cpg.readers"):
        df = readers.read_partition([str(b)], plan)
    assert list(df.columns) == list(s.columns)
    assert df["Cells_AreaShape_Zernike_5_5"].isna().all()
    assert df["Cells_AreaShape_Zernike_5_5"].dtype == np.dtype("float32")
    assert any("Nuclei_New" in r.getMessage() and str(b) in r.getMessage() for r in caplog.records)


def test_dask_column_projection_reaches_reader(wide):
    """``ddf[[...]]`` on a ProfilesSource reads only those columns (dask passes ``columns=``)."""
    from intake_cpg.sources import ProfilesSource

    src = ProfilesSource(f"countfile://{wide}")
    ddf = src.to_dask()
    CountingFileSystem.counter["bytes"] = 0
    full = ddf.compute(scheduler="sync")
    full_bytes = CountingFileSystem.counter["bytes"]
    CountingFileSystem.counter["bytes"] = 0
    two = ddf[["Metadata_Well", "Cells_F3"]].compute(scheduler="sync")
    two_bytes = CountingFileSystem.counter["bytes"]
    pd.testing.assert_frame_equal(two, full[["Metadata_Well", "Cells_F3"]])
    assert two_bytes < 0.3 * full_bytes, (two_bytes, full_bytes)


def _dtypes_by_conversion(schema: pa.Schema) -> dict:
    """What the schema's dtypes were before the direct mapping: pyarrow converts an empty
    table (the reference the mapping must agree with)."""
    schema = readers._arrow_string_safe(schema)
    empty = schema.empty_table().to_pandas()
    return {
        f.name: readers.STRING_DTYPE
        if readers.is_string_column(f.name) or pa.types.is_string(f.type)
        else dt
        for f, dt in zip(schema, empty.dtypes, strict=True)
    }


@pytest.mark.parametrize(
    "table",
    [
        pa.table({"Metadata_Plate": [1], "a": np.array([1.0], "float32"), "b": [True], "s": ["x"]}),
        pa.Table.from_pandas(pd.DataFrame({"a": [1.5], "i": [1], "u": np.array([1], "uint8")})),
        pa.Table.from_pandas(pd.DataFrame({"a": [1.5]}, index=pd.Index([7], name="row"))),
        pa.Table.from_pandas(pd.DataFrame({"n": pd.array([1, None], "Int64"), "f": [1.0, 2.0]})),
        pa.Table.from_pandas(pd.DataFrame({"c": pd.Categorical(["a", "b"]), "f": [1.0, 2.0]})),
        pa.table({"t": pa.array([1], pa.timestamp("s")), "l": [[1.0]]}),
    ],
    ids=["plain", "pandas-written", "stored-index", "nullable-int", "categorical", "other-types"],
)
def test_schema_dtypes_agree_with_pyarrows_conversion(table):
    """The direct type mapping (no empty-table conversion) gives pyarrow's dtypes, columns
    and order, and declines (falls back) where pandas metadata asks for something else."""
    got = readers._pandas_dtypes(table.schema)
    want = _dtypes_by_conversion(table.schema)
    assert list(got) == list(want) and got == want
