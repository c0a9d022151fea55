"""Reliability round two (issue 17): the command line and the files it writes.

``head`` reads only the rows it prints; JSON output is strict; an output path that is a
folder is refused before any work; ``freeze`` and ``cat.save()`` replace the old file whole
or not at all; a dask worker that dies during ``export --scheduler`` is reported as such.
Everything runs against a small gallery on the loopback S3 server behind the counting proxy,
or in a local folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
from typing import Any

import dask
import intake
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faultproxy import FaultProxy

from intake_cpg import cli, storage
from intake_cpg.errors import StorageError

PROJECT, SOURCE, BATCH, PLATE = "cpg0099-rel", "source_1", "B1", "P1"
KEY = f"{PROJECT}/{SOURCE}/workspace/profiles/{BATCH}/{PLATE}/{PLATE}.parquet"
ENTRY = f"{PROJECT}/{SOURCE}/profiles/{BATCH}/{PLATE}"
ROWS, ROW_GROUP = 20_000, 1_000


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    cols = {f"Cells_f{i:02d}": rng.normal(size=ROWS) for i in range(20)}
    return pd.DataFrame({"Metadata_Well": [f"A{i % 24 + 1:02d}" for i in range(ROWS)], **cols})


@pytest.fixture
def gallery(make_bucket, s3_admin) -> dict[str, Any]:
    """One plate of 20,000 rows in 20 row groups, in a fresh public bucket."""
    bucket = make_bucket()
    frame = _frame()
    with s3_admin.open(f"{bucket.removeprefix('s3://')}/{KEY}", "wb") as f:
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), f, row_group_size=ROW_GROUP
        )
    s3_admin.invalidate_cache()
    size = s3_admin.info(f"{bucket.removeprefix('s3://')}/{KEY}")["size"]
    return {"root": bucket, "frame": frame, "size": size}


@pytest.fixture
def proxy(moto_server) -> Any:
    storage._SHARED.clear()
    with FaultProxy(moto_server) as p:
        yield p
    storage._SHARED.clear()


def _cli(proxy: FaultProxy, root: str, *args: str) -> int:
    storage._SHARED.clear()
    return cli.main(["--root", root, "--endpoint-url", proxy.url, *args])


def _bytes_requested(proxy: FaultProxy, pattern: str) -> int:
    """Bytes asked for by ranged GETs of objects matching ``pattern``."""
    total = 0
    for rec in proxy.log:
        if rec.method != "GET" or not re.search(pattern, rec.path):
            continue
        rng = {k.lower(): v for k, v in rec.headers.items()}.get("range")
        assert rng, f"an unranged GET of {rec.path}"
        start, end = rng.removeprefix("bytes=").split("-")
        total += int(end) if not start else int(end) - int(start) + 1  # bytes=-N: the last N
    return total


# -- head -----------------------------------------------------------------------------------------
def test_head_reads_only_the_rows_it_prints(proxy, gallery, capsys):
    code = _cli(proxy, gallery["root"], "head", ENTRY, "-n", "3", "--format", "csv")
    out = capsys.readouterr().out
    assert code == 0
    got = pd.read_csv(pd.io.common.StringIO(out), dtype={"Metadata_Well": str})
    want = gallery["frame"].head(3)
    assert got["Metadata_Well"].tolist() == want["Metadata_Well"].tolist()
    np.testing.assert_allclose(got["Cells_f00"], want["Cells_f00"], rtol=1e-12)
    asked = _bytes_requested(proxy, re.escape(f"{PLATE}.parquet"))
    assert 0 < asked < gallery["size"] // 4, (asked, gallery["size"])


def test_head_json_is_strict_json(tmp_path, capsys):
    folder = tmp_path / "g" / KEY.rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "Metadata_Well": ["A01", "A02", "A03"],
                "Cells_a": pa.array([np.inf, -np.inf, 1.0], pa.float64()),
                "Cells_b": pa.array([np.nan, 2.0, np.inf], pa.float32()),
            }
        ),
        folder / f"{PLATE}.parquet",
    )
    storage._SHARED.clear()
    code = cli.main(["--root", str(tmp_path / "g"), "head", ENTRY, "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0

    def refuse(name: str) -> Any:
        raise AssertionError(f"not JSON: {name}")

    rows = json.loads(out, parse_constant=refuse)
    assert [r["Metadata_Well"] for r in rows] == ["A01", "A02", "A03"]
    assert rows[2]["Cells_a"] == 1.0 and rows[1]["Cells_b"] == 2.0
    assert rows[0]["Cells_a"] is None and rows[0]["Cells_b"] is None


# -- outputs checked before work ------------------------------------------------------------------------
def test_export_to_a_folder_is_refused_before_any_read(proxy, gallery, tmp_path, capsys):
    code = _cli(proxy, gallery["root"], "export", ENTRY, "-o", str(tmp_path))
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert str(tmp_path) in err and "folder" in err
    assert [r.path for r in proxy.log if r.method in ("GET", "HEAD")] == []


def test_freeze_to_a_folder_is_refused_before_any_listing(proxy, gallery, tmp_path, capsys):
    code = _cli(proxy, gallery["root"], "freeze", PROJECT, "-o", str(tmp_path))
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert str(tmp_path) in err and "folder" in err
    assert proxy.log == []


# -- freeze / save are atomic ---------------------------------------------------------------------------
FEW_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}, "anon": True}
#: The listing of the batches of ``profiles``: made while the entry's parameters are resolved.
BATCH_LISTING = "prefix=" + f"{PROJECT}/{SOURCE}/workspace/profiles/".replace("/", "(/|%2F)")


def test_save_keeps_the_old_catalog_when_serialising_fails(proxy, gallery, tmp_path):
    opts = {**FEW_RETRIES, "client_kwargs": {"endpoint_url": proxy.url}}
    out = tmp_path / "frozen.yaml"
    storage._SHARED.clear()
    intake.open_cpg(gallery["root"], storage_options=opts)[PROJECT][SOURCE].save(str(out))
    before = out.read_bytes()
    assert b"profiles" in before
    storage._SHARED.clear()
    cat = intake.open_cpg(gallery["root"], storage_options=opts)[PROJECT][SOURCE]
    proxy.add("500", method="GET", path=BATCH_LISTING)  # fails while serialising
    with pytest.raises(StorageError):
        cat.save(str(out))
    assert proxy.faults() > 0
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["frozen.yaml"]  # no temporary file left
    assert list(intake.open_catalog(str(out))) == ["profiles"]


def test_cli_freeze_keeps_the_old_file_when_listing_fails(proxy, gallery, tmp_path, capsys):
    out = tmp_path / "frozen.yaml"
    assert _cli(proxy, gallery["root"], "freeze", f"{PROJECT}/{SOURCE}", "-o", str(out)) == 0
    before = out.read_bytes()
    proxy.add("500", method="GET", path=BATCH_LISTING)
    code = _cli(
        proxy, gallery["root"], "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}',
        "freeze", f"{PROJECT}/{SOURCE}", "-o", str(out),
    )  # fmt: skip
    capsys.readouterr()
    assert code == cli.EXIT_ERROR and proxy.faults() > 0
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["frozen.yaml"]


# -- a worker that dies during export --scheduler -------------------------------------------------------
@pytest.fixture
def fragile_cluster() -> Any:
    """A one-worker cluster whose scheduler gives up on a task at the first worker death."""
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=50, memory_limit="1GiB",
        )  # fmt: skip
        client = Client(cluster)
        try:
            yield cluster, client
        finally:
            client.close()
            cluster.close()


def test_export_reports_a_killed_worker_as_out_of_memory(
    proxy, gallery, tmp_path, fragile_cluster, capsys
):
    cluster, client = fragile_cluster
    pids = list(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_worker(record: Any) -> None:  # what the nanny does to a worker over its limit
        if not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    proxy.add("hook", method="GET", path=re.escape(f"{PLATE}.parquet"), skip=1, hook=kill_worker)
    out = tmp_path / "x.parquet"
    code = _cli(
        proxy,
        gallery["root"],
        "export",
        ENTRY,
        "-o",
        str(out),
        "--scheduler",
        cluster.scheduler_address,
    )
    err = capsys.readouterr().err
    assert killed, "the worker was never killed"
    assert code == cli.EXIT_ERROR, err
    assert "unexpected" not in err
    assert "memory" in err and "columns" in err
    assert f"{PLATE}.parquet" in err
    assert not out.exists()
