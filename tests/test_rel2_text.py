"""Reliability round two (issue 17): what text and parquet tables still got wrong.

Every test loads through the public readers (``ProfilesSource``, ``read_schema``/``read_file``)
from local files or from the loopback S3 server behind :class:`faultproxy.FaultProxy`, and
checks values: a short body is an error, never fewer rows; numbers stay numbers; a missing
metadata value is missing, not the text ``"nan"``; duplicated column names and exhausted
memory are errors that name the file.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faultproxy import FaultProxy

from intake_cpg import readers
from intake_cpg.errors import CPGError, DataReadError, StorageError
from intake_cpg.sources import ProfilesSource

REPO = Path(__file__).resolve().parents[1]


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Metadata_Plate": ["1053601756"] * n,
            "Metadata_Well": [f"{'ABCDEFGH'[i % 8]}{i % 12 + 1:02d}" for i in range(n)],
            "Cells_AreaShape_Area": rng.normal(size=n),
            "Nuclei_Intensity_MeanIntensity_DNA": rng.normal(size=n),
        }
    )


@pytest.fixture
def proxy(moto_server) -> Any:
    with FaultProxy(moto_server, seed=3) as p:
        yield p


def _opts(proxy: FaultProxy) -> dict[str, Any]:
    return {"anon": True, "client_kwargs": {"endpoint_url": proxy.url}}


# -- short bodies ---------------------------------------------------------------------------------
@pytest.fixture
def text_objects(make_bucket, s3_admin) -> dict[str, Any]:
    """A plain CSV and a csv.gz of 2,000 rows in a fresh public bucket."""
    bucket = make_bucket()
    frame = _table(2000)
    body = frame.to_csv(index=False).encode()
    base = bucket.removeprefix("s3://")
    s3_admin.pipe(f"{base}/t/plate.csv", body)
    s3_admin.pipe(f"{base}/t/plate.csv.gz", gzip.compress(body))
    s3_admin.invalidate_cache()
    return {"bucket": bucket, "frame": frame}


@pytest.mark.parametrize("name", ["plate.csv", "plate.csv.gz"])
def test_short_text_body_once_is_retried_to_the_whole_table(proxy, text_objects, name):
    url = f"{text_objects['bucket']}/t/{name}"
    clean = ProfilesSource(url, storage_options=_opts(proxy)).read()
    assert len(clean) == 2000
    src = ProfilesSource(url, storage_options=_opts(proxy))
    src.discover()  # the header sample is read whole; the fault hits the read of the body
    proxy.add("short", method="GET", path=name.replace(".", r"\.") + "$", count=1)
    again = src.read()
    assert proxy.faults() == 1  # the body really was cut
    pd.testing.assert_frame_equal(again, clean, check_exact=True)


@pytest.mark.parametrize("name", ["plate.csv", "plate.csv.gz"])
def test_short_text_body_every_time_is_a_storage_error(proxy, text_objects, name):
    url = f"{text_objects['bucket']}/t/{name}"
    src = ProfilesSource(url, storage_options=_opts(proxy))
    src.discover()
    proxy.add("short", method="GET", path=name.replace(".", r"\.") + "$")
    with pytest.raises(StorageError) as err:
        src.read()
    assert proxy.faults() >= 2  # retried before giving up
    msg = str(err.value)
    assert name in msg and "bytes" in msg


# -- dtypes ---------------------------------------------------------------------------------------
def test_header_only_first_csv_keeps_feature_columns_numeric(tmp_path):
    frame = _table(5)
    (tmp_path / "a.csv").write_text(",".join(frame.columns) + "\n")
    frame.to_csv(tmp_path / "b.csv", index=False)
    src = ProfilesSource([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    out = src.read()
    assert len(out) == 5
    assert out["Cells_AreaShape_Area"].dtype == np.dtype("float64")
    assert out["Cells_AreaShape_Area"].sum() == pytest.approx(frame["Cells_AreaShape_Area"].sum())
    assert str(out["Metadata_Plate"].dtype) == "string"


def test_csv_header_longer_than_the_sample_gives_every_column(tmp_path):
    names = ["Metadata_Plate"] + [
        f"Cells_Feature_{i:06d}_of_a_rather_long_name" for i in range(9000)
    ]
    header = ",".join(names)
    assert len(header) > readers.TEXT_SAMPLE_BYTES
    row = ",".join(["P1"] + ["1.5"] * (len(names) - 1))
    fn = tmp_path / "wide.csv"
    fn.write_text(header + "\n" + row + "\n" + row + "\n")
    schema = readers.read_schema(str(fn))
    assert list(schema.columns) == names
    out = ProfilesSource(str(fn)).read()
    assert list(out.columns) == names and out.shape == (2, len(names))
    assert out[names[-1]].tolist() == [1.5, 1.5]


def test_metadata_float_nan_is_a_missing_value_not_the_text_nan(tmp_path):
    fn = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "Metadata_Well": ["A01", "A02", "A03"],
                "Metadata_Concentration": [1.5, float("nan"), None],
                "Cells_x": [1.0, 2.0, 3.0],
            }
        ),
        fn,
    )
    out = ProfilesSource(str(fn)).read()
    conc = out["Metadata_Concentration"]
    assert str(conc.dtype) == "string"
    assert conc.iloc[0] == "1.5"
    assert conc.isna().tolist() == [False, True, True]
    assert "nan" not in conc.dropna().tolist()


# -- duplicate column names -------------------------------------------------------------------------
def test_duplicate_parquet_columns_are_a_data_read_error_naming_file_and_names(tmp_path):
    fn = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["P"]), pa.array([1.0]), pa.array([2.0])],
        names=["Metadata_Plate", "Cells_x", "Cells_x"],
    )
    pq.write_table(table, fn)
    with pytest.raises(DataReadError) as err:
        ProfilesSource(str(fn)).read()
    assert "dup.parquet" in str(err.value) and "Cells_x" in str(err.value)


def test_duplicate_csv_columns_are_a_data_read_error_not_renamed(tmp_path):
    fn = tmp_path / "dup.csv"
    fn.write_text("Metadata_Plate,Cells_x,Cells_y,Cells_x\nP,1,2,3\n")
    with pytest.raises(DataReadError) as err:
        ProfilesSource(str(fn)).read()
    msg = str(err.value)
    assert "dup.csv" in msg and "Cells_x" in msg and "Cells_x.1" not in msg


# -- out of memory ----------------------------------------------------------------------------------
_OOM = """
import resource, sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from intake_cpg import readers
from intake_cpg.errors import CPGError
big, small = sys.argv[1], sys.argv[2]
readers.read_file(small, None)  # everything imported and warmed up before the limit
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 20 * 2**20, resource.RLIM_INFINITY))
try:
    readers.read_file(big, None)
except CPGError as exc:
    print(type(exc).__name__, "|", " ".join(str(exc).split()))
else:
    print("no error")
"""


def test_out_of_memory_is_named_with_file_size_and_advice(tmp_path):
    n = 2_000_000
    big, small = tmp_path / "big.parquet", tmp_path / "small.parquet"
    cols = {f"Cells_x{i}": np.zeros(n) for i in range(8)}
    pq.write_table(pa.table({"Metadata_Plate": ["P"] * n, **cols}), big)
    pq.write_table(pa.table({"Metadata_Plate": ["P"], "Cells_x0": [0.0]}), small)
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}  # malloc sees the limit
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_OOM), str(big), str(small)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    kind, _, msg = proc.stdout.strip().partition(" | ")
    assert kind == "OutOfMemoryError", proc.stdout
    assert "big.parquet" in msg and f"{big.stat().st_size:,}" in msg
    assert "memory" in msg and "columns=" in msg
    assert "truncated" not in msg


# -- bare exceptions ---------------------------------------------------------------------------------
def test_missing_bucket_is_a_cpg_error(s3_options):
    with pytest.raises(CPGError) as err:
        ProfilesSource("s3://no-such-bucket-i17/x/plate.parquet", storage_options=s3_options).read()
    assert "no-such-bucket-i17" in str(err.value)


# -- short bodies of parquet range reads -------------------------------------------------------------
@pytest.fixture
def parquet_object(make_bucket, s3_admin) -> dict[str, Any]:
    bucket = make_bucket()
    frame = _table(5000)
    path = f"{bucket.removeprefix('s3://')}/t/plate.parquet"
    with s3_admin.open(path, "wb") as f:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f, row_group_size=1000)
    s3_admin.invalidate_cache()
    return {"url": f"{bucket}/t/plate.parquet", "frame": frame}


@pytest.mark.parametrize("count", [1, 2, None])
@pytest.mark.parametrize("footer_cache", [False, True])
def test_short_parquet_range_reads_never_give_other_rows(
    proxy, parquet_object, count, footer_cache
):
    url = parquet_object["url"]
    src = ProfilesSource(url, storage_options=_opts(proxy), footer_cache=footer_cache or None)
    clean = src.read()
    assert len(clean) == 5000
    src = ProfilesSource(url, storage_options=_opts(proxy), footer_cache=footer_cache or None)
    src.discover()
    proxy.add("short", method="GET", path=r"plate\.parquet$", count=count)
    try:
        again = src.read()
    except StorageError as exc:  # refused, naming the object: never fewer or other rows
        assert count is None and "plate.parquet" in str(exc)
    else:
        pd.testing.assert_frame_equal(again, clean, check_exact=True)
    assert proxy.faults() >= 1
