"""One timed step of a benchmark workload, run in its own process by ``benchmarks/run.py``.

Usage: ``python benchmarks/workloads.py STEP '<json arguments>'``. The step prints one JSON
record on the last line of stdout: its wall time (imports excluded) and what it checked.
Every step reads the loopback S3 server anonymously (``endpoint`` in the arguments).
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

PLATE_RE = re.compile(r"/workspace/profiles/([^/]+)/([^/]+)/\2\.parquet$")


def _opts(a: dict[str, Any]) -> dict[str, Any]:
    return {"anon": True, "client_kwargs": {"endpoint_url": a["endpoint"]}}


def _fs(a: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **_opts(a))


def _checksum(df: Any, columns: list[str]) -> list[float]:
    """Rows and the sum of ``columns`` (9 significant digits: summation order differs)."""
    total = float(np.nansum(np.asarray(df[columns].to_numpy(), dtype="float64")))
    return [len(df), float(f"{total:.9g}")]


def _native_fs(a: dict[str, Any]) -> Any:
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(
        anonymous=True,
        endpoint_override=a["endpoint"].split("://", 1)[1],
        scheme="http",
        region="us-east-1",
    )


def _polars_options(a: dict[str, Any]) -> dict[str, str]:
    return {
        "aws_endpoint_url": a["endpoint"],
        "aws_skip_signature": "true",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }


# -- 2. browse ------------------------------------------------------------------------------
def browse_ours(a: dict[str, Any]) -> dict[str, Any]:
    import intake

    t0 = time.perf_counter()
    cat = intake.open_cpg(a["root"], storage_options=_opts(a), cache_dir=a.get("cache_dir"))
    project = cat["cpg0016-jump"]
    entry = project[a["source"]]["profiles"](batch=a["batch"], plate=a["plate"])
    one = entry.file_urls()
    t_entry = time.perf_counter() - t0
    plates = []
    for source in sorted(s for s in project if s.startswith("source_")):  # not its own entries
        products = project[source]
        if "profiles" in products:
            plates += products["profiles"](batch="*", plate="*").file_keys()
    t_all = time.perf_counter() - t0
    return {"entry_s": t_entry, "all_s": t_all, "n_plates": len(set(plates)), "one": one}


def browse_find(a: dict[str, Any]) -> dict[str, Any]:
    fs = _fs(a)
    t0 = time.perf_counter()
    found = fs.find(a["root"].removeprefix("s3://") + "/cpg0016-jump")
    plates = [k for k in found if PLATE_RE.search(k)]
    one = [k for k in plates if k.endswith(f"/{a['plate']}/{a['plate']}.parquet")]
    t_all = time.perf_counter() - t0
    return {
        "all_s": t_all,
        "entry_s": t_all,
        "n_plates": len(plates),
        "n_objects": len(found),
        "one": one,
    }


# -- 3. full load ---------------------------------------------------------------------------
def _import_dask() -> Any:
    """``dask.dataframe``, and ``distributed``, which dask's first ``compute`` imports (0.5 s)
    to look for a client, and ``s3fs``, which both dask's and our S3 reads import on first
    use (0.15-0.26 s): imports, kept out of every dask-based side's time alike."""
    import dask.dataframe as dd
    import distributed  # noqa: F401
    import s3fs  # noqa: F401

    return dd


def _import_ours() -> None:
    """Import what our read path imports, before the clock starts, as every other side does
    (``import polars`` / ``pyarrow.dataset`` / ``dask.dataframe`` stand before its timer)."""
    _import_dask()
    import intake  # noqa: F401

    _import_read_path()


def _import_read_path() -> None:
    """intake-cpg's read path, with the libraries it imports on first use (the engine's
    aiohttp session, polars for whole flat files: ~30 MB of RSS between them)."""
    import aiohttp  # noqa: F401
    import polars  # noqa: F401

    import intake_cpg.catalog
    import intake_cpg.parquet_engine
    import intake_cpg.project
    import intake_cpg.sources  # noqa: F401


def _wide_entry(a: dict[str, Any], **kw: Any) -> Any:
    import intake

    cat = intake.open_cpg(a["root"], storage_options=_opts(a), cache_dir=kw.pop("cache_dir", None))
    return cat["cpg0016-jump"]["source_4"]["profiles"](batch="*", plate=a["plate_glob"], **kw)


def full_ours(a: dict[str, Any]) -> dict[str, Any]:
    _import_ours()
    t0 = time.perf_counter()
    df = _wide_entry(a).to_dask().compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


def full_dask(a: dict[str, Any]) -> dict[str, Any]:
    dd = _import_dask()

    t0 = time.perf_counter()
    df = dd.read_parquet(a["urls"], storage_options=_opts(a)).compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


def full_pyarrow(a: dict[str, Any]) -> dict[str, Any]:
    return select_pyarrow({**a, "columns": None})


def full_polars(a: dict[str, Any]) -> dict[str, Any]:
    return select_polars({**a, "columns": None})


def full_pandas(a: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    opts = _opts(a)
    df = pd.concat([pd.read_parquet(u, storage_options=opts) for u in a["urls"]], ignore_index=True)
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


# -- 4. selective load ----------------------------------------------------------------------
def select_ours(a: dict[str, Any]) -> dict[str, Any]:
    from intake_cpg.parquet_engine import WarmCache

    _import_ours()
    t0 = time.perf_counter()
    cache = WarmCache(a["footer_dir"], mode=a.get("warm_mode", "ranges"))
    src = _wide_entry(a, columns=a["columns"], footer_cache=cache, cache_dir=a["listing_dir"])
    df = src.to_dask().compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["columns"]), "shape": list(df.shape)}


def select_dask(a: dict[str, Any]) -> dict[str, Any]:
    dd = _import_dask()

    t0 = time.perf_counter()
    df = dd.read_parquet(a["urls"], columns=a["columns"], storage_options=_opts(a)).compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["columns"]), "shape": list(df.shape)}


def select_pyarrow(a: dict[str, Any]) -> dict[str, Any]:
    """pyarrow.dataset on pyarrow's native (C++) S3 filesystem."""
    import pyarrow.dataset as ds

    t0 = time.perf_counter()
    paths = [u.removeprefix("s3://") for u in a["urls"]]
    cols = a.get("columns")
    table = ds.dataset(paths, filesystem=_native_fs(a), format="parquet").to_table(columns=cols)
    df = table.to_pandas()
    dt = time.perf_counter() - t0
    check = a.get("columns") or a["check_columns"]
    return {"s": dt, "check": _checksum(df, check), "shape": list(df.shape)}


def select_polars(a: dict[str, Any]) -> dict[str, Any]:
    """polars.scan_parquet with its own (Rust object-store) S3 client; no pandas frame."""
    import polars as pl

    t0 = time.perf_counter()
    lf = pl.scan_parquet(a["urls"], storage_options=_polars_options(a))
    if a.get("columns"):
        lf = lf.select(a["columns"])
    df = lf.collect()
    dt = time.perf_counter() - t0
    check = a.get("columns") or a["check_columns"]
    return {"s": dt, "check": _checksum(df, check), "shape": list(df.shape)}


def large_ours(a: dict[str, Any]) -> dict[str, Any]:
    """Sum every numeric column of one large file on 2 workers x 2 GiB."""
    import intake

    def ddf() -> Any:
        return intake.open_cpg_profiles(a["url"], storage_options=_opts(a)).to_dask()

    return _large(a, ddf)


def large_dask(a: dict[str, Any]) -> dict[str, Any]:
    import dask.dataframe as dd

    return _large(
        a, lambda: dd.read_parquet(a["url"], split_row_groups=True, storage_options=_opts(a))
    )


#: Seconds the large-file sum may take before it counts as failed (dask took 68 s at 25 ms
#: in one run; in another a worker paused at its memory limit and it never finished).
LARGE_TIMEOUT = 150


def _large(a: dict[str, Any], make: Any) -> dict[str, Any]:
    import logging
    import threading

    import psutil
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="2GiB",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = psutil.Process().children(recursive=True)
        peak = dict.fromkeys((p.pid for p in pids), 0)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for p in pids:
                    try:
                        peak[p.pid] = max(peak[p.pid], p.memory_info().rss)
                    except psutil.Error:
                        pass
                time.sleep(0.05)

        idle = {p.pid: p.memory_info().rss for p in pids}
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        t0 = time.perf_counter()
        ok, err = True, ""
        try:  # the workload: the sum of every numeric column (memory watched)
            df = make()
            # a worker paused at its memory limit makes no progress: a failure, not a hang.
            # ``optimize()`` first, as docs/howto/cluster.md advises, for both sides: dask's
            # compute path does not fuse the read with the sum's first step, so a worker may
            # run the next read while holding the last partition
            total = df.select_dtypes("number").sum().optimize()
            sums = client.compute(total).result(timeout=LARGE_TIMEOUT)
            check = float(f"{float(np.nansum(sums.to_numpy(dtype='float64'))):.9g}")
        except Exception as exc:
            ok, err, check = False, f"{type(exc).__name__}: {exc}"[:300], 0
        dt = time.perf_counter() - t0
        stop.set()
        th.join()
        nparts = largest = 0
        if ok:  # the yardstick, after the watch: computed with it, it would read every
            # partition a second time (a numeric-only read for the sum, a full one for this)
            sizes = df.map_partitions(lambda d: int(d.memory_usage(deep=True).sum())).compute()
            nparts, largest = df.npartitions, int(max(sizes))
    worker_peak = max(peak.values()) if peak else 0
    return {
        "s": dt,
        "ok": ok,
        "error": err,
        "check": [check],
        "npartitions": nparts,
        "largest_partition": largest,
        "worker_peak_rss": worker_peak,
        "worker_idle_rss": max(idle.values()) if idle else 0,
    }


# -- 5. graph construction ------------------------------------------------------------------
def graph(a: dict[str, Any]) -> dict[str, Any]:
    from intake_cpg.sources import ProfilesSource

    out = {}
    for n in a["sizes"]:
        times = []
        for _ in range(a["runs"]):
            t0 = time.perf_counter()
            src = ProfilesSource(a["urls"][:n], storage_options=_opts(a))
            ddf = src.to_dask()
            times.append(time.perf_counter() - t0)
            # small files are batched into partitions: every file is in exactly one of them
            assert sum(len(part) for part in src._parts) == n and ddf.npartitions <= n
        out[str(n)] = times
    return {"times": out}


# -- 6. distributed -------------------------------------------------------------------------
def distributed(a: dict[str, Any]) -> dict[str, Any]:
    import logging

    from distributed import Client, LocalCluster, get_task_stream

    import intake_cpg.readers as readers

    local = _wide_entry(a).to_dask().compute(scheduler="threads")
    calls = {"client": 0}
    original = readers.read_partition

    def spy(*args: Any, **kw: Any) -> Any:  # would count reads made in this (client) process
        calls["client"] += 1
        return original(*args, **kw)

    readers.read_partition = spy
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        with get_task_stream(client) as ts:
            remote = _wide_entry(a).to_dask().compute()
        dt = time.perf_counter() - t0
        workers = sorted({t["worker"] for t in ts.data if "cpg-profiles" in str(t["key"])})
        n_tasks = sum(1 for t in ts.data if "cpg-profiles" in str(t["key"]))
    readers.read_partition = original
    pd.testing.assert_frame_equal(
        remote.reset_index(drop=True), local.reset_index(drop=True), check_exact=True
    )
    return {
        "s": dt,
        "identical": True,
        "workers": workers,
        "read_tasks_on_workers": n_tasks,
        "reads_in_client": calls["client"],
        "shape": list(remote.shape),
    }


# -- 7. memory ------------------------------------------------------------------------------
def export(a: dict[str, Any]) -> dict[str, Any]:
    """Export the partitions of ``to_dask()`` with ``intake_cpg.export.export_parquet``
    (what ``intake-cpg export`` runs): one partition at a time, ~64 MB row groups."""
    from intake_cpg.export import export_parquet, streaming_partitions
    from intake_cpg.sources import ProfilesSource

    t0 = time.perf_counter()
    with streaming_partitions():  # the partitions intake-cpg export loads with
        ddf = ProfilesSource(a["urls"], storage_options=_opts(a)).to_dask()
    result = export_parquet(ddf, a["out"])
    return {"s": time.perf_counter() - t0, "npartitions": ddf.npartitions, "rows": result.rows}


def idle(a: dict[str, Any]) -> dict[str, Any]:
    """Imports what ``export`` imports and does nothing: the RSS floor of such a process."""
    import intake_cpg.export  # noqa: F401

    _import_read_path()

    time.sleep(0.5)
    return {"s": 0.0}


STEPS = {
    f.__name__: f
    for f in (
        browse_ours,
        browse_find,
        full_ours,
        full_dask,
        full_pandas,
        full_pyarrow,
        full_polars,
        select_ours,
        select_dask,
        select_pyarrow,
        select_polars,
        large_ours,
        large_dask,
        graph,
        distributed,
        export,
        idle,
    )
}


def _preload() -> None:
    """Import what any side uses before the clock starts, the same for every side."""
    import dask.dataframe  # noqa: F401
    import distributed  # noqa: F401
    import intake  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.dataset
    import pyarrow.fs  # noqa: F401
    import s3fs  # noqa: F401

    import intake_cpg.catalog
    import intake_cpg.gallery_source
    import intake_cpg.parquet_engine
    import intake_cpg.sources  # noqa: F401


if __name__ == "__main__":
    step, raw = sys.argv[1], sys.argv[2]
    if raw.startswith("@"):
        with open(raw[1:]) as f:
            raw = f.read()
    args = json.loads(raw)
    _preload()
    print(json.dumps(STEPS[step](args)))
