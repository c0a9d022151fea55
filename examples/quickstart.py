"""The main job of ``make demo``: open a gallery with intake, browse it, load tables.

Usage::

    python examples/quickstart.py [GALLERY_ROOT]

GALLERY_ROOT defaults to ``demo-gallery`` (built by ``python -m intake_cpg.demo demo-gallery``).
The same lines work on the public bucket with ``intake.open_cpg()``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import intake

HERE = Path(__file__).resolve().parent


def main(root: str) -> int:
    t0 = time.perf_counter()
    cat = intake.open_catalog(str(HERE.parent / "catalogs" / "demo.yaml"))
    gallery = cat.gallery(root=str(Path(root).resolve()))
    print(f"gallery: {gallery.storage.root}")
    print(f"projects: {', '.join(gallery)}")

    project = gallery["cpg0016"]  # the accession works as an alias of cpg0016-jump
    kinds = project.df.groupby("kind")["name"].apply(list)  # sources, and the project's entries
    print(f"cpg0016-jump sources: {', '.join(kinds['source'])}")
    print(f"cpg0016-jump entries across sources: {', '.join(kinds['entry'])}")
    source = project["source_4"]
    print(f"cpg0016-jump/source_4 products: {', '.join(source)}")

    entry = source["profiles"]
    params = {p["name"]: p.get("allowed") for p in entry.describe()["user_parameters"]}
    print(f"profiles parameters: batch in {params['batch']}, variant in {params['variant']}")

    plate = entry(batch="2021_04_26_Batch1", plate="BR00117037").to_dask()
    print(
        f"one plate: {plate.npartitions} partition, {len(plate.columns)} columns, "
        f"{len(plate)} wells; Metadata_Plate dtype {plate['Metadata_Plate'].dtype}"
    )

    batch = entry(batch="2021_04_26_Batch1").to_dask()
    wells = batch.groupby("Metadata_Plate").size().compute().sort_index()
    print(f"one batch: {batch.npartitions} plates lazily; wells per plate: {wells.to_dict()}")

    digits = project["source_2"]["profiles"](plate="1053601756").to_dask().compute()
    print(f"all-digit plate name kept as a string: {digits['Metadata_Plate'].iloc[0]!r}")

    assembled = gallery["cpg0016-jump-assembled"]["source_all"]["profiles_assembled"]
    print(f"assembled subsets: {', '.join(assembled)}")
    compound = assembled["COMPOUND"]
    md = compound.describe()["metadata"]
    df = compound.to_dask()
    print(
        f"COMPOUND (newest version {md['versions'][-1]}): {df.npartitions} partition, "
        f"{len(df.columns)} columns, {len(df)} rows; recipe {md.get('provenance', {}).get('recipe_ref')}"
    )
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "demo-gallery"))
