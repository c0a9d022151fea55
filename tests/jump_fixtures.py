"""The JUMP metadata release the tests serve: real small files plus built well/compound tables.

``build_release_tree(folder, plates)`` lays out ``folder`` like GitHub's raw-file host at the
pinned commit (``<folder>/jump-cellpainting/datasets/<commit>/metadata/<file>``): the real
files of ``tests/data/jump_metadata/`` and a ``well.csv.gz``/``compound.csv.gz`` built for
``plates`` with :mod:`intake_cpg.metadata.synthetic`. It returns the packaged release with the
host left to the caller and the two built files' pins replaced by their digests (``well`` by
git blob id only, as in the real pin table; ``compound`` by sha256 too), so every other pin is
the real one.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd

from intake_cpg.metadata import Pin, Release, decode_table, default_release
from intake_cpg.metadata.pins import file_digests
from intake_cpg.metadata.synthetic import build_compound, build_well

DATA = Path(__file__).parent / "data" / "jump_metadata"
REAL_FILES = tuple(sorted(p.name for p in DATA.iterdir() if p.name != "README.md"))


def _gz_csv(df: pd.DataFrame) -> bytes:
    text = df.to_csv(index=False, lineterminator="\n").encode()
    return gzip.compress(text, compresslevel=6, mtime=0)


def metadata_folder(release: Release, root: Path) -> Path:
    return root / release.repository / release.commit / "metadata"


def demo_jump_plates(demo) -> pd.DataFrame:
    """Source, Batch, Plate, PlateType of the demo's cpg0016 plates (from the real plate table)."""
    sel = demo.plates[(demo.plates.project == "cpg0016-jump")][["source", "plate"]]
    sel = sel.drop_duplicates().rename(
        columns={"source": "Metadata_Source", "plate": "Metadata_Plate"}
    )
    plate = decode_table(DATA / "plate.csv.gz")
    return sel.astype(str).merge(plate.astype(str), on=["Metadata_Source", "Metadata_Plate"])


def build_release_tree(root: Path, plates: pd.DataFrame) -> Release:
    base = default_release()
    folder = metadata_folder(base, root)
    folder.mkdir(parents=True, exist_ok=True)
    for name in REAL_FILES:
        shutil.copyfile(DATA / name, folder / name)
    orf = decode_table(DATA / "orf.csv.gz")
    crispr = decode_table(DATA / "crispr.csv.gz")
    pc = decode_table(DATA / "perturbation_control.csv")
    well = build_well(plates, orf=orf, crispr=crispr, perturbation_control=pc)
    (folder / "well.csv.gz").write_bytes(_gz_csv(well))
    (folder / "compound.csv.gz").write_bytes(_gz_csv(build_compound(well.Metadata_JCP2022)))
    pins = dict(base.pins)
    for table, with_sha in (("well", False), ("compound", True)):
        sha, blob, size = file_digests(folder / f"{table}.csv.gz")
        pins[table] = Pin(table, f"{table}.csv.gz", size, sha if with_sha else None, blob)
    return replace(base, pins=pins)
