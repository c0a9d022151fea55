"""Run every benchmark workload beside its baselines, in one run, and publish the results.

``make bench`` runs this. It starts SeaweedFS (a real S3 server) on loopback, writes a
synthetic gallery into it with the demo's public helpers (real cpg0016 plate names), runs the
workloads of issue 8 (each timed step in a fresh process, methods interleaved, medians over
``--runs`` runs), and writes ``benchmarks/results.json`` and ``docs/performance.md`` (with
``docs/performance-chart.svg``). Requests are counted by the server.

Options: ``--runs N`` (default 3), ``--quick`` (smaller trees, for trying the runner),
``--keep DIR`` (keep the server's data in DIR).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3server import SeaweedS3  # noqa: E402
from shaper import Shaper  # noqa: E402

PY = sys.executable
BUCKET = "cpg-bench"
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {msg}", flush=True)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# --------------------------------------------------------------------------------------------
# the synthetic gallery
# --------------------------------------------------------------------------------------------
def _plate_bytes(source: str, plate: str, width: int) -> bytes:
    from intake_cpg.demo import plate_profile

    return _parquet(plate_profile(source, plate, width))


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


#: The trees each workload reads (``--only`` builds just those).
NEEDS = {
    "browse": {"gallery", "wide"},
    "full": {"wide"},
    "select": {"wide"},
    "large_file": {"large"},
    "graph": {"gallery"},
    "distributed": {"wide"},
    "memory": {"medium"},
}


def build_trees(
    srv: SeaweedS3, cfg: dict[str, Any], parts: set[str] | None = None
) -> dict[str, Any]:
    from intake_cpg.demo import build_demo
    from intake_cpg.layout import format_key

    parts = {"gallery", "wide", "medium"} if parts is None else parts
    plates = pd.read_csv(ROOT / "intake_cpg" / "data" / "cpg0016_plate.csv.gz").astype(str)
    plates = plates.sort_values(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
    n_filler = 0
    demo = None
    if "gallery" in parts:
        say("building the narrow gallery: every one of the 2,525 cpg0016 plates (build_demo)")
        demo = build_demo(
            f"s3://{BUCKET}/gallery", srv.admin_options, all_plates=True, max_workers=8
        )
    written = set(demo.keys) if demo is not None else set()

    n_wells, comps = cfg["filler_wells"], ("Cells", "Cytoplasm", "Nuclei", "Image", "Experiment")
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)][:n_wells]

    def filler():
        for row in plates.itertuples(index=False):
            s, b, p = row.Metadata_Source, row.Metadata_Batch, row.Metadata_Plate
            for w in wells:
                for c in comps:
                    key = f"cpg0016-jump/{s}/workspace/analysis/{b}/{p}/analysis/{p}-{w}-1/{c}.csv"
                    if key not in written:
                        yield f"gallery/{key}", b""

    if "gallery" in parts:
        say(f"adding per-site analysis files ({n_wells} wells x 5 tables for each plate)")
        n_filler = srv.put_many(filler(), threads=32)
        say(f"  {n_filler:,} analysis objects")

    def profiles(root: str, rows: pd.DataFrame, width: int):
        for row in rows.itertuples(index=False):
            s, b, p = row.Metadata_Source, row.Metadata_Batch, row.Metadata_Plate
            key = format_key(
                "profiles", project="cpg0016-jump", source=s, batch=b, plate=p, extension="parquet"
            )
            yield f"{root}/{key}", functools.partial(_plate_bytes, s, p, width)

    wide = plates[plates.Metadata_Source == "source_4"].head(cfg["n_wide"])
    if "wide" in parts:
        say(f"writing {len(wide)} full-width plates (4,765 columns) of source_4")
        srv.put_many(profiles("wide", wide, 4762), threads=4)
    medium = pd.concat(
        [plates[plates.Metadata_Source == "source_3"], plates[plates.Metadata_Source == "source_5"]]
    ).head(cfg["n_export"])
    if "medium" in parts:
        say(f"writing {len(medium)} plates of {cfg['export_width']} features (export workload)")
        srv.put_many(profiles("medium", medium, cfg["export_width"]), threads=4)

    def urls(root: str, rows: pd.DataFrame) -> list[str]:
        return [
            f"s3://{BUCKET}/{root}/"
            + format_key(
                "profiles",
                project="cpg0016-jump",
                source=r.Metadata_Source,
                batch=r.Metadata_Batch,
                plate=r.Metadata_Plate,
                extension="parquet",
            )
            for r in rows.itertuples(index=False)
        ]

    narrow = (
        demo.plates[demo.plates.project == "cpg0016-jump"].sort_values("key")
        if demo is not None
        else pd.DataFrame({"key": []})
    )
    return {
        "narrow_urls": [f"s3://{BUCKET}/gallery/{k}" for k in narrow.key],
        "n_narrow_objects": (len(demo.keys) if demo is not None else 0) + n_filler,
        "wide": wide,
        "wide_urls": urls("wide", wide),
        "export_urls": urls("medium", medium),
    }


def plate_glob(names: list[str], target: int) -> tuple[str, list[str]]:
    """A ``prefix*`` glob over ``names`` matching about ``target`` of them."""
    best: tuple[int, str] | None = None
    for n in range(1, max(map(len, names)) + 1):
        for prefix in sorted({x[:n] for x in names}):
            hit = sum(x.startswith(prefix) for x in names)
            score = abs(hit - target)
            if best is None or score < best[0]:
                best = (score, prefix)
    assert best is not None
    return best[1] + "*", [x for x in names if x.startswith(best[1])]


# --------------------------------------------------------------------------------------------
# running steps
# --------------------------------------------------------------------------------------------
SHAPER: Shaper | None = None
#: Latencies (ms added before each response by the shaping proxy) every read workload runs at.
LATENCIES = (0, 25)
#: Sides no bar compares with, run at one latency only, so ``make bench`` fits its 20 minutes:
#: pandas in ``full`` (the bars name polars, pyarrow and dask) and dask in ``large_file``
#: (its bar is our partitions and memory; dask's run there takes about 1 minute per latency).
ONE_LATENCY = {("full", "pandas"): 0, ("large_file", "dask"): 25}


#: Set for every step, on every side alike. This VM's kernel has transparent huge pages on
#: ``madvise`` (``defrag=madvise``), and NumPy advises huge pages for every array >= 4 MiB.
#: Here a process's first 314 MB array then took 1.0-1.4 s to fill, against 0.15 s without
#: the advice (no compaction stalls were counted, so most likely the host backing fresh huge
#: pages; NumPy issue 31590 reports compaction stalls from the same advice elsewhere). It hit
#: whichever side allocated first (dask's final concat, pandas' conversions), never polars
#: (its own allocator). ``make bench`` measures the readers, not this VM's page faults.
STEP_ENV = {"NUMPY_MADVISE_HUGEPAGE": "0"}


#: Memory touched once, by a throwaway process, before any step (see :func:`prefault`).
PREFAULT_BYTES = 6 * 2**30


def prefault(nbytes: int = PREFAULT_BYTES) -> float:
    """Touch ``nbytes`` of fresh memory once in a throwaway process; return the seconds taken.

    On this VM (Firecracker), touching 12 GiB for the first time after boot took 54 s
    (~220 MB/s), and 1 GiB touched again later took 0.6 s: the host backs a guest page when
    it is first touched. Done once, so that no step is the first to touch memory after boot.
    Whether it moves any figure was not shown: the slow first runs it was meant for turned
    out to be the server's cache (see ``SeaweedS3.warm``).
    """
    code = (
        "import sys; n = int(sys.argv[1]); step = 2**28; keep = []\n"
        "for _ in range(0, n, step):\n"
        "    b = bytearray(step); b[::4096] = bytes([1]) * (step // 4096); keep.append(b)\n"
    )
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", code, str(nbytes)], check=True)
    return time.perf_counter() - t0


#: Interleaved runs of ours and polars in ``full`` (their median is the figure): its bar
#: is a close ratio (1.25x) of two 2-3 s reads, and one run of each on this shared 2-core
#: machine moved it by +-0.3. The other sides (bars of 0.5x, 8-12 s a run) run ``--runs``.
CLOSE_RUNS = 3


def runs_at(workload: str, side: str, lat: int) -> bool:
    """Whether ``side`` of ``workload`` runs at latency ``lat`` (see :data:`ONE_LATENCY`)."""
    return ONE_LATENCY.get((workload, side), lat) == lat


def step(srv: SeaweedS3, name: str, args: dict[str, Any], *, peak: bool = False) -> dict[str, Any]:
    """Run one step in a new process; add the request counts (and peak RSS).

    Requests and body bytes per kind come from the shaping proxy every read goes through;
    the server's own counter is kept beside them (``server_requests``).
    """
    before = srv.requests()
    shaped = SHAPER.counts() if SHAPER is not None else None
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(args, fh)  # a file: 2,525 URLs do not fit on a command line
    cmd = [PY, str(ROOT / "benchmarks" / "workloads.py"), name, "@" + fh.name]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **STEP_ENV},
    )  # fmt: skip
    peak_rss = 0
    if peak:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(
                    c.memory_info().rss for c in ps.children(recursive=True)
                )
                peak_rss = max(peak_rss, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)
    out, err = proc.communicate()
    os.unlink(fh.name)
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{err[-4000:]}")
    rec = json.loads(out.strip().splitlines()[-1])
    after = srv.requests()
    rec["server_requests"] = {k: after[k] - before[k] for k in after if after[k] - before[k]}
    rec["requests"] = rec["server_requests"]
    if SHAPER is not None and shaped is not None:
        now = SHAPER.counts()
        for what in ("requests", "bytes"):
            a, b = now[what], shaped[what]
            rec[what] = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0)}
        rec["bytes_total"] = sum(rec["bytes"].values())
    rec["requests_total"] = sum(rec["requests"].values())
    if peak:
        rec["peak_rss"] = peak_rss
    return rec


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------
def w_parse(runs: int, limit: int | None) -> dict[str, Any]:
    say("1. parse: benchmarks/bench_parse.py")
    cmd = [PY, str(ROOT / "benchmarks" / "bench_parse.py"), "--runs", str(runs)]
    if limit:
        cmd += ["--limit", str(limit)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    ours, theirs = r["intake_cpg"], r.get("cpgparser") or {}
    met = ours["right_fields_share"] == 1.0 and ours["keys_per_s"] >= theirs.get("keys_per_s", 0)
    return {
        "workload": "parse",
        "title": "Parse ~1M real-shaped keys: parse_key vs cpgparser",
        "bar": "every key right, and at least cpgparser's speed",
        "figures": {
            "keys": r["keys"],
            "intake_cpg_keys_per_s": ours["keys_per_s"],
            "intake_cpg_right_share": ours["right_fields_share"],
            "cpgparser_keys_per_s": theirs.get("keys_per_s"),
            "cpgparser_right_share_on_its_fields": theirs.get("right_on_its_fields_share"),
            "speed_ratio": r.get("speedup_vs_cpgparser"),
        },
        "ratio": r.get("speedup_vs_cpgparser"),
        "ratio_bar": 1.0,
        "met": met,
    }


def w_browse(srv: SeaweedS3, trees: dict[str, Any], runs: int, tmp: Path) -> dict[str, Any]:
    say("2. browse: open_cpg -> one plate entry -> all plates, vs recursive fs.find")
    assert SHAPER is not None
    endpoint = SHAPER.endpoint
    row = trees["wide"].iloc[0]
    base = {
        "root": f"s3://{BUCKET}/gallery",
        "endpoint": endpoint,
        "source": "source_4",
        "batch": row.Metadata_Batch,
        "plate": row.Metadata_Plate,
    }
    plates = pd.read_csv(ROOT / "intake_cpg" / "data" / "cpg0016_plate.csv.gz").astype(str)
    n_batches = plates.groupby("Metadata_Source").Metadata_Batch.nunique().sum()
    n_sources = plates.Metadata_Source.nunique()
    # one per batch; per source a fixed four (the source folder, workspace/, workspace_dl/ and
    # the profiles folder), and the root and the project
    allowed = int(n_batches + 4 * n_sources + 2)
    f: dict[str, Any] = {"batches": int(n_batches), "sources": int(n_sources),
                         "listings_allowed": allowed}  # fmt: skip
    met = True
    sides: dict[int, dict[str, Any]] = {}
    for lat in LATENCIES:
        _at(lat)
        ours, find, warm = [], [], []
        for i in range(runs):
            cache = str(tmp / f"listings-{lat}-{i}")
            ours.append(step(srv, "browse_ours", {**base, "cache_dir": cache}, peak=True))
            find.append(step(srv, "browse_find", base, peak=True))
            warm.append(step(srv, "browse_ours", {**base, "cache_dir": cache}, peak=True))
            say(
                f"  {lat} ms run {i + 1}: ours {ours[-1]['all_s']:.2f}s/{ours[-1]['requests_total']} "
                f"req, find {find[-1]['all_s']:.2f}s/{find[-1]['requests_total']} req, "
                f"warm {warm[-1]['all_s']:.2f}s/{warm[-1]['requests_total']} req"
            )
        assert {r["n_plates"] for r in ours + find + warm} == {2525}, "plate counts differ"
        for r in ours + find + warm:
            r["s"] = r["all_s"]
        sides[lat] = {"ours_cold": _side(ours), "fs_find": _side(find), "ours_warm": _side(warm)}
        g = {
            "objects_in_project": find[0]["n_objects"],
            "ours_cold_entry_s": median([r["entry_s"] for r in ours]),
            "ours_cold_all_s": median([r["all_s"] for r in ours]),
            "ours_cold_listings": max(r["requests"].get("LIST", 0) for r in ours),
            "ours_cold_requests": median([r["requests_total"] for r in ours]),
            "find_s": median([r["all_s"] for r in find]),
            "find_requests": median([r["requests_total"] for r in find]),
            "ours_warm_all_s": median([r["all_s"] for r in warm]),
            "ours_warm_requests": max(r["requests_total"] for r in warm),
        }
        g["met"] = g["ours_cold_listings"] <= allowed and g["ours_warm_requests"] == 0
        met &= g["met"]
        f[f"{lat}ms"] = g
    return {
        "workload": "browse",
        "title": "Browse: open_cpg to one plate and all 2,525 plates (vs recursive fs.find)",
        "bar": "at most one listing per batch plus a fixed few (4) per source, cold; 0 requests warm",
        "conditions": {"latency_ms": list(LATENCIES), "bandwidth": None},
        "sides": sides,
        "figures": f,
        "ratio": allowed / max(f[f"{LATENCIES[-1]}ms"]["ours_cold_listings"], 1),
        "ratio_bar": 1.0,
        "met": met,
    }


# --------------------------------------------------------------------------------------------
# the read workloads of issue 15: every side at every latency, through the shaping proxy
# --------------------------------------------------------------------------------------------
def _side(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time, and the requests/bytes/peak RSS of the median run, of one side."""
    recs = sorted(recs, key=lambda r: r["s"])
    mid = recs[len(recs) // 2]
    return {
        "s": median([r["s"] for r in recs]),
        "requests": mid.get("requests", {}),
        "requests_total": mid.get("requests_total", 0),
        "bytes_total": mid.get("bytes_total", 0),
        "peak_rss": mid.get("peak_rss", 0),
        "check": mid.get("check"),
        "shape": mid.get("shape"),
    }


def _at(lat: int) -> None:
    assert SHAPER is not None
    SHAPER.delay_ms = lat


def w_select(srv: SeaweedS3, a: dict[str, Any], runs: int, tmp: Path) -> list[dict[str, Any]]:
    n = len(a["urls"])
    say(f"4. select: 10 columns of {n} full-width plates, cold and warm, at {LATENCIES} ms")
    sides: dict[int, dict[str, Any]] = {}
    for lat in LATENCIES:
        _at(lat)
        res: dict[str, list[dict[str, Any]]] = {}
        for i in range(runs):
            d = tmp / f"sel-{lat}-{i}"  # one cold run fills both warm variants
            args = {**a, "footer_dir": str(d / "warm"), "listing_dir": str(d / "ls")}
            res.setdefault("ours_cold", []).append(
                step(srv, "select_ours", {**args, "warm_mode": "both"}, peak=True)
            )
            for mode in ("ranges", "chunks"):
                res.setdefault(f"ours_warm_{mode}", []).append(
                    step(srv, "select_ours", {**args, "warm_mode": mode}, peak=True)
                )
            for m in ("polars", "pyarrow", "dask"):
                res.setdefault(m, []).append(step(srv, f"select_{m}", a, peak=True))
            say(
                f"  {lat} ms run {i + 1}: "
                + ", ".join(f"{k} {v[-1]['s']:.2f}s" for k, v in res.items())
            )
        sides[lat] = {k: _side(v) for k, v in res.items()}
    checks = {tuple(s["check"]) for lat in sides.values() for s in lat.values()}
    same = len(checks) == 1
    warm_mode = (
        "chunks"
        if all(
            sides[lat]["ours_warm_chunks"]["s"] <= sides[lat]["ours_warm_ranges"]["s"]
            for lat in LATENCIES
        )
        else "ranges"
    )
    out = []
    cold_ok, warm_ok = True, True
    cold_f: dict[str, Any] = {"plates": n, "columns": a["columns"], "same_values": same}
    warm_f: dict[str, Any] = {
        "plates": n,
        "same_values": same,
        "warm_variant_served_best": warm_mode,
    }
    for lat in LATENCIES:
        s = sides[lat]
        cold = s["ours_cold"]
        ours = cold["s"]
        per_file = {k: v / n for k, v in cold["requests"].items()}
        ok = (
            ours <= s["polars"]["s"]
            and ours <= 0.5 * s["pyarrow"]["s"]
            and ours <= 0.5 * s["dask"]["s"]
            and cold["requests"].get("HEAD", 0) == 0
        )
        cold_ok &= ok
        cold_f[f"{lat}ms"] = {
            "ours_over_polars": ours / s["polars"]["s"],
            "ours_over_pyarrow": ours / s["pyarrow"]["s"],
            "ours_over_dask": ours / s["dask"]["s"],
            "ours_requests_per_file": per_file,
            "met": ok,
        }
        w = s[f"ours_warm_{warm_mode}"]
        wok = (
            w["s"] <= s["polars"]["s"] / 5
            and w["peak_rss"] <= s["polars"]["peak_rss"]
            and w["requests"].get("GET-range", 0) <= n * len(a["columns"]) * 2
        )
        warm_ok &= wok
        warm_f[f"{lat}ms"] = {
            "ours_warm_over_polars": w["s"] / s["polars"]["s"],
            "ours_warm_rss_over_polars": w["peak_rss"] / max(s["polars"]["peak_rss"], 1),
            "ranges_warm_s": s["ours_warm_ranges"]["s"],
            "chunks_warm_s": s["ours_warm_chunks"]["s"],
            "met": wok,
        }
    base = {"conditions": {"latency_ms": list(LATENCIES), "bandwidth": None}, "sides": sides}
    out.append({
        "workload": "select_cold", "id": "select_cold",
        "title": f"select_cold: 10 columns x {n} full-width plates, cold",
        "bar": "<= polars and <= half of pyarrow.dataset and dask, at 0 and 25 ms; no HEAD",
        "figures": cold_f, **base,
        "ratio": sides[25]["polars"]["s"] / sides[25]["ours_cold"]["s"],
        "ratio_bar": 1.0, "met": same and cold_ok,
    })  # fmt: skip
    out.append({
        "workload": "select_warm", "id": "select_warm",
        "title": "select_warm: the same, second process, warm cache",
        "bar": "<= 1/5 of polars' time; no footer bytes; peak RSS <= polars'",
        "figures": warm_f, **base,
        "ratio": sides[25]["polars"]["s"] / sides[25][f"ours_warm_{warm_mode}"]["s"],
        "ratio_bar": 5.0, "met": same and warm_ok,
    })  # fmt: skip
    return out


def w_full(srv: SeaweedS3, a: dict[str, Any], runs: int) -> dict[str, Any]:
    n = len(a["urls"])
    say(f"3. full: all columns of {n} full-width plates at {LATENCIES} ms")
    sides: dict[int, dict[str, Any]] = {}
    f: dict[str, Any] = {"plates": n}
    ok = True
    for lat in LATENCIES:
        _at(lat)
        res: dict[str, list[dict[str, Any]]] = {}
        for i in range(max(runs, CLOSE_RUNS)):
            ran = []
            for m in ("ours", "polars", "pyarrow", "dask", "pandas"):
                if runs_at("full", m, lat) and (i < runs or m in ("ours", "polars")):
                    res.setdefault(m, []).append(step(srv, f"full_{m}", a, peak=True))
                    ran.append(f"{m} {res[m][-1]['s']:.2f}s")
            say(f"  {lat} ms run {i + 1}: " + ", ".join(ran))
        s = sides[lat] = {k: _side(v) for k, v in res.items()}
        good = (
            s["ours"]["s"] <= 1.25 * s["polars"]["s"]
            and s["ours"]["s"] <= 0.5 * s["dask"]["s"]
            and s["ours"]["s"] <= 0.5 * s["pyarrow"]["s"]
        )
        ok &= good
        f[f"{lat}ms"] = {
            "ours_over_polars": s["ours"]["s"] / s["polars"]["s"],
            "ours_over_dask": s["ours"]["s"] / s["dask"]["s"],
            "ours_over_pyarrow": s["ours"]["s"] / s["pyarrow"]["s"],
            "ours_requests_per_file": {k: v / n for k, v in s["ours"]["requests"].items()},
            "met": good,
        }
    same = len({tuple(x["check"]) for lat in sides.values() for x in lat.values()}) == 1
    f["same_values"] = same
    return {
        "workload": "full", "id": "full",
        "title": f"full: all columns of {n} full-width plates, pandas partitions",
        "bar": "<= 1.25x polars' time, <= half of dask's and pyarrow.dataset's",
        "conditions": {"latency_ms": list(LATENCIES), "bandwidth": None},
        "sides": sides, "figures": f,
        "ratio": 1.25 * sides[25]["polars"]["s"] / sides[25]["ours"]["s"],
        "ratio_bar": 1.0, "met": same and ok,
    }  # fmt: skip


def build_large(srv: SeaweedS3, tmp: Path, rows_per_group: int, features: int) -> str:
    """One assembled-shaped file: 8 row groups, ~2 GB in memory (float32 features)."""
    import numpy as np

    say(f"writing one large file: 8 row groups x {rows_per_group:,} rows x {features} features")
    path = tmp / "large.parquet"
    names = [f"X_{j}" for j in range(1, features + 1)]
    rng = np.random.default_rng(0)
    schema = None
    writer = None
    for g in range(8):
        n = rows_per_group
        cols: dict[str, Any] = {
            "Metadata_Source": pa.array(["source_13"] * n),
            "Metadata_Plate": pa.array([f"CP-CC9-R{g}-{i % 20:02d}" for i in range(n)]),
            "Metadata_Well": pa.array(
                [f"{'ABCDEFGHIJKLMNOP'[i % 16]}{i % 24 + 1:02d}" for i in range(n)]
            ),
            "Metadata_JCP2022": pa.array([f"JCP2022_{i % 9000:06d}" for i in range(n)]),
        }
        block = (rng.integers(0, 200, size=(features, n), dtype=np.int16) / 10).astype("float32")
        for j, name in enumerate(names):
            cols[name] = pa.array(block[j])
        table = pa.table(cols)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(path, schema)
        writer.write_table(table, row_group_size=n)
    assert writer is not None
    writer.close()
    key = "large/cpg0016-jump/source_13/workspace/profiles_assembled/CRISPR/v1.0a/profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony.parquet"
    srv.put_many([(key, path.read_bytes())], threads=1)
    size = path.stat().st_size
    path.unlink()
    say(f"  {size / 2**20:,.0f} MiB on disk")
    return f"s3://{BUCKET}/{key}"


def w_large(srv: SeaweedS3, url: str) -> dict[str, Any]:
    say("8. large_file: sum of every numeric column on 2 workers x 2 GiB")
    sides: dict[int, dict[str, Any]] = {}
    ok = True
    f: dict[str, Any] = {}
    for lat in LATENCIES:
        _at(lat)
        res = {
            m: step(srv, f"large_{m}", {"endpoint": SHAPER.endpoint, "url": url})
            for m in ("ours", "dask")
            if runs_at("large_file", m, lat)
        }
        say(f"  {lat} ms: " + ", ".join(
            f"{k} {v['s']:.1f}s ok={v['ok']} parts={v['npartitions']} "
            f"peak={v['worker_peak_rss'] / 2**20:.0f}MiB largest={v['largest_partition'] / 2**20:.0f}MiB"
            for k, v in res.items()))  # fmt: skip
        sides[lat] = res
        o = res["ours"]
        good = (
            o["ok"] and o["npartitions"] >= 8 and o["worker_peak_rss"] <= 3 * o["largest_partition"]
        )
        ok &= good
        f[f"{lat}ms"] = {
            "ours_partitions": o["npartitions"],
            "ours_worker_peak_over_largest_partition": o["worker_peak_rss"] / max(o["largest_partition"], 1),
            "dask_ok": res["dask"]["ok"] if "dask" in res else None,
            "met": good,
        }  # fmt: skip
    return {
        "workload": "large_file", "id": "large_file",
        "title": "large_file: one assembled-shaped file (~2 GB in memory, 8 row groups)",
        "bar": ">= 8 partitions; sum of every numeric column on 2 workers x 2 GiB; "
               "peak worker memory <= 3x the largest partition",
        "conditions": {"latency_ms": list(LATENCIES), "bandwidth": None, "workers": 2,
                       "memory_limit": "2GiB"},
        "sides": sides, "figures": f, "ratio": None, "ratio_bar": None, "met": ok,
    }  # fmt: skip


def w_graph(srv: SeaweedS3, trees: dict[str, Any], runs: int) -> dict[str, Any]:
    say("5. graph construction: to_dask() for 2,525 plates vs 25")
    urls = trees["narrow_urls"]
    r = step(
        srv,
        "graph",
        {"endpoint": srv.endpoint, "urls": urls, "sizes": [25, len(urls)], "runs": runs},
    )
    small, big = median(r["times"]["25"]), median(r["times"][str(len(urls))])
    return {
        "workload": "graph",
        "title": f"to_dask() graph construction, {len(urls):,} vs 25 plates",
        "bar": "at most 3x the time of 25 plates",
        "figures": {
            "plates_small": 25,
            "plates_big": len(urls),
            "small_s": small,
            "big_s": big,
            "big_over_small": big / small,
            "runs": r["times"],
        },
        "ratio": 3.0 / (big / small),
        "ratio_bar": 1.0,
        "met": big / small <= 3,
    }


def w_distributed(srv: SeaweedS3, a: dict[str, Any]) -> dict[str, Any]:
    say("6. distributed: workload 3 on a 2-worker LocalCluster (processes)")
    r = step(srv, "distributed", a)
    met = r["identical"] and r["reads_in_client"] == 0 and len(r["workers"]) == 2
    return {
        "workload": "distributed",
        "title": "Full load on a 2-process LocalCluster",
        "bar": "identical results, data read on the workers",
        "figures": {k: v for k, v in r.items() if k != "requests"},
        "ratio": None,
        "ratio_bar": None,
        "met": met,
    }


def w_memory(srv: SeaweedS3, trees: dict[str, Any], tmp: Path, width: int) -> dict[str, Any]:
    urls = trees["export_urls"]
    say(f"7. memory: export {len(urls)} plates to one local parquet file (streaming loop)")
    idle = step(srv, "idle", {}, peak=True)
    out = tmp / "export.parquet"
    r = step(srv, "export", {"endpoint": srv.endpoint, "urls": urls, "out": str(out)}, peak=True)
    md = pq.ParquetFile(out).metadata
    table_bytes = sum(
        md.row_group(i).column(j).total_uncompressed_size
        for i in range(md.num_row_groups)
        for j in range(md.num_columns)
    )
    part = table_bytes / len(urls)
    grown = r["peak_rss"] - idle["peak_rss"]
    f = {
        "plates": len(urls),
        "features": width,
        "rows": md.num_rows,
        "table_bytes": table_bytes,
        "partition_bytes": part,
        "peak_rss": r["peak_rss"],
        "idle_rss": idle["peak_rss"],
        "rss_growth": grown,
        "rss_growth_in_partitions": grown / part,
        "peak_over_table": r["peak_rss"] / table_bytes,
        "s": r["s"],
        "how": "intake_cpg.export.export_parquet of a frame made in streaming_partitions() "
        "(what intake-cpg export runs)",
    }
    out.unlink()
    return {
        "workload": "memory",
        "title": f"Export {len(urls)} plates to one parquet file: peak RSS vs table size",
        "bar": "peak RSS bounded by a few partitions, not the table size "
        "(measured: RSS growth over an idle process < 25% of the table)",
        "figures": f,
        "ratio": table_bytes / max(grown, 1),
        "ratio_bar": 4.0,
        "met": grown < 0.25 * table_bytes,
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import dask
    import intake
    import s3fs

    import intake_cpg

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    weed = subprocess.run(
        [str(Path(PY).parent / "weed"), "version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "intake_cpg": intake_cpg.__version__,
            "intake": intake.__version__,
            "dask": dask.__version__,
            "pyarrow": pa.__version__,
            "pandas": pd.__version__,
            "s3fs": s3fs.__version__,
            "seaweedfs": weed.strip(),
        },
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small trees, to try the runner")
    ap.add_argument("--keep", default=None, help="keep the server's data in this folder")
    ap.add_argument("--only", default=None, help="comma-separated workloads (default: all)")
    args = ap.parse_args(argv)
    cfg = (
        {
            "n_wide": 40,
            "n_full": 10,
            "n_export": 60,
            "export_width": 300,
            "filler_wells": 2,
            "large_rows_per_group": 8192,
            "large_features": 500,
        }
        if args.quick
        else {
            "n_wide": 200,
            "n_full": 50,
            "n_export": 500,
            "export_width": 1000,
            "filler_wells": 8,
            "large_rows_per_group": 131072,
            "large_features": 500,
        }
    )
    only = set(args.only.split(",")) if args.only else None
    info = machine()
    say(f"touched {PREFAULT_BYTES / 2**30:.0f} GiB of fresh memory once in {prefault():.0f} s")
    say(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM")
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="intake-cpg-bench-"))
    results: list[dict[str, Any]] = []
    try:
        if only is None or "parse" in only:
            results.append(w_parse(args.runs, 100_000 if args.quick else None))
        global SHAPER
        with SeaweedS3(workdir / "s3", BUCKET) as srv, Shaper(srv.endpoint) as shaper:
            SHAPER = shaper
            say(f"SeaweedFS S3 on {srv.endpoint} (anonymous read), data in {workdir}")
            say(f"shaping proxy on {shaper.endpoint}: every read goes through it")
            parts = None if only is None else set().union(*(NEEDS.get(w, set()) for w in only))
            trees = build_trees(srv, cfg, parts)
            tmp = workdir / "caches"
            tmp.mkdir(exist_ok=True)
            names = sorted(trees["wide"].Metadata_Plate)
            glob, chosen = plate_glob(names, cfg["n_full"])
            by_plate = dict(zip(trees["wide"].Metadata_Plate, trees["wide_urls"], strict=True))
            from intake_cpg.demo import select_features

            feats = list(select_features(4762))
            full = {
                "root": f"s3://{BUCKET}/wide",
                "endpoint": shaper.endpoint,
                "plate_glob": glob,
                "urls": [by_plate[p] for p in chosen],
                "check_columns": feats[:: len(feats) // 50][:50],
            }
            cols = feats[:: len(feats) // 10][:10]
            sel = {
                "root": f"s3://{BUCKET}/wide",
                "endpoint": shaper.endpoint,
                "plate_glob": "*",
                "urls": trees["wide_urls"],
                "columns": cols,
            }

            def large() -> dict[str, Any]:
                url = build_large(srv, tmp, cfg["large_rows_per_group"], cfg["large_features"])
                srv.warm([url])
                return w_large(srv, url)

            plan = [
                ("select", lambda: w_select(srv, sel, args.runs, tmp)),
                ("full", lambda: w_full(srv, full, args.runs)),
                ("large_file", large),
                ("browse", lambda: w_browse(srv, trees, args.runs, tmp)),
                ("graph", lambda: w_graph(srv, trees, args.runs)),
                ("distributed", lambda: w_distributed(srv, full)),
                ("memory", lambda: w_memory(srv, trees, tmp, cfg["export_width"])),
            ]
            reads = {"select": sel["urls"], "full": full["urls"], "distributed": full["urls"],
                     "memory": trees["export_urls"]}  # fmt: skip
            for name, fn in plan:
                if only is None or name in only:
                    if reads.get(name):  # right before it: what other workloads read since
                        n = srv.warm(reads[name])  # may have pushed it out of the server's cache
                        say(f"read {name}'s objects once, untimed ({n / 2**20:,.0f} MiB)")
                    _at(0)
                    got = fn()
                    for r in got if isinstance(got, list) else [got]:
                        r.setdefault("id", r["workload"])
                        results.append(r)
                        say(f"  {r['workload']} -> {'MET' if r['met'] else 'NOT MET'}")
                    publish(results, info, cfg, args, partial=True)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    publish(results, info, cfg, args, partial=False)
    say("wrote benchmarks/results.json and docs/performance.md")
    return 0


_PREVIOUS: list[dict[str, Any]] | None = None


def publish(
    results: list[dict[str, Any]], info: dict[str, Any], cfg: dict[str, Any], args: Any,
    *, partial: bool,
) -> None:  # fmt: skip
    """Write the report; workloads not (yet) run keep their last results, with their dates.

    Called after every workload too, so a run cut short still leaves what it measured.
    """
    from report import write_report

    global _PREVIOUS
    if _PREVIOUS is None:
        _PREVIOUS = json.loads((ROOT / "benchmarks" / "results.json").read_text())["workloads"]
    previous = _PREVIOUS
    for r in results:
        r.setdefault("measured", info["date"])
    fresh = {r["workload"] for r in results}
    names = [r["workload"] for r in results]
    order = names + [p["workload"] for p in previous if p["workload"] not in fresh]
    merged = {r["workload"]: r for r in previous if r["workload"] not in fresh}
    merged.update({r["workload"]: r for r in results})
    stale = {"full_load", "selective_load"}  # replaced by full, select_cold and select_warm
    out = [merged[w] for w in order if w in merged and w not in stale]
    elapsed = time.monotonic() - T0
    write_report(out, info, cfg, args.runs, elapsed, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
