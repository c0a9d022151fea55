"""Whole flat files decoded by polars (intake_cpg.polars_frames) and a partition of them
decoded together and converted once (readers._read_stacked): the same values and dtypes as
pyarrow's decode and the per-file path, on the real loopback S3 server."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from intake_cpg import polars_frames, readers
from intake_cpg.layout import format_key


def _bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _mixed(rows: int = 50, seed: int = 0, plate: Any = "BR00117035") -> pa.Table:
    """Strings at both ends and in the middle, numeric runs of three dtypes, nulls, booleans."""
    rng = np.random.default_rng(seed)
    floats = rng.standard_normal(rows)
    floats[::7] = np.nan
    return pa.table(
        {
            "Metadata_Source": ["source_4"] * rows,
            "Metadata_Plate": [plate] * rows,
            "a": rng.standard_normal(rows).astype("float32"),
            "b": rng.standard_normal(rows).astype("float32"),
            "Metadata_Well": [None if i % 5 == 0 else f"W{i:02d}" for i in range(rows)],
            "c": pa.array(floats),
            "n": np.arange(rows, dtype="int64"),
            "d": rng.standard_normal(rows).astype("float32"),
            "ok": [i % 2 == 0 for i in range(rows)],
            "Metadata_Site": [str(i % 9) for i in range(rows)],
        }
    )


def _one_dtype(rows: int = 40, seed: int = 0, width: int = 30) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {"Metadata_Source": ["source_4"] * rows, "Metadata_Well": ["A01"] * rows}
    for j in range(width):
        cols[f"Cells_F{j:03d}"] = rng.standard_normal(rows).astype("float32")
    cols["Metadata_Site"] = ["1"] * rows
    return pa.table(cols)


@pytest.mark.parametrize("table", [_mixed(), _one_dtype()], ids=["mixed", "one-dtype"])
def test_to_pandas_matches_pyarrow(table):
    got = polars_frames.to_pandas(polars_frames.decode(_bytes(table)), readers.STRING_DTYPE)
    want = readers._parquet_frame(table, None, None)
    pd.testing.assert_frame_equal(got, want)


def test_one_dtype_block_is_one_array_and_views():
    got = polars_frames.to_pandas(polars_frames.decode(_bytes(_one_dtype())), readers.STRING_DTYPE)
    floats = [b for b in got._mgr.blocks if b.dtype == np.float32]
    assert len(floats) == 1 and floats[0].shape == (30, 40)  # 30 features: one 2-D block


def test_not_flat_is_left_to_pyarrow():
    assert polars_frames.decode(_bytes(pa.table({"e": [[1.0, 2.0]], "x": [1]}))) is None
    assert polars_frames.decode(_bytes(pa.table({"t": pa.array([1], pa.timestamp("s"))}))) is None


def test_decode_stacked_refuses_other_columns_or_dtypes():
    a = _bytes(_mixed(seed=1))
    other_dtype = _bytes(_mixed(seed=2, plate=7))  # the plate stored as a number
    renamed = _bytes(_mixed(seed=3).rename_columns([*"ABCDEFGHIJ"]))
    fewer = _bytes(_mixed(seed=4).drop_columns(["d"]))
    more = _bytes(_mixed(seed=5).append_column("e", pa.array(np.ones(50))))
    for other in (other_dtype, renamed, fewer, more):
        assert polars_frames.decode_stacked([a, other]) is None
    listy = _bytes(pa.table({"e": [[1.0, 2.0]], "x": [1]}))
    assert polars_frames.decode_stacked([listy, listy]) is None  # not flat: left to pyarrow


def test_decode_stacked_is_the_files_in_order_matched_by_name():
    tables = [_mixed(seed=1), _mixed(seed=2, rows=7), _mixed(seed=3).slice(0, 0)]  # one empty
    shuffled = tables[1].select(list(reversed(tables[1].column_names)))  # the same, reordered
    got = polars_frames.decode_stacked([_bytes(tables[0]), _bytes(shuffled), _bytes(tables[2])])
    assert got is not None and got.names == tuple(tables[0].column_names)
    want = pa.concat_tables(tables)
    out = polars_frames.to_pandas(got, readers.STRING_DTYPE)
    pd.testing.assert_frame_equal(out, readers._parquet_frame(want, None, None))
    part = polars_frames.sliced(polars_frames.decode_stacked([_bytes(t) for t in tables]), 50, 7)
    pd.testing.assert_frame_equal(
        polars_frames.to_pandas(part, readers.STRING_DTYPE),
        readers._parquet_frame(tables[1], None, None),
    )


def _gallery(make_bucket, s3_admin, tables: list[pa.Table], batches: int = 2) -> str:
    b = make_bucket()
    for i, t in enumerate(tables):
        key = format_key(
            "profiles",
            project="cpg0016-jump",
            source="source_4",
            batch=f"2021_0{i % batches + 1}_batch",
            plate=f"BR{i:08d}",
            extension="parquet",
        )
        s3_admin.pipe(f"{b}/{key}", _bytes(t))
    s3_admin.invalidate_cache()
    return f"{b}/cpg0016-jump/source_4/workspace/profiles/*/*/*.parquet"


@pytest.fixture(autouse=True)
def _few_partitions(monkeypatch):
    from intake_cpg import parquet_engine

    monkeypatch.setattr(parquet_engine, "MIN_PARTITIONS", 2)  # several files per partition


def _load(url: str, s3_options: dict[str, Any], **kw: Any) -> tuple[pd.DataFrame, int]:
    from intake_cpg.sources import ProfilesSource

    ddf = ProfilesSource(url, storage_options=s3_options, **kw).to_dask()
    return ddf.compute(scheduler="sync").reset_index(drop=True), ddf.npartitions


def test_stacked_partition_equals_the_per_file_path(make_bucket, s3_admin, s3_options, monkeypatch):
    url = _gallery(make_bucket, s3_admin, [_one_dtype(seed=i) for i in range(6)])
    calls: list[int] = []
    real = readers._read_stacked

    def counting(items, reads, plan):
        out = real(items, reads, plan)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(readers, "_read_stacked", counting)
    got, nparts = _load(url, s3_options)
    assert nparts == 2 and calls == [True, True]  # 3 files per partition, read stacked
    monkeypatch.setattr(readers, "_read_stacked", lambda *a: None)
    want, _ = _load(url, s3_options)
    pd.testing.assert_frame_equal(got, want)
    # the batch comes from the path, per file; the plate from the file
    assert set(got["Metadata_Batch"]) == {"2021_01_batch", "2021_02_batch"}
    assert got.columns[0] == "Metadata_Batch" and len(got) == 240


def test_partition_of_different_dtypes_reads_file_by_file(
    make_bucket, s3_admin, s3_options, monkeypatch
):
    tables = [_mixed(seed=0), _mixed(seed=1, plate=1053601756), _mixed(seed=2), _mixed(seed=3)]
    url = _gallery(make_bucket, s3_admin, tables, batches=1)
    calls: list[bool] = []
    real = readers._read_stacked
    monkeypatch.setattr(readers, "_read_stacked", lambda *a: calls.append(real(*a)) or calls[-1])
    got, nparts = _load(url, s3_options)
    # a plate stored as a number: its partition is read file by file, the other one stacked
    assert nparts == 2 and [c is not None for c in calls] == [True]
    assert got["Metadata_Plate"].dtype == readers.STRING_DTYPE
    assert got["Metadata_Plate"].tolist().count("1053601756") == 50
    monkeypatch.setattr(readers, "_read_stacked", lambda *a: None)
    want, _ = _load(url, s3_options)
    pd.testing.assert_frame_equal(got, want)


def test_a_null_typed_column_is_not_stacked_under_another_files_dtype(
    make_bucket, s3_admin, s3_options, monkeypatch
):
    """polars would stack an all-null column (Arrow's null type) under the other file's int64
    (the ints then turn into floats, silently); file by file, it is a clear error instead."""
    from intake_cpg.errors import DataReadError

    ints = _mixed(seed=0).set_column(6, "n", pa.array([2**53 + i for i in range(50)]))
    nulls = _mixed(seed=1).set_column(6, "n", pa.nulls(50))  # as pyarrow writes all-None
    url = _gallery(make_bucket, s3_admin, [ints, nulls, ints, nulls], batches=1)  # 2 + 2
    monkeypatch.setattr(readers, "_read_stacked", lambda *a: pytest.fail("stacked"))
    with pytest.raises(DataReadError, match=r"BR0000000[13].*column 'n'"):
        _load(url, s3_options)


def test_an_undecodable_file_in_a_partition_is_named(make_bucket, s3_admin, s3_options):
    from intake_cpg.errors import DataReadError

    b = make_bucket()
    for i, data in enumerate(
        [_bytes(_one_dtype(seed=0)), b"garbage" * 100 + b"\x10\x00\x00\x00PAR1"]
    ):
        key = format_key(
            "profiles", project="cpg0016-jump", source="source_4", batch="2021_01_batch",
            plate=f"BR{i:08d}", extension="parquet",
        )  # fmt: skip
        s3_admin.pipe(f"{b}/{key}", data)
    s3_admin.invalidate_cache()
    url = f"{b}/cpg0016-jump/source_4/workspace/profiles/*/*/*.parquet"
    with pytest.raises(DataReadError, match="BR00000001"):
        _load(url, s3_options)


@pytest.mark.parametrize("was_on", [True, False])
def test_a_wide_frame_is_read_without_a_collection_and_the_collector_restored(was_on):
    """Reading 5,000 columns' dtypes makes 5,000 tracked objects; with the collector paused
    they set off no collection while they live (with a threshold of 50, one would run every
    50; at most one runs once it is back on, when they are gone). The collector is left as
    it was found, on or off."""
    import gc
    import threading

    wide = _bytes(pa.table({f"f{i}": [float(i)] for i in range(5000)}))
    runs: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and threading.current_thread() is threading.main_thread():
            runs.append(info["generation"])

    frame = polars_frames._pl().read_parquet(io.BytesIO(wide))
    before = gc.get_threshold()
    (gc.enable if was_on else gc.disable)()
    gc.callbacks.append(seen)
    gc.set_threshold(50)
    try:
        decoded = polars_frames._flat(frame)
        after = gc.isenabled()
    finally:
        gc.set_threshold(*before)
        gc.callbacks.remove(seen)
        gc.enable()
    assert decoded is not None and len(decoded.classes) == 5000
    assert len(runs) <= 1 and after is was_on
