"""ProfilesSource over the loopback S3 server (and on the 2-process dask cluster)."""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle

import intake
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from intake_cpg.errors import DataReadError, ParameterError, SchemaMismatchError
from intake_cpg.readers import STRING_DTYPE
from intake_cpg.sources import ProfilesSource

ROOT = "s3://cpg-demo"
PLATE_KEY = (
    "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
)
DIGIT_KEY = (
    "cpg0016-jump/source_2/workspace/profiles/20210607_Batch_2/1053601756/1053601756.parquet"
)
DL_KEY = (
    "cpg0016-jump/source_4/workspace_dl/profiles/cpcnn_zenodo_7114558/2021_04_26_Batch1/"
    "BR00117037/BR00117037.parquet"
)


@pytest.fixture(scope="module")
def anon(s3_options):
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)


def _direct(anon, key, **kw) -> pd.DataFrame:
    with anon.open(f"cpg-demo/{key}", "rb") as f:
        return pq.read_table(f, **kw).to_pandas()


def test_plate_equals_direct_read(demo_s3, s3_options, anon):
    src = ProfilesSource(f"{ROOT}/{PLATE_KEY}", storage_options=s3_options)
    info = src.discover()
    assert info["npartitions"] == 1
    df = src.read()
    ref = _direct(anon, PLATE_KEY)
    assert (df["Metadata_Batch"] == "2021_04_26_Batch1").all()  # added from the path
    pd.testing.assert_frame_equal(df[list(ref.columns)], ref, check_dtype=False)
    assert df["Metadata_Plate"].dtype == STRING_DTYPE
    ddf = src.to_dask()
    assert dict(ddf.dtypes) == dict(df.dtypes)  # meta equals computed
    meta = ddf._meta  # the source's meta, copied: changing one leaves the other as it was
    assert meta is not src._meta and meta.columns.tolist() == src._meta.columns.tolist()
    meta["Metadata_Plate"] = meta["Metadata_Plate"].astype(object)
    assert src._meta["Metadata_Plate"].dtype == STRING_DTYPE
    assert (
        ddf[["Metadata_Plate"]].compute()["Metadata_Plate"].tolist()
        == df["Metadata_Plate"].tolist()
    )


def test_glob_one_partition_per_file(demo_s3, s3_options, anon):
    url = f"{ROOT}/cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/*/*.parquet"
    src = ProfilesSource(url, storage_options=s3_options)
    keys = sorted(
        k
        for k in demo_s3.keys
        if k.startswith("cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/")
    )
    ddf = src.to_dask()
    assert ddf.npartitions == len(keys) >= 2
    df = ddf.compute()
    ref = pd.concat([_direct(anon, k) for k in keys], ignore_index=True)
    pd.testing.assert_frame_equal(
        df[list(ref.columns)].reset_index(drop=True), ref, check_dtype=False
    )
    part1 = src.read_partition(1)
    assert part1["Metadata_Plate"].nunique() == 1


def test_digit_plate_stays_string_parquet_and_csv(demo_s3, s3_options, anon, make_bucket, s3_admin):
    df = ProfilesSource(f"{ROOT}/{DIGIT_KEY}", storage_options=s3_options).read()
    assert set(df["Metadata_Plate"]) == {"1053601756"}
    # the same table as a pycytominer-style csv.gz (where pandas alone would make it an int)
    bucket = make_bucket()
    key = DIGIT_KEY.replace(".parquet", "_normalized.csv.gz")
    buf = io.BytesIO()
    _direct(anon, DIGIT_KEY).to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0})
    s3_admin.pipe(f"{bucket[5:]}/{key}", buf.getvalue())
    assert (
        pd.read_csv(io.BytesIO(buf.getvalue()), compression="gzip")["Metadata_Plate"].dtype.kind
        == "i"
    )
    src = ProfilesSource(f"{bucket}/{key}", storage_options=s3_options)
    assert src.discover()["dtype"]["Metadata_Plate"] == "string"
    got = src.read()
    assert got["Metadata_Plate"].dtype == STRING_DTYPE
    assert set(got["Metadata_Plate"]) == {"1053601756"}
    assert set(got["Metadata_Batch"]) == {"20210607_Batch_2"}
    np.testing.assert_allclose(
        got["Cells_AreaShape_Zernike_5_1"].to_numpy(),
        df["Cells_AreaShape_Zernike_5_1"].to_numpy(),
        rtol=1e-6,
    )


def test_columns_and_filters_honoured(demo_s3, s3_options, anon):
    cols = ["Metadata_Well", "Cells_AreaShape_Zernike_5_1", "Metadata_Plate"]
    wells = ["A01", "B07", "P24"]
    src = ProfilesSource(
        f"{ROOT}/{PLATE_KEY}",
        columns=cols,
        filters=[("Metadata_Well", "in", wells)],
        storage_options=s3_options,
    )
    df = src.read()
    assert list(df.columns) == cols
    ref = _direct(anon, PLATE_KEY, columns=cols)
    ref = ref[ref["Metadata_Well"].isin(wells)].reset_index(drop=True)
    pd.testing.assert_frame_equal(df.reset_index(drop=True), ref, check_dtype=False)
    assert sorted(df["Metadata_Well"]) == wells
    # a filter on a path-derived column works too (applied after the column is added)
    src2 = ProfilesSource(
        f"{ROOT}/cpg0016-jump/*/workspace/profiles/*/*/*.parquet",
        columns=["Metadata_Batch", "Metadata_Plate"],
        filters=[("Metadata_Batch", "==", "2021_04_26_Batch1")],
        schema="first",
        storage_options=s3_options,
    )
    got = src2.read()
    assert set(got["Metadata_Batch"]) == {"2021_04_26_Batch1"}
    assert len(got) == 384 * got["Metadata_Plate"].nunique()


def test_unknown_column_is_a_clear_error(demo_s3, s3_options):
    src = ProfilesSource(
        f"{ROOT}/{PLATE_KEY}", columns=["Metadata_Wel"], storage_options=s3_options
    )
    with pytest.raises(ParameterError, match="did you mean 'Metadata_Well'"):
        src.discover()


@pytest.fixture
def mixed_bucket(make_bucket, s3_admin, demo_s3, anon):
    """One batch, two plates with different feature sets (as between sources)."""
    bucket = make_bucket()
    t = pq.read_table(io.BytesIO(anon.cat(f"cpg-demo/{PLATE_KEY}")))
    base = "cpg0016-jump/source_4/workspace/profiles/B1"
    t2 = t.drop_columns(["Cells_AreaShape_Zernike_5_5"]).append_column(
        "Nuclei_Extra", pa.array(np.arange(t.num_rows, dtype="float64"))
    )
    for plate, table in [("P1", t), ("P2", t2)]:
        buf = io.BytesIO()
        pq.write_table(
            table.set_column(
                table.schema.get_field_index("Metadata_Plate"),
                "Metadata_Plate",
                pa.array([plate] * table.num_rows),
            ),
            buf,
        )
        s3_admin.pipe(f"{bucket[5:]}/{base}/{plate}/{plate}.parquet", buf.getvalue())
    s3_admin.invalidate_cache()
    return f"{bucket}/{base}/*/*.parquet", t, t2


def test_mixed_schema_strict_raises_lazily(mixed_bucket, s3_options):
    url, t, _ = mixed_bucket
    src = ProfilesSource(url, storage_options=s3_options)
    ddf = src.to_dask()  # one footer: no error yet
    assert ddf.npartitions == 2
    assert "Nuclei_Extra" not in ddf.columns
    with pytest.raises(SchemaMismatchError, match="P2.parquet") as err:
        ddf.compute()
    assert "Cells_AreaShape_Zernike_5_5" in str(err.value) and "Nuclei_Extra" in str(err.value)


def test_mixed_schema_first(mixed_bucket, s3_options, caplog):
    url, t, _ = mixed_bucket
    src = ProfilesSource(url, schema="first", storage_options=s3_options)
    with caplog.at_level(logging.WARNING, logger="intake_cpg.readers"):
        df = src.read_partition(1)
    assert list(df.columns) == ["Metadata_Batch", *t.schema.names]
    assert df["Cells_AreaShape_Zernike_5_5"].isna().all()
    assert (
        df["Cells_AreaShape_Zernike_5_5"].dtype
        == t.schema.field("Cells_AreaShape_Zernike_5_5").type.to_pandas_dtype()
    )
    assert any(
        "Nuclei_Extra" in r.getMessage() and "P2.parquet" in r.getMessage() for r in caplog.records
    )
    full = src.read()
    assert full["Cells_AreaShape_Zernike_5_5"].notna().sum() == t.num_rows


def test_mixed_schema_union_and_intersection(mixed_bucket, s3_options):
    url, t, t2 = mixed_bucket
    union = ProfilesSource(url, schema="union", storage_options=s3_options)
    info = union.discover()
    assert info["shape"] == (t.num_rows * 2, len(t.schema.names) + 2)
    df = union.read()
    assert df["Nuclei_Extra"].isna().sum() == t.num_rows
    p2 = df[df["Metadata_Plate"] == "P2"]
    np.testing.assert_array_equal(
        p2["Nuclei_Extra"].to_numpy(), np.arange(t.num_rows, dtype="float64")
    )
    assert p2["Cells_AreaShape_Zernike_5_5"].isna().all()
    inter = ProfilesSource(url, schema="intersection", storage_options=s3_options).read()
    assert (
        "Nuclei_Extra" not in inter.columns and "Cells_AreaShape_Zernike_5_5" not in inter.columns
    )
    assert len(inter) == 2 * t.num_rows and inter.notna().all().all()


def test_discover_reads_one_footer_and_bad_file_named(
    make_bucket, s3_admin, s3_options, anon, demo_s3
):
    bucket = make_bucket()
    good = anon.cat(f"cpg-demo/{PLATE_KEY}")
    base = f"{bucket[5:]}/cpg0016-jump/source_4/workspace/profiles/B1"
    s3_admin.pipe(f"{base}/A/A.parquet", good)
    s3_admin.pipe(f"{base}/Z/Z.parquet", good[: len(good) // 2])  # truncated upload
    src = ProfilesSource(
        f"{bucket}/cpg0016-jump/source_4/workspace/profiles/B1/*/*.parquet",
        storage_options=s3_options,
    )
    assert src.discover()["npartitions"] == 2  # the second (broken) footer was never read
    with pytest.raises(DataReadError, match="Z.parquet"):
        src.to_dask().compute()


def test_expand_embeddings(demo_s3, s3_options, anon):
    raw = ProfilesSource(f"{ROOT}/{DL_KEY}", storage_options=s3_options).read()
    ref = _direct(anon, DL_KEY)
    assert raw["all_emb"].map(len).nunique() == 1
    k = len(ref["all_emb"].iloc[0])
    src = ProfilesSource(f"{ROOT}/{DL_KEY}", expand_embeddings=True, storage_options=s3_options)
    df = src.read()
    emb = [f"all_emb_{j}" for j in range(k)]
    assert [c for c in df.columns if c.startswith("all_emb")] == emb
    np.testing.assert_allclose(df[emb].to_numpy(), np.stack(ref["all_emb"]))
    assert df["plate"].dtype == STRING_DTYPE


def test_other_tables(demo_s3, s3_options):
    lincs = f"{ROOT}/cpg0004-lincs/broad/workspace/metadata/platemaps/2016_04_01_a549_48hr_batch1"
    pm = ProfilesSource(f"{lincs}/platemap/*.txt", storage_options=s3_options).read()
    assert {"plate_map_name", "well_position"} <= set(pm.columns)
    assert len(pm) == 384
    bp = ProfilesSource(f"{lincs}/barcode_platemap.csv", storage_options=s3_options).read()
    assert bp["Assay_Plate_Barcode"].dtype == STRING_DTYPE
    ld = ProfilesSource(
        f"{ROOT}/cpg0016-jump/source_4/workspace/load_data_csv/2021_04_26_Batch1/*/load_data_with_illum.csv*",
        storage_options=s3_options,
    ).read()
    assert ld["Metadata_Site"].dtype == STRING_DTYPE and ld["Metadata_Plate"].nunique() == 2
    backend = ProfilesSource(
        f"{ROOT}/cpg0016-jump/source_4/workspace/backend/2021_04_26_Batch1/*/*.csv",
        storage_options=s3_options,
    ).read()
    assert backend["Metadata_Well"].dtype == STRING_DTYPE
    cells = (
        f"{ROOT}/cpg0016-jump/source_4/workspace/analysis/2021_04_26_Batch1/*/analysis/*/Cells.csv"
    )
    grouped = ProfilesSource(cells, storage_options=s3_options)
    single = ProfilesSource(cells, files_per_partition=1, storage_options=s3_options)
    n_files = len(
        [
            k
            for k in demo_s3.keys
            if "/analysis/2021_04_26_Batch1/" in k and k.endswith("/Cells.csv")
        ]
    )
    plates = {k.split("/")[5] for k in demo_s3.keys if "/analysis/2021_04_26_Batch1/" in k}
    assert grouped.discover()["npartitions"] == len(plates) < n_files
    assert single.discover()["npartitions"] == n_files
    a, b = grouped.read(), single.read()
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_intake_open_and_pickle(demo_s3, s3_options):
    src = intake.open_cpg_profiles(
        f"{ROOT}/{PLATE_KEY}", columns=["Metadata_Well"], storage_options=s3_options
    )
    assert isinstance(src, ProfilesSource)
    before = src.read()
    clone = pickle.loads(pickle.dumps(src))
    pd.testing.assert_frame_equal(clone.read(), before)
    ddf = pickle.loads(pickle.dumps(src.to_dask()))
    pd.testing.assert_frame_equal(ddf.compute(), before)


def test_on_distributed_cluster(dask_client, mixed_bucket, demo_s3, s3_options):
    url, t, _ = mixed_bucket
    for mode in ("union", "first"):
        src = ProfilesSource(
            url,
            schema=mode,
            columns=["Metadata_Plate", "Cells_AreaShape_Zernike_5_5"],
            storage_options=s3_options,
        )
        ddf = src.to_dask()
        local = ddf.compute(scheduler="sync")
        remote = dask_client.compute(ddf).result()
        pd.testing.assert_frame_equal(remote, local)
        assert remote["Cells_AreaShape_Zernike_5_5"].isna().sum() == t.num_rows
    # workers read the data themselves: the graph carries URLs and a plan, not rows
    graph = pickle.dumps(dict(src.to_dask().__dask_graph__()))
    assert len(graph) < 50_000
    strict = ProfilesSource(url, storage_options=s3_options).to_dask()
    with pytest.raises(SchemaMismatchError, match="P2.parquet"):
        dask_client.compute(strict).result()
    full = ProfilesSource(
        f"{ROOT}/{PLATE_KEY}", filters=[("Metadata_Well", "==", "A01")], storage_options=s3_options
    ).to_dask()
    assert dask_client.compute(full).result()["Metadata_Well"].tolist() == ["A01"]


def test_file_references_tokenize_by_version_without_pickling(monkeypatch):
    """A 2,525-file graph tokenizes every reference: by plain values, not dask's pickling of
    the parsed path, and a new size, ETag or version is a new token."""
    import dask.tokenize
    from dask.base import tokenize

    from intake_cpg.refs import ref_from_url

    url = "s3://b/mirror/cpg0016-jump/source_4/workspace/profiles/B1/P1/P1.parquet"
    ref = ref_from_url(url)
    assert ref.path is not None and ref.path.plate == "P1" and ref.key.startswith("cpg0016-jump/")
    monkeypatch.setattr(dask.tokenize, "_normalize_pickle", lambda o: pytest.fail(f"pickled {o!r}"))
    same = ref_from_url(url)
    assert tokenize(ref) == tokenize(same)
    for changed in ({"size": 5}, {"etag": "e"}, {"version_id": "v"}, {"url": url + "x"}):
        assert tokenize(ref) != tokenize(dataclasses.replace(ref, **changed))
