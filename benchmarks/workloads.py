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


def _checksum(df: pd.DataFrame, columns: list[str]) -> list[float]:
    return [len(df), float(np.nansum(df[columns].to_numpy(dtype="float64")))]


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
    for source in sorted(project):
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
def _wide_entry(a: dict[str, Any], **kw: Any) -> Any:
    import intake

    cat = intake.open_cpg(a["root"], storage_options=_opts(a), cache_dir=kw.pop("cache_dir", None))
    return cat["cpg0016-jump"]["source_4"]["profiles"](batch="*", plate=a["plate_glob"], **kw)


def full_ours(a: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    df = _wide_entry(a).to_dask().compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


def full_dask(a: dict[str, Any]) -> dict[str, Any]:
    import dask.dataframe as dd

    t0 = time.perf_counter()
    df = dd.read_parquet(a["urls"], storage_options=_opts(a)).compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


def full_pandas(a: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    opts = _opts(a)
    df = pd.concat([pd.read_parquet(u, storage_options=opts) for u in a["urls"]], ignore_index=True)
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["check_columns"]), "shape": list(df.shape)}


# -- 4. selective load ----------------------------------------------------------------------
def select_ours(a: dict[str, Any]) -> dict[str, Any]:

    t0 = time.perf_counter()
    src = _wide_entry(
        a, columns=a["columns"], footer_cache=a["footer_dir"], cache_dir=a["listing_dir"]
    )
    df = src.to_dask().compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["columns"]), "shape": list(df.shape)}


def select_dask(a: dict[str, Any]) -> dict[str, Any]:
    import dask.dataframe as dd

    t0 = time.perf_counter()
    df = dd.read_parquet(a["urls"], columns=a["columns"], storage_options=_opts(a)).compute()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["columns"]), "shape": list(df.shape)}


def select_pyarrow(a: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.dataset as ds

    fs = _fs(a)
    t0 = time.perf_counter()
    paths = [u.removeprefix("s3://") for u in a["urls"]]
    df = ds.dataset(paths, filesystem=fs, format="parquet").to_table(columns=a["columns"])
    df = df.to_pandas()
    dt = time.perf_counter() - t0
    return {"s": dt, "check": _checksum(df, a["columns"]), "shape": list(df.shape)}


# -- 5. graph construction ------------------------------------------------------------------
def graph(a: dict[str, Any]) -> dict[str, Any]:
    from intake_cpg.sources import ProfilesSource

    out = {}
    for n in a["sizes"]:
        times = []
        for _ in range(a["runs"]):
            t0 = time.perf_counter()
            ddf = ProfilesSource(a["urls"][:n], storage_options=_opts(a)).to_dask()
            times.append(time.perf_counter() - t0)
            assert ddf.npartitions == n
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
    from intake_cpg.export import export_parquet
    from intake_cpg.sources import ProfilesSource

    t0 = time.perf_counter()
    ddf = ProfilesSource(a["urls"], storage_options=_opts(a)).to_dask()
    result = export_parquet(ddf, a["out"])
    return {"s": time.perf_counter() - t0, "npartitions": ddf.npartitions, "rows": result.rows}


def idle(a: dict[str, Any]) -> dict[str, Any]:
    """Imports what ``export`` imports and does nothing: the RSS floor of such a process."""
    import intake_cpg.export
    import intake_cpg.sources  # noqa: F401

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
        select_ours,
        select_dask,
        select_pyarrow,
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
    import pyarrow.dataset  # noqa: F401
    import s3fs  # noqa: F401

    import intake_cpg.catalog
    import intake_cpg.gallery_source
    import intake_cpg.sources  # noqa: F401


if __name__ == "__main__":
    step, raw = sys.argv[1], sys.argv[2]
    if raw.startswith("@"):
        with open(raw[1:]) as f:
            raw = f.read()
    args = json.loads(raw)
    _preload()
    print(json.dumps(STEPS[step](args)))
