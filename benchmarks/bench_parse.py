"""Benchmark: parse about a million real-shaped gallery keys with ``intake_cpg.parse_key``.

Keys are built here with plain f-strings (not with ``format_key``), together with the fields
each key must parse to, from every one of the 2,525 cpg0016 plates (their real sources and
batches), wells A01..P24 and sites, for every product of the layout table, plus the
assembled-profile URLs of the real manifests (legacy layouts included) and keys that are not in
the table. ``parse_key`` is timed over all of them (median of ``--runs`` runs), and the share of
keys parsed to exactly the right fields is counted. If ``cpgparser`` (a Rust parser on PyPI)
is importable it is timed on the same keys, and its answers are checked on the fields it
reports (project, source, batch, plate, extension).

Run: ``python benchmarks/bench_parse.py [--runs 3] [--limit N]``. Prints a summary, then one
JSON record on the last line of stdout.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from intake_cpg.layout import parse_key
from intake_cpg.layout.table import FIELDS

ROOT = Path(__file__).resolve().parents[1]
PLATES = ROOT / "tests" / "data" / "keys" / "plate.csv.gz"

# expected fields, in this order: the product, then the layout's fields (not the file name)
ORDER = ("product", *(f for f in FIELDS if f != "filename"))
CHANNELS = ("AGP", "DNA", "ER", "Mito", "RNA", "Brightfield", "Brightfield_H", "Brightfield_L")
COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei", "Image", "Experiment")
WELLS = tuple(f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25))
MODEL = "efficientnet_v2_imagenet21k_s_feature_vector_2_0260bc96"
SEG = "cellpose_c632b05b6930"

MANIFEST_URLS = [  # real URLs from jump-cellpainting/datasets and 2024_Chandrasekaran_Production
    (
        "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/"
        "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony.parquet",
        ("ORF", "v1.0a", "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony"),
    ),
    (
        "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/COMPOUND/v1.0/"
        "profiles_var_mad_int_featselect_harmony.parquet",
        ("COMPOUND", "v1.0", "profiles_var_mad_int_featselect_harmony"),
    ),
    (
        "cpg0016-jump-assembled/source_all/workspace/profiles/jump-profiling-recipe_2024_a917fa7/"
        "ORF/profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony/"
        "profiles_wellpos_cc_var_mad_outlier.parquet",
        ("ORF", "jump-profiling-recipe_2024_a917fa7", "profiles_wellpos_cc_var_mad_outlier"),
    ),
    (
        "cpg0016-jump-assembled/source_all/workspace/profiles/jump-profiling-recipe_2024_0224e0f/"
        "ALL/profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony/"
        "profiles_wellpos_cc_var_mad_outlier_featselect.parquet",
        (
            "ALL",
            "jump-profiling-recipe_2024_0224e0f",
            "profiles_wellpos_cc_var_mad_outlier_featselect",
        ),
    ),
    (
        "cpg0042-chandrasekaran-jump/source_all/workspace/profiles/compound_no_source7/v1.0/"
        "profiles_var_mad_int_featselect_harmony.parquet",
        ("compound_no_source7", "v1.0", "profiles_var_mad_int_featselect_harmony"),
    ),
]


def _exp(product, project=None, source=None, **f):
    return (product, project, source, *(f.get(n) for n in ORDER[3:]))


def build_keys(seed: int = 0) -> tuple[list[str], list[tuple]]:
    rng = random.Random(seed)
    with gzip.open(PLATES, "rt", newline="") as fh:
        plates = [
            (r["Metadata_Source"], r["Metadata_Batch"], r["Metadata_Plate"])
            for r in csv.DictReader(fh)
        ]
    keys: list[str] = []
    exp: list[tuple] = []
    add_k, add_e = keys.append, exp.append
    P = "cpg0016-jump"
    batches = sorted({(s, b) for s, b, _ in plates})
    for s, b, p in plates:
        pre = f"{P}/{s}/"
        ws = f"{pre}workspace/"
        # per-plate profiles
        for variant, ext in (
            (None, "parquet"),
            ("normalized", "csv.gz"),
            ("normalized_feature_select_negcon_batch", "csv.gz"),
            ("augmented", "csv.gz"),
        ):
            stem = p if variant is None else f"{p}_{variant}"
            add_k(f"{ws}profiles/{b}/{p}/{stem}.{ext}")
            add_e(_exp("profiles", P, s, batch=b, plate=p, variant=variant, extension=ext))
        for ext in ("sqlite", "csv"):
            add_k(f"{ws}backend/{b}/{p}/{p}.{ext}")
            add_e(_exp("backend", P, s, batch=b, plate=p, extension=ext))
        for folder, version, ext in (
            ("load_data_csv", None, "csv"),
            ("load_data_csv_orig", "orig", "parquet"),
        ):
            for variant in (None, "with_illum"):
                name = "load_data" if variant is None else "load_data_with_illum"
                add_k(f"{ws}{folder}/{b}/{p}/{name}.{ext}")
                add_e(
                    _exp(
                        "load_data",
                        P,
                        s,
                        batch=b,
                        plate=p,
                        version=version,
                        variant=variant,
                        extension=ext,
                    )
                )
        for ch in CHANNELS:
            add_k(f"{pre}images/{b}/illum/{p}/{p}_Illum{ch}.npy")
            add_e(_exp("illum", P, s, batch=b, plate=p, variant=f"Illum{ch}", extension="npy"))
        full = f"{p}__2021-05-02T16_02_51-Measurement1"
        for k in range(10):
            add_k(
                f"{pre}images/{b}/images/{full}/Images/r01c01f{k + 1:02d}p01-ch{k % 5 + 1}sk1fk1fl1.tiff"
            )
            # the plate without the microscope's measurement suffix; well and site from the
            # Phenix file name (r01c01 is A01, f02 is site 2)
            add_e(_exp("images", P, s, batch=b, plate=p, well="A01", site=str(k + 1),
                       extension="tiff"))  # fmt: skip
        for ws_i in rng.sample(range(len(WELLS) * 9), 60):  # distinct well/site pairs
            well, site = WELLS[ws_i // 9], str(ws_i % 9 + 1)
            for comp in COMPARTMENTS:
                add_k(f"{ws}analysis/{b}/{p}/analysis/{p}-{well}-{site}/{comp}.csv")
                add_e(
                    _exp(
                        "analysis",
                        P,
                        s,
                        batch=b,
                        plate=p,
                        well=well,
                        site=site,
                        variant=comp,
                        extension="csv",
                    )
                )
        well = rng.choice(WELLS)
        add_k(f"{ws}analysis/{b}/{p}/analysis/{p}-{well}/Cells.csv.gz")
        add_e(
            _exp("analysis", P, s, batch=b, plate=p, well=well, variant="Cells", extension="csv.gz")
        )
        add_k(f"{ws}analysis/{b}/{p}/analysis/{p}/Nuclei.csv.gz")
        add_e(_exp("analysis", P, s, batch=b, plate=p, variant="Nuclei", extension="csv.gz"))
        dl = f"{pre}workspace_dl/"
        add_k(f"{dl}profiles/{MODEL}/{b}/{p}/{p}.parquet")
        add_e(_exp("dl_profiles", P, s, batch=b, plate=p, model=MODEL, extension="parquet"))
        emb = f"{dl}embeddings/{MODEL}/{b}/{p}/"
        for i, ws_i in enumerate(rng.sample(range(len(WELLS) * 9), 60)):
            well, site = WELLS[ws_i // 9], str(ws_i % 9 + 1)
            if i < 40:
                add_k(f"{emb}{well}-{site}/embedding.parquet")
                add_e(
                    _exp(
                        "embeddings",
                        P,
                        s,
                        batch=b,
                        plate=p,
                        well=well,
                        site=site,
                        model=MODEL,
                        extension="parquet",
                    )
                )
            elif i < 50:
                add_k(f"{emb}{p}/{well}/embedding.parquet")
                add_e(
                    _exp(
                        "embeddings",
                        P,
                        s,
                        batch=b,
                        plate=p,
                        well=well,
                        model=MODEL,
                        extension="parquet",
                    )
                )
            else:
                add_k(f"{emb}{well}/{site}/embedding.npz")
                add_e(
                    _exp(
                        "embeddings",
                        P,
                        s,
                        batch=b,
                        plate=p,
                        well=well,
                        site=site,
                        model=MODEL,
                        extension="npz",
                    )
                )
        for qc in ("cell_count", "correlation", "position_effect"):
            add_k(f"{ws}quality_control/heatmap/{b}/{p}/{p}_{qc}.png")
            add_e(
                _exp(
                    "quality_control",
                    P,
                    s,
                    batch=b,
                    plate=p,
                    subset="heatmap",
                    variant=qc,
                    extension="png",
                )
            )
        add_k(f"{ws}segmentation/{SEG}/objects/{b}/{p}/channel_mapping.json")
        add_e(_exp("segmentation", P, s, batch=b, plate=p, model=SEG, extension="json"))
        add_k(f"{ws}segmentation/{SEG}/objects/{b}/{p}/{p}.zarr/{s}__{b}__{p}__A01__1/.zgroup")
        add_e(_exp("segmentation", P, s, batch=b, plate=p, model=SEG))
    for s, b in batches:
        ws = f"{P}/{s}/workspace/"
        add_k(f"{ws}metadata/platemaps/{b}/barcode_platemap.csv")
        add_e(_exp("barcode_platemap", P, s, batch=b, extension="csv"))
        add_k(f"{ws}metadata/platemaps/{b}/platemap/{b}.txt")
        add_e(_exp("platemap", P, s, batch=b, variant=b, extension="txt"))
        add_k(f"{ws}pipelines/{b}/analysis.cppipe")
        add_e(_exp("pipelines", P, s, batch=b, extension="cppipe"))
    for s in sorted({s for s, _ in batches}):
        add_k(f"{P}/{s}/workspace/metadata/external_metadata/JUMP-Target-1_compound_metadata.tsv")
        add_e(
            _exp(
                "external_metadata",
                P,
                s,
                variant="JUMP-Target-1_compound_metadata",
                extension="tsv",
            )
        )
    for url, (subset, version, variant) in MANIFEST_URLS:
        project, source = url.split("/", 2)[:2]
        for _ in range(20):
            add_k(url)
            add_e(
                _exp(
                    "profiles_assembled",
                    project,
                    source,
                    subset=subset,
                    version=version,
                    variant=variant,
                    extension="parquet",
                )
            )
    for i in range(200):  # not in the table
        add_k("index.html")
        add_e(_exp("other", extension="html"))
        add_k(f"cpg0016-jump-assembled/source_all/README_{i}.md")
        add_e(_exp("other", "cpg0016-jump-assembled", "source_all", extension="md"))
        add_k(f"dev-cpg0016-jump/source_4/workspace/metadata/Batch{i}/Barcodes.csv")
        add_e(_exp("other", "dev-cpg0016-jump", "source_4", extension="csv"))
    return keys, exp


def _fields(p) -> tuple:
    return (
        p.product,
        p.project,
        p.source,
        p.batch,
        p.plate,
        p.well,
        p.site,
        p.subset,
        p.version,
        p.variant,
        p.model,
        p.extension,
    )


def _time(fn, keys: list[str], runs: int) -> tuple[float, list]:
    times = []
    out: list = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = [fn(k) for k in keys]
        times.append(time.perf_counter() - t0)
        # drop this run's results before the next one so runs see the same memory state
        if _ < runs - 1:
            out = []
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N keys")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    keys, expected = build_keys(args.seed)
    if args.limit:
        keys, expected = keys[: args.limit], expected[: args.limit]
    build_s = time.perf_counter() - t0
    assert len(set(keys)) > 0.99 * len(keys) - 1000, "keys should be (almost all) distinct"
    n = len(keys)
    products = sorted({e[0] for e in expected})
    print(
        f"built {n:,} keys ({len(set(keys)):,} distinct) over {len(products)} products in {build_s:.1f}s"
    )

    med, parsed = _time(parse_key, keys, args.runs)
    right = sum(_fields(p) == e for p, e in zip(parsed, expected, strict=True))
    wrong_examples = [
        (k, _fields(p), e)
        for k, p, e in zip(keys, parsed, expected, strict=True)
        if _fields(p) != e
    ][:5]
    del parsed
    record = {
        "benchmark": "parse_key",
        "keys": n,
        "distinct_keys": len(set(keys)),
        "products": products,
        "runs": args.runs,
        "python": platform.python_version(),
        "intake_cpg": {
            "median_s": round(med, 3),
            "keys_per_s": round(n / med),
            "right_fields_share": right / n,
            "wrong": n - right,
            "wrong_examples": wrong_examples,
        },
    }
    print(
        f"intake_cpg.parse_key: {n / med:,.0f} keys/s (median of {args.runs}: {med:.2f}s), right fields: {right:,}/{n:,} ({100 * right / n:.2f}%)"
    )
    for k, got, want in wrong_examples:
        print(f"  WRONG {k}\n    got  {got}\n    want {want}")

    try:
        import cpgparser
    except ImportError:
        record["cpgparser"] = None
        print("cpgparser: not installed (pip install cpgparser==0.2.0 to compare)")
    else:
        med_c, parsed_c = _time(cpgparser.parse_prefix, keys, args.runs)
        cmp_right = 0
        for d, e in zip(parsed_c, expected, strict=True):
            got = (
                d.get("dataset_id"),
                d.get("source_id"),
                d.get("batch_id"),
                d.get("plate_id"),
                d.get("extension"),
            )
            cmp_right += got == (e[1], e[2], e[3], e[4], e[11])
        ours_cmp = record["intake_cpg"]  # same comparison for intake_cpg, for a fair figure
        record["cpgparser"] = {
            "version": getattr(cpgparser, "__version__", "0.2.0"),
            "median_s": round(med_c, 3),
            "keys_per_s": round(n / med_c),
            "right_on_its_fields_share": cmp_right / n,
            "fields_compared": ["project", "source", "batch", "plate", "extension"],
        }
        record["speedup_vs_cpgparser"] = round(med_c / med, 2)
        print(
            f"cpgparser.parse_prefix: {n / med_c:,.0f} keys/s (median of {args.runs}: {med_c:.2f}s), "
            f"right on project/source/batch/plate/extension: {cmp_right:,}/{n:,} ({100 * cmp_right / n:.2f}%)"
        )
        print(
            f"intake_cpg is {med_c / med:.2f}x the speed of cpgparser; its right share {100 * ours_cmp['right_fields_share']:.2f}% is on all 12 fields"
        )
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    rec = main()
    sys.exit(0 if rec["intake_cpg"]["wrong"] == 0 else 1)
