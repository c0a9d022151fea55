"""The JUMP metadata release the tests serve: real small files plus built well/compound tables.

``build_release_tree(folder, plates)`` lays out ``folder`` like GitHub's raw-file host at the
pinned commit (``<folder>/jump-cellpainting/datasets/<commit>/metadata/<file>``) with
:func:`intake_cpg.metadata.synthetic.release_files`: the real small files packaged with
intake-cpg (byte-for-byte v0.13) and a ``well.csv.gz``/``compound.csv.gz`` built for
``plates``. It returns the packaged release with the two built files' pins replaced by their
digests (``well`` by git blob id only, as in the real pin table; ``compound`` by sha256 too),
so every other pin is the real one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from intake_cpg.metadata import Pin, Release, decode_table, default_release
from intake_cpg.metadata.pins import file_digests
from intake_cpg.metadata.synthetic import packaged_file, release_files

#: The tables whose real files are packaged (all but the two large ones).
REAL_TABLES = tuple(t for t in default_release().tables if t not in ("well", "compound"))


def metadata_folder(release: Release, root: Path) -> Path:
    return root / release.repository / release.commit / "metadata"


def demo_jump_plates(demo) -> pd.DataFrame:
    """Source, Batch, Plate, PlateType of the demo's cpg0016 plates (from the real plate table)."""
    sel = demo.plates[(demo.plates.project == "cpg0016-jump")][["source", "plate"]]
    sel = sel.drop_duplicates().rename(
        columns={"source": "Metadata_Source", "plate": "Metadata_Plate"}
    )
    plate = decode_table(packaged_file("plate"), "plate.csv.gz")
    return sel.astype(str).merge(plate.astype(str), on=["Metadata_Source", "Metadata_Plate"])


def build_release_tree(root: Path, plates: pd.DataFrame) -> Release:
    base = default_release()
    folder = metadata_folder(base, root)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in release_files(plates).items():
        (folder / name).write_bytes(data)
    pins = dict(base.pins)
    for table, with_sha in (("well", False), ("compound", True)):
        sha, blob, size = file_digests(folder / f"{table}.csv.gz")
        pins[table] = Pin(table, f"{table}.csv.gz", size, sha if with_sha else None, blob)
    return replace(base, pins=pins)
