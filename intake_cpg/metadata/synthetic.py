"""``well`` and ``compound`` tables for a set of plates, with the real column names (pure).

The real ``well.csv.gz`` and ``compound.csv.gz`` of the datasets repository are large (about
3.7 MB and tens of MB), so the demo gallery and the tests build small ones for the plates they
hold, with the real columns (``db/setup.sql`` of the pinned release) and real identifiers
where the real tables are packaged or small:

* ``well``: ``Metadata_Source, Metadata_Plate, Metadata_Well, Metadata_JCP2022``. Every plate
  gets all 384 wells; the perturbation follows its ``Metadata_PlateType``: ORF and CRISPR
  plates take real ``JCP2022`` ids from the real ``orf``/``crispr`` tables (so gene symbols
  join), with the real negative controls of ``perturbation_control`` in column 1; compound,
  TARGET and DMSO plates take compound ids ``JCP2022_0xxxxx``, with DMSO (the real negcon
  ``JCP2022_033924``) in columns 1-2 and the real compound poscons in column 24.
* ``compound``: ``Metadata_JCP2022, Metadata_InChIKey, Metadata_InChI, Metadata_SMILES`` for
  every compound id used, with generated structure strings of the real shapes.

TARGET2 plates share one layout (as the real TARGET2 plates do), so they replicate each other.

>>> import pandas as pd
>>> plates = pd.DataFrame({"Metadata_Source": ["source_4"], "Metadata_Plate": ["BR00121437"],
...                        "Metadata_PlateType": ["TARGET2"]})
>>> pc = pd.DataFrame({"Metadata_JCP2022": ["JCP2022_033924", "JCP2022_037716"],
...                    "Metadata_pert_type": ["negcon", "poscon"], "Metadata_modality": ["compound"] * 2})
>>> well = build_well(plates, perturbation_control=pc)
>>> len(well), well.columns.tolist()
(384, ['Metadata_Source', 'Metadata_Plate', 'Metadata_Well', 'Metadata_JCP2022'])
>>> well.Metadata_JCP2022.iloc[0]
'JCP2022_033924'
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import replace
from importlib import resources

import numpy as np
import pandas as pd

from .pins import Pin, Release, default_release, git_blob_id, write_pin_table
from .tables import decode_table

__all__ = [
    "WELL_COLUMNS",
    "COMPOUND_COLUMNS",
    "WELLS",
    "build_well",
    "build_compound",
    "packaged_file",
    "release_files",
    "pin_table",
    "mirror_files",
]

WELL_COLUMNS = ("Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_JCP2022")
COMPOUND_COLUMNS = ("Metadata_JCP2022", "Metadata_InChIKey", "Metadata_InChI", "Metadata_SMILES")
#: The 384 wells of a plate, A01..P24, row by row.
WELLS: tuple[str, ...] = tuple(f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25))
_DMSO = "JCP2022_033924"
_COMPOUND_TYPES = ("COMPOUND", "COMPOUND_EMPTY", "TARGET1", "TARGET2", "POSCON8", "DMSO")


def _controls(pc: pd.DataFrame | None, modality: str, kind: str) -> list[str]:
    if pc is None or pc.empty:
        return [_DMSO] if (modality, kind) == ("compound", "negcon") else []
    sel = pc[(pc.Metadata_modality == modality) & (pc.Metadata_pert_type == kind)]
    return sorted(sel.Metadata_JCP2022.astype(str))


def _compound_ids(key: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return [f"JCP2022_{i:06d}" for i in rng.choice(np.arange(100, 99000), n, replace=False)]


def _layout(
    plate_type: str,
    key: str,
    seed: int,
    orf: list[str],
    crispr: list[str],
    pc: pd.DataFrame | None,
) -> list[str]:
    """One JCP2022 id per well (A01..P24) for a plate of ``plate_type``."""
    cols = np.array([int(w[1:]) for w in WELLS])
    if plate_type in ("ORF", "CRISPR"):
        modality = plate_type.lower()
        pool = orf if plate_type == "ORF" else crispr
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        ids = list(rng.choice(pool, len(WELLS), replace=len(pool) < len(WELLS))) if pool else []
        neg = _controls(pc, modality, "negcon") or ids[:1]
        out = [neg[i % len(neg)] if c == 1 else ids[i] for i, c in enumerate(cols)]
        return [str(x) for x in out]
    if plate_type == "DMSO":
        return [_DMSO] * len(WELLS)
    # compound-like plates; TARGET2 plates share their layout (keyed by plate type only)
    ids = _compound_ids(plate_type if plate_type.startswith("TARGET") else key, len(WELLS), seed)
    neg = _controls(pc, "compound", "negcon") or [_DMSO]
    pos = _controls(pc, "compound", "poscon") or [_DMSO]
    out = []
    for i, c in enumerate(cols):
        if c in (1, 2):
            out.append(neg[i % len(neg)])
        elif c == 24:
            out.append(pos[(i // 24) % len(pos)])
        else:
            out.append(ids[i])
    return out


def build_well(
    plates: pd.DataFrame,
    *,
    orf: pd.DataFrame | None = None,
    crispr: pd.DataFrame | None = None,
    perturbation_control: pd.DataFrame | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A ``well`` table for ``plates`` (columns ``Metadata_Source, Metadata_Plate``, and
    ``Metadata_PlateType``), all 384 wells each, sorted like the real file."""
    orf_ids = sorted(orf.Metadata_JCP2022.astype(str)) if orf is not None else []
    crispr_ids = sorted(crispr.Metadata_JCP2022.astype(str)) if crispr is not None else []
    if perturbation_control is not None:  # controls come from perturbation_control
        controls = set(perturbation_control.Metadata_JCP2022.astype(str))
        orf_ids = [i for i in orf_ids if i not in controls]
        crispr_ids = [i for i in crispr_ids if i not in controls]
    parts = []
    for row in plates.itertuples(index=False):
        ptype = str(getattr(row, "Metadata_PlateType", "COMPOUND"))
        key = f"{row.Metadata_Source}/{row.Metadata_Plate}"
        ids = _layout(ptype, key, seed, orf_ids, crispr_ids, perturbation_control)
        parts.append(
            pd.DataFrame(
                {
                    "Metadata_Source": str(row.Metadata_Source),
                    "Metadata_Plate": str(row.Metadata_Plate),
                    "Metadata_Well": list(WELLS),
                    "Metadata_JCP2022": ids,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=WELL_COLUMNS)
    return out.sort_values(list(WELL_COLUMNS[:3]), kind="stable").reset_index(drop=True)


def _inchikey(jcp: str) -> str:
    h = hashlib.sha256(jcp.encode()).hexdigest().upper()
    letters = "".join(chr(65 + int(c, 16) % 26) for c in h)
    return f"{letters[:14]}-{letters[14:22]}SA-N"


def build_compound(ids: list[str] | pd.Series) -> pd.DataFrame:
    """A ``compound`` table for the compound ids ``ids`` (``JCP2022_0xxxxx``), sorted.

    >>> build_compound(["JCP2022_033924"]).columns.tolist()
    ['Metadata_JCP2022', 'Metadata_InChIKey', 'Metadata_InChI', 'Metadata_SMILES']
    """
    uniq = sorted({str(i) for i in ids if str(i).startswith("JCP2022_0")})
    rows = []
    for jcp in uniq:
        n = int(jcp.rsplit("_", 1)[1])
        chain = "C" * (1 + n % 7)
        smiles = f"{chain}(=O)N{'c1ccccc1' if n % 2 else 'O'}"
        rows.append((jcp, _inchikey(jcp), f"InChI=1S/C{1 + n % 7}H{3 + n % 11}NO/demo{n}", smiles))
    return pd.DataFrame(rows, columns=list(COMPOUND_COLUMNS))


#: Packaged byte-for-byte copies of the pinned release's small files (``data/SOURCES.md``).
_PACKAGED = {"plate": "cpg0016_plate.csv.gz"}
_BUILT = ("well", "compound")


def packaged_file(table: str) -> bytes:
    """The real bytes of a small table of the pinned release, as packaged with intake-cpg.

    >>> from intake_cpg.metadata.pins import default_release
    >>> import hashlib
    >>> hashlib.sha256(packaged_file("orf")).hexdigest() == default_release().pin("orf").sha256
    True
    """
    pin = default_release().pin(table)
    if table in _BUILT:
        raise ValueError(f"{pin.file} is not packaged (large); build it with release_files()")
    name = _PACKAGED.get(table, f"jump_metadata/{pin.file}")
    return resources.files("intake_cpg").joinpath("data", name).read_bytes()


def _gz_csv(df: pd.DataFrame) -> bytes:
    text = df.to_csv(index=False, lineterminator="\n").encode()
    return gzip.compress(text, compresslevel=6, mtime=0)


def release_files(plates: pd.DataFrame, *, seed: int = 0) -> dict[str, bytes]:
    """Every file of the pinned release's ``metadata/`` folder for a gallery holding ``plates``:
    the real small files, and ``well.csv.gz``/``compound.csv.gz`` built for ``plates``."""
    release = default_release()
    out = {release.pin(t).file: packaged_file(t) for t in release.tables if t not in _BUILT}

    def real(table: str) -> pd.DataFrame:
        return decode_table(out[release.pin(table).file], release.pin(table).file)

    well = build_well(
        plates,
        orf=real("orf"),
        crispr=real("crispr"),
        perturbation_control=real("perturbation_control"),
        seed=seed,
    )
    out["well.csv.gz"] = _gz_csv(well)
    out["compound.csv.gz"] = _gz_csv(build_compound(well.Metadata_JCP2022))
    return dict(sorted(out.items()))


def pin_table(files: Mapping[str, bytes], name: str, base: Release | None = None) -> str:
    """A pin table (CSV, :func:`~intake_cpg.metadata.pins.read_pin_table`) for ``files``, at
    the commit of ``base`` under the release name ``name``: the digests of these bytes."""
    base = base or default_release()
    pins = {}
    for table in base.tables:
        file = base.pin(table).file
        data = files[file]
        pins[table] = Pin(
            table, file, len(data), hashlib.sha256(data).hexdigest(), git_blob_id(data)
        )
    return write_pin_table(replace(base, name=name, pins=pins))


#: Release name of a mirror whose well/compound tables were built for a gallery's plates.
BUILT_RELEASE_SUFFIX = "-built"


def mirror_files(plates: pd.DataFrame, *, seed: int = 0) -> dict[str, bytes]:
    """A mirror for a gallery holding ``plates``: ``metadata/<file>`` for every table and
    ``pins.csv``, the pin table of exactly these bytes (release ``v0.13-built``: the pinned
    commit's real small files, well and compound built), to pass as ``metadata_release``.
    """
    files = release_files(plates, seed=seed)
    base = default_release()
    out = {f"metadata/{name}": data for name, data in files.items()}
    out["pins.csv"] = pin_table(files, base.name + BUILT_RELEASE_SUFFIX, base).encode()
    return out
