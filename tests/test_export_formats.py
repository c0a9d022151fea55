"""``intake-cpg export`` in every format: CSV, gzip CSV, Arrow/Feather beside Parquet."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import intake
import pandas as pd
import polars as pl
import pyarrow.feather as feather
import pytest

from intake_cpg.readers import STRING_DTYPE

ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PROFILES = "cpg0016-jump/source_4/profiles"
DL = "cpg0016-jump/source_4/dl_profiles"


def _export(server: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INTAKE_CPG_"))}
    cmd = [sys.executable, "-m", "intake_cpg", "--root", ROOT, "--endpoint-url", server]
    return subprocess.run(
        [*cmd, "export", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def want(demo_s3, s3_options):
    src = intake.open_cpg(ROOT, storage_options=s3_options)["cpg0016-jump"]["source_4"]
    return src["profiles"](batch=BATCH).to_dask().compute().reset_index(drop=True)


def _read_back(path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as f:
            head = f.readline()
        strings = {c.strip('"\n'): str for c in head.split(",") if c.startswith('"Metadata_')}
        df = pd.read_csv(path, dtype=strings)
        return df.astype(dict.fromkeys(strings, STRING_DTYPE))
    return feather.read_table(path).to_pandas()


@pytest.mark.parametrize(
    ("name", "extra", "fmt"),
    [("b.csv", (), "csv"), ("b.csv.gz", (), "csv"), ("b.feather", (), "arrow"),
     ("b.arrow", (), "arrow"), ("b.out", ("--format", "csv"), "csv"),
     ("b.dat", ("--format", "feather"), "arrow")],
)  # fmt: skip
def test_export_writes_each_format(moto_server, demo_s3, want, tmp_path, name, extra, fmt):
    out = tmp_path / name
    proc = _export(moto_server, f"{PROFILES}/{BATCH}", "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: {len(want):,} rows" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left
    got = _read_back(out, fmt)
    assert list(got.columns) == list(want.columns)
    assert got["Metadata_Plate"].tolist() == want["Metadata_Plate"].tolist()
    pd.testing.assert_frame_equal(got, want, check_dtype=fmt == "arrow", check_exact=False)
    if name.endswith(".gz"):
        with open(out, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"


def test_feather_keeps_list_embeddings_and_csv_refuses_them(moto_server, demo_s3, tmp_path):
    out = tmp_path / "dl.feather"
    proc = _export(moto_server, f"{DL}", "-p", f"batch={BATCH}", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    emb = pl.read_ipc(out).schema["all_emb"]
    assert isinstance(emb, pl.List)
    bad = _export(moto_server, f"{DL}", "-p", f"batch={BATCH}", "-o", str(tmp_path / "dl.csv"))
    assert bad.returncode == 2, bad.stderr
    assert "expand_embeddings=True" in bad.stderr and "Traceback" not in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl.feather"]


def test_unknown_extension_says_which_formats_exist(moto_server, demo_s3, tmp_path):
    proc = _export(moto_server, f"{PROFILES}/{BATCH}", "-o", str(tmp_path / "b.xlsx"))
    assert proc.returncode == 2
    assert "pass format=" in proc.stderr or "--format" in proc.stderr
    assert list(tmp_path.iterdir()) == []
