"""The read engine (intake_cpg.fetch, thrift, parquet_engine) on the real loopback S3 server.

Values and dtypes are compared with pyarrow's own reader of the same bytes; request counts
and headers are read from the fault proxy's log (every request passes through it).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from faultproxy import FaultProxy

from intake_cpg import fetch, parquet_engine, readers, thrift
from intake_cpg.errors import DataReadError, ParameterError, StorageError
from intake_cpg.refs import FileRef


def _table(n_features: int = 300, rows: int = 384, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {
        "Metadata_Source": ["source_4"] * rows,
        "Metadata_Plate": ["1053601756"] * rows,
        "Metadata_Well": [f"W{i:03d}" for i in range(rows)],
    }
    for j in range(n_features):
        cols[f"Cells_F{j:04d}"] = rng.standard_normal(rows).astype("float32")
    cols["Count"] = np.arange(rows, dtype="int64")
    return pa.table(cols)


def _bytes(table: pa.Table, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def _footer(data: bytes) -> bytes:
    n = int.from_bytes(data[-8:-4], "little")
    return data[-8 - n : -8]


COLS = ["Metadata_Plate", "Cells_F0000", "Cells_F0150", "Cells_F0299", "Count"]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"row_group_size": 100},
        {"use_dictionary": False, "compression": "zstd"},
        {"write_statistics": False, "compression": "none"},
        {"data_page_size": 256},
    ],
)
def test_scan_and_slim_footer_decode_like_pyarrow(kw):
    data = _bytes(_table(), **kw)
    found = thrift.find_columns(_footer(data), COLS)
    assert found is not None and [c.name for c in found.columns] == COLS
    schema, rest = thrift.slim_footer(found)
    got = {r: data[r[0] : r[1]] for r in found.ranges}
    compact = parquet_engine._compact(found.ranges, got, schema + rest)
    table = pq.ParquetFile(pa.BufferReader(compact)).read()
    expected = pq.read_table(pa.BufferReader(data), columns=COLS)
    assert table.equals(expected) and table.schema.types == expected.schema.types


def test_scan_of_a_polars_written_file():
    pl = pytest.importorskip("polars")
    buf = io.BytesIO()
    pl.from_arrow(_table(50)).write_parquet(buf, row_group_size=128)
    data = buf.getvalue()
    cols = ["Metadata_Well", "Cells_F0001", "Count"]
    found = thrift.find_columns(_footer(data), cols)
    expected = pq.read_table(pa.BufferReader(data), columns=cols)
    if found is None:  # the scan may decline; it must never misread
        return
    schema, rest = thrift.slim_footer(found)
    got = {r: data[r[0] : r[1]] for r in found.ranges}
    table = pq.ParquetFile(
        pa.BufferReader(parquet_engine._compact(found.ranges, got, schema + rest))
    ).read()
    assert table.cast(expected.schema).equals(expected)


def test_scan_declines_nested_and_reports_absent():
    t = pa.table({"a": [[1.0, 2.0], [3.0]], "b": [1, 2]})
    footer = _footer(_bytes(t))
    found = thrift.find_columns(footer, ["a", "b", "zz"])
    assert found is not None and [c.name for c in found.columns] == ["b"]


@pytest.fixture
def bucket(make_bucket, s3_admin):
    b = make_bucket()
    data = {f"p{i}.parquet": _bytes(_table(seed=i)) for i in range(6)}
    for k, v in data.items():
        s3_admin.pipe(f"{b}/{k}", v)
    s3_admin.invalidate_cache()
    return b, data


def _fs(url: str) -> Any:
    return s3fs.S3FileSystem(
        anon=True, skip_instance_cache=True, client_kwargs={"endpoint_url": url}
    )


def _few_retries(url: str) -> Any:
    """An anonymous fs whose retry budget is 3 attempts (the default's 25, with backoff,
    take ~90 s to spend)."""
    return s3fs.S3FileSystem(anon=True, skip_instance_cache=True, retries=3,
                             client_kwargs={"endpoint_url": url},
                             config_kwargs={"retries": {"max_attempts": 1}})  # fmt: skip


@contextlib.contextmanager
def _served(moto_server: str, bucket: str, seed: int = 0) -> Iterator[tuple[Any, Any, list]]:
    """The fault proxy in front of the server, an anonymous fs through it, the bucket's refs."""
    with FaultProxy(moto_server, seed=seed) as proxy:
        fs = _fs(proxy.url)
        yield proxy, fs, _refs(fs, bucket)


def _refs(fs: Any, bucket: str) -> list[FileRef]:
    out = []
    for info in sorted(fs.ls(bucket, detail=True), key=lambda i: i["name"]):
        out.append(
            FileRef(
                key=info["name"].split("/", 1)[1],
                url="s3://" + info["name"],
                size=info["size"],
                etag=info["ETag"].strip('"'),
            )
        )
    return out


def test_cold_select_values_requests_and_pinning(bucket, moto_server, tmp_path):
    b, data = bucket
    with _served(moto_server, b) as (proxy, fs, refs):
        proxy.log.clear()
        cache = parquet_engine.WarmCache(tmp_path / "warm")
        out = parquet_engine.read_parquet(fs, refs, COLS, cache=cache)
        for ref, r in zip(refs, out, strict=True):
            expected = pq.read_table(pa.BufferReader(data[ref.key]), columns=COLS)
            assert r.table.equals(expected)
        methods = [r.method for r in proxy.log]
        assert "HEAD" not in methods
        gets = [r for r in proxy.log if r.method == "GET"]
        assert all(r.headers.get("If-Match") for r in gets)
        tails = [r for r in gets if r.headers.get("Range", "").startswith("bytes=-")]
        assert len(tails) == len(refs)  # one suffix read per file: footer in one round trip
        proxy.log.clear()
        warm = parquet_engine.read_parquet(fs, refs, COLS, cache=cache)
        assert all(w.table.equals(c.table) for w, c in zip(warm, out, strict=True))
        warm_gets = [r for r in proxy.log if r.method == "GET"]
        assert not any(r.headers.get("Range", "").startswith("bytes=-") for r in warm_gets)
        assert "HEAD" not in [r.method for r in proxy.log]


def test_warm_chunks_mode_makes_no_request(bucket, moto_server, tmp_path):
    b, data = bucket
    with _served(moto_server, b) as (proxy, fs, refs):
        cache = parquet_engine.WarmCache(tmp_path / "warm", mode="chunks")
        cold = parquet_engine.read_parquet(fs, refs, COLS, cache=cache)
        proxy.log.clear()
        again = parquet_engine.WarmCache(tmp_path / "warm", mode="chunks")  # a new process
        warm = parquet_engine.read_parquet(fs, refs, COLS, cache=again)
        assert not proxy.log
        assert all(w.table.equals(c.table) for w, c in zip(warm, cold, strict=True))


def test_full_read_is_one_get_per_file(bucket, moto_server):
    b, data = bucket
    with _served(moto_server, b) as (proxy, fs, refs):
        proxy.log.clear()
        out = parquet_engine.read_parquet(fs, refs, None)
        assert len(proxy.log) == len(refs)
        for ref, r in zip(refs, out, strict=True):
            want = readers._parquet_frame(pq.read_table(pa.BufferReader(data[ref.key])), None, None)
            got, names = readers.read_file(ref.url, None, prefetched=r)
            pd.testing.assert_frame_equal(got, want)  # values and dtypes: polars decodes
            assert r.all_names and list(names) == list(want.columns)


def test_urls_without_etag_and_row_groups(make_bucket, s3_admin, moto_server):
    b = make_bucket()
    t = _table(40, rows=1000)
    data = _bytes(t, row_group_size=250)
    s3_admin.pipe(f"{b}/big.parquet", data)
    with FaultProxy(moto_server) as proxy:
        fs = _fs(proxy.url)
        out = parquet_engine.read_parquet(
            fs, [f"{b}/big.parquet"], ["Cells_F0003", "Metadata_Well"], row_groups=[[1, 3]]
        )
        pf = pq.ParquetFile(pa.BufferReader(data))
        assert out[0].table.equals(pf.read_row_groups([1, 3], ["Cells_F0003", "Metadata_Well"]))
        assert "HEAD" not in [r.method for r in proxy.log]


def test_object_replaced_between_planning_and_reading_raises(bucket, moto_server, s3_admin):
    b, data = bucket
    with _served(moto_server, b) as (proxy, fs, refs):
        s3_admin.pipe(f"{b}/{refs[2].key}", _bytes(_table(seed=99)))
        with pytest.raises(StorageError, match="changed while it was being read") as exc:
            parquet_engine.read_parquet(fs, refs, COLS)
        assert refs[2].key in str(exc.value)


def test_object_replaced_between_footer_and_chunks_raises(bucket, moto_server, s3_admin):
    b, data = bucket
    fs0 = _fs(moto_server)
    ref = _refs(fs0, b)[0]

    def replace(record: Any) -> None:
        s3_admin.pipe(f"{b}/{ref.key}", _bytes(_table(seed=42)))

    with FaultProxy(moto_server) as proxy:
        proxy.add("hook", method="GET", path=r"p0\.parquet", skip=1, count=1, hook=replace)
        fs = _fs(proxy.url)
        with pytest.raises(StorageError, match="changed while it was being read"):
            parquet_engine.read_parquet(fs, [FileRef(ref.key, ref.url, None, None)], COLS)


def test_short_bodies_are_retried_then_raise(bucket, moto_server):
    b, data = bucket
    with _served(moto_server, b) as (proxy, fs, refs):
        refs = refs[:2]
        proxy.add("truncate", method="GET", count=2)
        out = parquet_engine.read_parquet(fs, refs, COLS)  # a burst of two: retried
        assert out[0].table.equals(pq.read_table(pa.BufferReader(data[refs[0].key]), columns=COLS))
        proxy.clear()
        proxy.add("truncate", method="GET")  # every time: an error naming the object
        with pytest.raises(StorageError) as exc:
            parquet_engine.read_parquet(_few_retries(proxy.url), refs[:1], COLS)
        assert refs[0].key in str(exc.value)


def test_large_bodies_are_read_whole_and_short_ones_retried(make_bucket, s3_admin, moto_server,
                                                            monkeypatch):  # fmt: skip
    """Bodies over ``fetch.SIZED_BODY`` are copied into one buffer as they arrive: the bytes
    are the object's, and a body cut short (``truncate``: the connection closes early;
    ``short``: a Content-Length that agrees with half a body) is retried, then an error."""
    b = make_bucket()
    blob = np.random.default_rng(7).bytes(3 * fetch.SIZED_BODY + 12345)
    s3_admin.pipe(f"{b}/big.bin", blob)
    sized = []
    real = fetch._sized_body

    async def spy(content: Any, size: int) -> bytes:
        sized.append(size)
        return await real(content, size)

    monkeypatch.setattr(fetch, "_sized_body", spy)
    with FaultProxy(moto_server) as proxy:
        fs = _fs(proxy.url)
        url = f"{b}/big.bin"

        def whole() -> bytes:
            body, obj = fetch.run(fs, fetch.read_tail(fs, url, len(blob), size=len(blob)))
            assert obj.size == len(blob)
            return body

        assert whole() == blob and sized == [len(blob)]
        for action in ("truncate", "short"):
            proxy.add(action, method="GET", count=2)
            assert whole() == blob, action  # a burst of two: retried
            proxy.clear()
        proxy.add("short", method="GET")  # every time: an error naming the object
        fs = _few_retries(proxy.url)
        with pytest.raises(StorageError, match="big.bin"):
            whole()
    assert len(sized) >= 4


@pytest.mark.parametrize("action", ["500", "503", "reset"])
def test_transient_faults_give_the_clean_result(bucket, moto_server, action):
    b, data = bucket
    with _served(moto_server, b, seed=3) as (proxy, fs, refs):
        proxy.add(action, method="GET", probability=0.3, count=6)
        out = parquet_engine.read_parquet(fs, refs, COLS)
        for ref, r in zip(refs, out, strict=True):
            assert r.table.equals(pq.read_table(pa.BufferReader(data[ref.key]), columns=COLS))
        assert proxy.faults() > 0


def test_not_parquet_is_a_data_error(make_bucket, s3_admin, moto_server):
    b = make_bucket()
    s3_admin.pipe(f"{b}/x.parquet", b"not a parquet file at all" * 100)
    fs = _fs(moto_server)
    with pytest.raises(DataReadError, match="PAR1"):
        parquet_engine.read_parquet(fs, [f"{b}/x.parquet"], ["a"])


def test_corrupt_cache_entries_are_ignored(bucket, moto_server, tmp_path):
    b, data = bucket
    fs = _fs(moto_server)
    refs = _refs(fs, b)[:2]
    cache = parquet_engine.WarmCache(tmp_path / "w")
    cold = parquet_engine.read_parquet(fs, refs, COLS, cache=cache)
    for p in (tmp_path / "w").rglob("*.cpgw"):
        p.write_bytes(p.read_bytes()[:-3] + b"xyz")
    again = parquet_engine.read_parquet(
        fs, refs, COLS, cache=parquet_engine.WarmCache(tmp_path / "w")
    )
    assert all(a.table.equals(c.table) for a, c in zip(again, cold, strict=True))


def test_coalesce():
    assert fetch.coalesce([(10, 20), (0, 5), (21, 30)], gap=1) == [(0, 5), (10, 30)]


def test_large_file_is_split_by_row_groups_and_small_files_batched(
    make_bucket, s3_admin, s3_options, monkeypatch
):
    from intake_cpg.sources import ProfilesSource

    b = make_bucket()
    big = _table(20, rows=800)
    s3_admin.pipe(f"{b}/big.parquet", _bytes(big, row_group_size=100))
    for i in range(20):
        s3_admin.pipe(f"{b}/small/p{i:02d}.parquet", _bytes(_table(20, rows=10, seed=i)))
    s3_admin.invalidate_cache()
    monkeypatch.setattr(parquet_engine, "PARTITION_BYTES", 20_000)
    src = ProfilesSource(f"{b}/big.parquet", storage_options=s3_options)
    ddf = src.to_dask()
    assert ddf.npartitions == 8  # 8 row groups of ~10 KB each, target 20 KB: one per piece
    got = ddf.compute().reset_index(drop=True)
    want = readers._parquet_frame(big, None, None)
    pd.testing.assert_frame_equal(got, want[list(got.columns)], check_dtype=False)
    assert list(got.dtypes) == list(ddf._meta.dtypes)
    small = ProfilesSource(f"s3://{b}/small/*.parquet", storage_options=s3_options)
    sddf = small.to_dask()
    assert 1 < sddf.npartitions < 20  # batched, at least MIN_PARTITIONS-ish
    assert len(sddf.compute()) == 200


def test_partition_size_comes_from_the_dask_config_and_export_streams_smaller(
    make_bucket, s3_admin, s3_options, monkeypatch
):
    import dask

    from intake_cpg import export
    from intake_cpg.sources import ProfilesSource

    b = make_bucket()
    for i in range(16):
        s3_admin.pipe(f"{b}/p{i:02d}.parquet", _bytes(_table(20, rows=10, seed=i)))
    s3_admin.invalidate_cache()
    key = parquet_engine.PARTITION_SIZE_KEY

    def partitions() -> int:
        src = ProfilesSource(f"s3://{b}/*.parquet", storage_options=s3_options)
        return src.to_dask().npartitions

    assert partitions() == 8  # tiny files: MIN_PARTITIONS of two files each
    with dask.config.set({key: 1}):
        assert partitions() == 16  # smaller than a file: one file each
    monkeypatch.setattr(export, "EXPORT_PARTITION_BYTES", 1)
    with export.streaming_partitions():
        assert partitions() == 16
    with dask.config.set({key: "1GiB"}), export.streaming_partitions():
        assert partitions() == 8  # a size the user set is kept
    for bad in (-5, "lots", True):
        with dask.config.set({key: bad}), pytest.raises(ParameterError, match=key):
            partitions()


def test_bare_urls_warm_cache_checks_the_version_first(bucket, moto_server, s3_admin, tmp_path):
    b, data = bucket
    urls = [f"{b}/p0.parquet", f"{b}/p1.parquet"]
    with FaultProxy(moto_server) as proxy:
        fs = _fs(proxy.url)
        cache = parquet_engine.WarmCache(tmp_path / "w", mode="chunks")
        cold = parquet_engine.read_parquet(fs, urls, COLS, cache=cache)
        assert sum(r.headers.get("Range", "").startswith("bytes=-") for r in proxy.log) == 2
        assert "HEAD" not in [r.method for r in proxy.log]
        proxy.log.clear()
        warm = parquet_engine.read_parquet(fs, urls, COLS, cache=cache)
        assert all(w.table.equals(c.table) for w, c in zip(warm, cold, strict=True))
        assert [r.headers.get("Range") for r in proxy.log] == ["bytes=0-0"] * 2  # one probe each
        assert all(r.headers.get("If-Match") for r in proxy.log)
        new = _table(seed=77)
        s3_admin.pipe(f"{b}/p1.parquet", _bytes(new))
        again = parquet_engine.read_parquet(fs, urls, COLS, cache=cache)
        assert again[1].table.equals(new.select(COLS))  # replaced: read cold, never the old one


@pytest.mark.parametrize("stored_index", [False, True], ids=["block", "arrow"])
def test_large_row_groups_decode_a_few_columns_at_a_time_like_pyarrow(
    make_bucket, s3_admin, moto_server, monkeypatch, stored_index
):
    """Features go into one 2-D block (a pandas frame); a file whose pandas metadata stores
    an index keeps pyarrow's own conversion (an Arrow table). Both equal pyarrow's decode."""
    b = make_bucket()
    t = _table(40, rows=1000)
    if stored_index:
        df = t.to_pandas()
        df.index = pd.Index(np.arange(1000) * 3, name="row")
        t = pa.Table.from_pandas(df)
    else:  # nulls in a feature: NaN in the block, as pandas' conversion makes them
        mask = np.zeros(1000, dtype=bool)
        mask[::9] = True
        t = t.set_column(5, t.field(5), pa.array(t.column(5).to_numpy(), mask=mask))
    data = _bytes(t, row_group_size=250)
    s3_admin.pipe(f"{b}/big.parquet", data)
    batches: list[int] = []
    fetched_before: list[int] = []  # requests made before each batch decodes
    real = pq.ParquetFile.read_row_groups

    def counting(self, row_groups, columns=None, **kw):
        batches.append(len(columns))
        fetched_before.append(len(proxy.log))
        return real(self, row_groups, columns=columns, **kw)

    monkeypatch.setattr(parquet_engine, "BATCHED_DECODE_BYTES", 1)
    monkeypatch.setattr(parquet_engine, "DECODE_BATCH_COLUMNS", 7)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counting)
    # small requests and windows: each window's bytes come in as the decode reaches it and
    # go when it leaves it (one dropped too early, or never fetched: an error)
    monkeypatch.setattr(parquet_engine, "PIECE_REQUEST_BYTES", 4096)
    monkeypatch.setattr(parquet_engine, "FETCH_WINDOW_BYTES", 8192)
    with FaultProxy(moto_server) as proxy:
        out = parquet_engine.read_parquet(_fs(proxy.url), [f"{b}/big.parquet"], row_groups=[[0, 2]])
        assert len(proxy.log) > 10  # the footer, then chunk-aligned ranges of at most 4 KiB
        assert all(r.headers.get("If-Match") for r in proxy.log[1:])  # pinned, every window
        assert out[0].requests == len(proxy.log)
    # fetched while decoding, a window ahead: not all before the first batch
    assert fetched_before[0] < len(proxy.log) and len(set(fetched_before)) > 2
    want = real(pq.ParquetFile(pa.BufferReader(data)), [0, 2])
    n = len(want.column_names)
    assert batches == [7] * (n // 7) + [n % 7]  # 7 columns at a time
    if stored_index:
        assert out[0].table.equals(want) and out[0].table.schema.metadata == want.schema.metadata
    else:
        assert isinstance(out[0].table, pd.DataFrame)
        floats = [blk for blk in out[0].table._mgr.blocks if blk.dtype == np.float32]
        assert len(floats) == 1 and floats[0].shape == (40, 500)
    got, _ = readers.read_file(f"s3://{b}/big.parquet", None, prefetched=out[0])
    pd.testing.assert_frame_equal(got, readers._parquet_frame(want, None, None))


def test_reorder_columns_moves_runs_without_copying():
    df = pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=["a", "b", "c", "d"])
    df["Metadata_Source"] = pd.array(["s"] * 3, dtype=readers.STRING_DTYPE)
    order = ["Metadata_Source", "a", "b", "c", "d"]
    out = readers.reorder_columns(df, order)
    assert out.columns.tolist() == order
    pd.testing.assert_frame_equal(out, df[order])
    assert np.shares_memory(out["c"].to_numpy(), df["c"].to_numpy())
    scattered = ["d", "b", "Metadata_Source", "a", "c"]
    pd.testing.assert_frame_equal(readers.reorder_columns(df, scattered), df[scattered])


def test_fetch_windows_cover_each_chunk_once_in_batch_order():
    md = pq.ParquetFile(pa.BufferReader(_bytes(_table(40, rows=1000), row_group_size=250))).metadata
    names = md.schema.to_arrow_schema().names
    batches = [names[i : i + 7] for i in range(0, len(names), 7)]
    rgs = [1, 3]
    for window in (1, 20_000, 10**9):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(parquet_engine, "FETCH_WINDOW_BYTES", window)
            windows = parquet_engine._fetch_windows(md, rgs, batches)
        assert sum(n for n, _ in windows) == len(batches)
        want = {1: len(batches), 10**9: 1}.get(window)
        assert want is None and 1 < len(windows) < len(batches) or len(windows) == want
        first = 0
        for n, ranges in windows:  # each window's requests hold exactly its batches' chunks
            spans = parquet_engine.chunk_spans(
                md, [c for b in batches[first : first + n] for c in b], rgs
            )
            assert all(any(s <= cs and ce <= e for s, e in ranges) for cs, ce in spans)
            if len(windows) > 1:  # no bytes of another window
                assert sum(e - s for s, e in ranges) == sum(e - s for s, e in spans)
            first += n


def test_a_piece_replaced_between_its_windows_is_an_error_not_a_mix(
    make_bucket, s3_admin, moto_server, monkeypatch
):
    b = make_bucket()
    data = _bytes(_table(40, rows=1000), row_group_size=250)
    s3_admin.pipe(f"{b}/big.parquet", data)
    monkeypatch.setattr(parquet_engine, "BATCHED_DECODE_BYTES", 1)
    monkeypatch.setattr(parquet_engine, "DECODE_BATCH_COLUMNS", 7)
    monkeypatch.setattr(parquet_engine, "PIECE_REQUEST_BYTES", 4096)
    monkeypatch.setattr(parquet_engine, "FETCH_WINDOW_BYTES", 8192)
    with FaultProxy(moto_server) as proxy:
        fs = _fs(proxy.url)
        replaced = _bytes(_table(40, rows=1000, seed=5), row_group_size=250)
        proxy.add(
            "hook", skip=6, count=1, hook=lambda r: s3_admin.pipe(f"{b}/big.parquet", replaced)
        )
        with pytest.raises(StorageError, match="changed|replaced|refresh"):
            parquet_engine.read_parquet(fs, [f"{b}/big.parquet"], row_groups=[[0, 2]])
