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
def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


#: The trees each workload reads (``--only`` builds just those).
NEEDS = {
    "browse": {"gallery", "wide"},
    "full_load": {"wide"},
    "selective_load": {"wide"},
    "graph": {"gallery"},
    "distributed": {"wide"},
    "memory": {"medium"},
}


def build_trees(
    srv: SeaweedS3, cfg: dict[str, Any], parts: set[str] | None = None
) -> dict[str, Any]:
    from intake_cpg.demo import build_demo, plate_profile
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
            yield f"{root}/{key}", _parquet(plate_profile(s, p, width))

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
def step(srv: SeaweedS3, name: str, args: dict[str, Any], *, peak: bool = False) -> dict[str, Any]:
    """Run one step in a new process; add the server's request counts (and peak RSS)."""
    before = srv.requests()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(args, fh)  # a file: 2,525 URLs do not fit on a command line
    cmd = [PY, str(ROOT / "benchmarks" / "workloads.py"), name, "@" + fh.name]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    rec["requests"] = {k: after[k] - before[k] for k in after if after[k] - before[k]}
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
    endpoint = srv.endpoint
    row = trees["wide"].iloc[0]
    base = {
        "root": f"s3://{BUCKET}/gallery",
        "endpoint": endpoint,
        "source": "source_4",
        "batch": row.Metadata_Batch,
        "plate": row.Metadata_Plate,
    }
    ours, find, warm = [], [], []
    for i in range(runs):
        cache = str(tmp / f"listings-{i}")
        ours.append(step(srv, "browse_ours", {**base, "cache_dir": cache}))
        find.append(step(srv, "browse_find", base))
        warm.append(step(srv, "browse_ours", {**base, "cache_dir": cache}))
        say(
            f"  run {i + 1}: ours {ours[-1]['all_s']:.2f}s/{ours[-1]['requests_total']} req, "
            f"find {find[-1]['all_s']:.2f}s/{find[-1]['requests_total']} req, "
            f"warm {warm[-1]['all_s']:.2f}s/{warm[-1]['requests_total']} req"
        )
    assert {r["n_plates"] for r in ours + find + warm} == {2525}, "plate counts differ"
    f = {
        "objects_in_project": find[0]["n_objects"],
        "plates_found": 2525,
        "ours_cold_entry_s": median([r["entry_s"] for r in ours]),
        "ours_cold_all_s": median([r["all_s"] for r in ours]),
        "ours_cold_requests": median([r["requests_total"] for r in ours]),
        "find_s": median([r["all_s"] for r in find]),
        "find_requests": median([r["requests_total"] for r in find]),
        "ours_warm_all_s": median([r["all_s"] for r in warm]),
        "ours_warm_requests": max(r["requests_total"] for r in warm),
        "ours_warm_list_requests": max(r["requests"].get("LIST", 0) for r in warm),
    }
    f["request_ratio"] = f["find_requests"] / max(f["ours_cold_requests"], 1)
    f["time_ratio"] = f["find_s"] / f["ours_cold_all_s"]
    f["warm_time_ratio"] = f["find_s"] / f["ours_warm_all_s"]
    met = f["request_ratio"] >= 10 and f["time_ratio"] >= 5 and f["ours_warm_list_requests"] == 0
    return {
        "workload": "browse",
        "title": "Browse: open_cpg to one plate and all 2,525 plates vs recursive fs.find",
        "bar": ">=10x fewer requests and >=5x less time than fs.find cold; 0 listings warm",
        "figures": f,
        "ratio": f["time_ratio"],
        "ratio_bar": 5.0,
        "met": met,
    }


def w_full(srv: SeaweedS3, a: dict[str, Any], runs: int) -> dict[str, Any]:
    say(f"3. full load of {len(a['urls'])} full-width plates: entry vs dask vs pandas loop")
    res: dict[str, list[dict[str, Any]]] = {"ours": [], "dask": [], "pandas": []}
    for i in range(runs):
        for m in res:
            res[m].append(step(srv, f"full_{m}", a))
        say(f"  run {i + 1}: " + ", ".join(f"{m} {res[m][-1]['s']:.2f}s" for m in res))
    checks = {m: [tuple(r["check"]) for r in rs] for m, rs in res.items()}
    same = len({c for cs in checks.values() for c in cs}) == 1
    f = {f"{m}_s": median([r["s"] for r in rs]) for m, rs in res.items()}
    f.update(
        plates=len(a["urls"]),
        rows=res["ours"][0]["shape"][0],
        columns_ours=res["ours"][0]["shape"][1],
        columns_dask=res["dask"][0]["shape"][1],
        same_values=same,
        ours_over_dask=f["ours_s"] / f["dask_s"],
        pandas_over_ours=f["pandas_s"] / f["ours_s"],
    )
    return {
        "workload": "full_load",
        "title": f"Full load of {len(a['urls'])} full-width plates",
        "bar": "within 5% of dask.dataframe.read_parquet, faster than a pandas loop",
        "figures": f,
        "ratio": f["dask_s"] / f["ours_s"],
        "ratio_bar": 1 / 1.05,
        "met": same and f["ours_over_dask"] <= 1.05 and f["ours_s"] < f["pandas_s"],
        "results": res,
    }


def w_select(srv: SeaweedS3, a: dict[str, Any], runs: int, tmp: Path) -> dict[str, Any]:
    say(f"4. selective load: 10 columns of {len(a['urls'])} full-width plates, cold and warm")
    res: dict[str, list[dict[str, Any]]] = {
        f"{m}_{t}": [] for m in ("ours", "dask", "pyarrow") for t in ("cold", "warm")
    }
    for i in range(runs):
        args = {**a, "footer_dir": str(tmp / f"footers-{i}"), "listing_dir": str(tmp / f"ls-{i}")}
        for m in ("ours", "dask", "pyarrow"):
            for t in ("cold", "warm"):  # warm: the same again, in a new process
                res[f"{m}_{t}"].append(step(srv, f"select_{m}", args))
        say(f"  run {i + 1}: " + ", ".join(f"{k} {v[-1]['s']:.2f}s" for k, v in res.items()))
    same = len({tuple(r["check"]) for rs in res.values() for r in rs}) == 1
    f: dict[str, Any] = {f"{k}_s": median([r["s"] for r in v]) for k, v in res.items()}
    f.update({f"{k}_requests": median([r["requests_total"] for r in v]) for k, v in res.items()})
    f.update(
        plates=len(a["urls"]),
        columns=a["columns"],
        same_values=same,
        cold_ours_over_dask=f["ours_cold_s"] / f["dask_cold_s"],
        warm_dask_over_ours=f["dask_warm_s"] / f["ours_warm_s"],
        warm_pyarrow_over_ours=f["pyarrow_warm_s"] / f["ours_warm_s"],
    )
    met = same and f["ours_cold_s"] <= f["dask_cold_s"] and f["warm_dask_over_ours"] >= 3
    return {
        "workload": "selective_load",
        "title": f"10 feature columns of {len(a['urls'])} full-width plates (footer cache)",
        "bar": "never slower than raw dask cold; >=3x faster than raw dask warm",
        "figures": f,
        "ratio": f["warm_dask_over_ours"],
        "ratio_bar": 3.0,
        "met": met,
    }


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
        "how": "intake_cpg.export.export_parquet (what intake-cpg export runs)",
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
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small trees, to try the runner")
    ap.add_argument("--keep", default=None, help="keep the server's data in this folder")
    ap.add_argument("--only", default=None, help="comma-separated workloads (default: all)")
    args = ap.parse_args(argv)
    cfg = (
        {"n_wide": 40, "n_full": 10, "n_export": 60, "export_width": 300, "filler_wells": 2}
        if args.quick
        else {"n_wide": 200, "n_full": 50, "n_export": 500, "export_width": 1000, "filler_wells": 8}
    )
    only = set(args.only.split(",")) if args.only else None
    info = machine()
    say(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM")
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="intake-cpg-bench-"))
    results: list[dict[str, Any]] = []
    try:
        if only is None or "parse" in only:
            results.append(w_parse(args.runs, 100_000 if args.quick else None))
        with SeaweedS3(workdir / "s3", BUCKET) as srv:
            say(f"SeaweedFS S3 on {srv.endpoint} (anonymous read), data in {workdir}")
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
                "endpoint": srv.endpoint,
                "plate_glob": glob,
                "urls": [by_plate[p] for p in chosen],
                "check_columns": feats[:: len(feats) // 50][:50],
            }
            cols = feats[:: len(feats) // 10][:10]
            sel = {
                "root": f"s3://{BUCKET}/wide",
                "endpoint": srv.endpoint,
                "plate_glob": "*",
                "urls": trees["wide_urls"],
                "columns": cols,
            }
            plan = [
                ("browse", lambda: w_browse(srv, trees, args.runs, tmp)),
                ("full_load", lambda: w_full(srv, full, args.runs)),
                ("selective_load", lambda: w_select(srv, sel, args.runs, tmp)),
                ("graph", lambda: w_graph(srv, trees, args.runs)),
                ("distributed", lambda: w_distributed(srv, full)),
                ("memory", lambda: w_memory(srv, trees, tmp, cfg["export_width"])),
            ]
            for name, fn in plan:
                if only is None or name in only:
                    results.append(fn())
                    say(f"  -> {'MET' if results[-1]['met'] else 'NOT MET'}")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    from report import write_report

    stamp = info["date"]
    for r in results:
        r.setdefault("measured", stamp)
    if only is not None:  # keep the other workloads' last results, each with its own date
        previous = json.loads((ROOT / "benchmarks" / "results.json").read_text())["workloads"]
        fresh = {r["workload"] for r in results}
        order = [r["workload"] for r in previous] + [
            w for w in fresh if w not in {p["workload"] for p in previous}
        ]
        merged = {r["workload"]: r for r in previous if r["workload"] not in fresh}
        merged.update({r["workload"]: r for r in results})
        results = [merged[w] for w in order if w in merged]
    write_report(results, info, cfg, args.runs, time.monotonic() - T0, quick=args.quick)
    say("wrote benchmarks/results.json and docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
