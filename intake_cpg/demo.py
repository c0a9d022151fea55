"""Build a small but realistic Cell Painting Gallery into any fsspec location.

The demo gallery is what the quick start opens and what the tests and benchmarks read. It is
made from real material packaged in ``intake_cpg/data/`` (the cpg0016 plate list, the 4,762
real feature names, real cpg0004 platemaps, the JUMP manifest v0.13 and two trimmed real
profiles) and laid out exactly like the public bucket:

* ``cpg0016-jump/``: several sources with real batch and plate names (all-digit plates in
  ``source_2``, dashed plates in ``source_13``, a ``JUMPCPE-...`` batch in ``source_5``), one
  ``<plate>.parquet`` per plate, and for a few plates ``load_data_csv``, ``analysis``,
  ``backend``, ``workspace_dl`` and illumination files. ``source_2`` uses a different feature
  subset (some columns missing, some extra), as real sources on other CellProfiler versions do;
* ``cpg0004-lincs/broad/``: pycytominer ``.csv.gz`` files per variant per plate, with the real
  ``barcode_platemap.csv`` and platemap;
* ``cpg0016-jump-assembled/source_all/workspace/profiles_assembled/<SUBSET>/<version>/<variant>.parquet``
  and a manifest in the real JSON list shape whose ``etag`` values are the true S3 ETags;
* things that are not projects: ``index.html`` and a ``dev-scratch/`` prefix.

Every number is drawn from a generator seeded by ``seed``, so two builds with the same arguments
write byte-identical objects. Every ``Metadata_*`` value is a string.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     demo = build_demo(folder)
>>> "cpg0016-jump" in demo.summary()
True
>>> sorted(demo.plates.project.unique())
['cpg0004-lincs', 'cpg0016-jump']
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import json
import logging
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .diskcache import atomic_write
from .errors import ParameterError, StorageError
from .etag import compute_etag
from .layout import format_key
from .metadata.synthetic import WELLS
from .storage import GALLERY_BUCKET, filesystem

log = logging.getLogger(__name__)

__all__ = [
    "DemoGallery",
    "build_demo",
    "feature_names",
    "select_features",
    "mixed_features",
    "plate_profile",
    "PART_SIZE",
    "WELLS",
    "add_arguments",
    "build_from_args",
    "main",
]

#: Part size of the multipart uploads the demo makes (and assumes for local ETags).
PART_SIZE = 5 * 2**20
#: Number of real feature names used when ``n_features`` is None.
DEFAULT_N_FEATURES = 60

_CHANNELS = ("DNA", "AGP", "ER", "Mito", "RNA")
_CPCNN = "cpcnn_zenodo_7114558"
_EFFNET = "efficientnet_v2_imagenet21k_s_feature_vector_2_0260bc96"
_MIXED_SOURCE = "source_2"
_LINCS_BATCH = "2016_04_01_a549_48hr_batch1"
_LINCS_VARIANTS: tuple[str | None, ...] = (
    None,
    "augmented",
    "normalized",
    "normalized_negcon",
    "normalized_feature_select_negcon_batch",
)

# (source, batch, plates that must come first): real names from plate.csv.gz. The first group is
# the one that also gets the per-stage products (load_data, analysis, backend, deep learning).
_CPG0016_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("source_4", "2021_04_26_Batch1", ("BR00117037", "BR00117038")),
    ("source_4", "2021_05_31_Batch2", ()),
    ("source_2", "20210607_Batch_2", ()),
    ("source_5", "JUMPCPE-20210628-Run03_20210629_064133", ("APTJUM122",)),
    ("source_13", "20220914_Run1", ("CP-CC9-R1-04",)),
)
_STAGE_SOURCES = ("source_4", "source_13")  # first batch of these gets load_data and analysis
# Extra TARGET2 plates (profiles only) for the JUMP sample notebook's "two TARGET2 plates per
# source": with source_4's BR00121437, three TARGET2 plates in two sources (all TARGET2 plates
# share one layout, so they replicate each other).
_TARGET2_PLATES: tuple[tuple[str, str, str], ...] = (
    ("source_13", "20220914_Run1", "CP-CC9-R1-29"),
    ("source_13", "20221009_Run2", "CP-CC9-R2-29"),
)
#: Top-level folder of the demo's mirror of the JUMP datasets metadata (not a project):
#: ``metadata/<file>`` for every table and ``pins.csv``, the pin table of those bytes.
METADATA_PREFIX = "jump-metadata"

# (SUBSET, version, variant, manifest subset or None, "features" | "embedding")
_ASSEMBLED: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("ORF", "v1.0", "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony", None, "X"),
    ("ORF", "v1.0a", "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony", "orf", "X"),
    ("ORF", "v1.0a", "profiles_wellpos_cc_var_mad_outlier", "orf_interpretable", "features"),
    (
        "CRISPR",
        "v1.0a",
        "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony_PCA_corrected",
        "crispr",
        "X",
    ),
    ("CRISPR", "v1.0a", "profiles_wellpos_cc_var_mad_outlier", "crispr_interpretable", "features"),
    ("COMPOUND", "v1.0", "profiles_var_mad_int_featselect_harmony", "compound", "X"),
    ("COMPOUND", "v1.0", "profiles_var_mad_int", "compound_interpretable", "features"),
    ("ALL", "v1.0b", "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony", "all", "X"),
    (
        "ALL",
        "v1.0b",
        "profiles_wellpos_cc_var_mad_outlier_featselect",
        "all_interpretable",
        "features",
    ),
)
#: The assembled profile that becomes a multipart object with ``large_object=True``.
LARGE_OBJECT_VARIANT = ("ALL", "v1.0b", "profiles_wellpos_cc_var_mad_outlier_featselect")
_LARGE_N_FEATURES = 737  # about what the real feature selection keeps
_LARGE_N_PLATES = 6

_MANIFEST_KEY = "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/manifest.json"


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# packaged reference material (pure, cached)
# --------------------------------------------------------------------------------------------


def _data(name: str) -> bytes:
    return resources.files("intake_cpg").joinpath("data", name).read_bytes()


@functools.cache
def feature_names() -> tuple[str, ...]:
    """The 4,762 real cpg0016 CellProfiler feature names, in the recipe's order.

    >>> names = feature_names()
    >>> len(names), names[0]
    (4762, 'Cells_AreaShape_Area')
    """
    text = gzip.decompress(_data("cpg0016_feature_columns.txt.gz")).decode()
    return tuple(line for line in text.splitlines() if line)


@functools.cache
def _plate_list() -> pd.DataFrame:
    """cpg0016 plates (real ``plate.csv.gz``), every column a string."""
    return pd.read_csv(io.BytesIO(_data("cpg0016_plate.csv.gz")), compression="gzip", dtype=str)


@functools.cache
def _real_profile(plate: str) -> pd.DataFrame:
    """A trimmed real per-plate profile from the JUMP recipe's fixtures."""
    return pq.read_table(io.BytesIO(_data(f"profiles/{plate}.parquet"))).to_pandas()


_REAL_PLATES = ("BR00117037", "BR00117038")
_REAL_COLUMNS = (
    "Cells_AreaShape_Zernike_5_1",
    "Cells_AreaShape_Zernike_5_3",
    "Cells_AreaShape_Zernike_5_5",
)


def select_features(n_features: int | None = None) -> tuple[str, ...]:
    """Real feature names for a demo of ``n_features`` columns (None: the small default).

    Names are taken evenly across the whole list, so every compartment and measurement family
    appears even in a narrow demo; ``4762`` gives every name.

    >>> len(select_features()), len(select_features(4762))
    (60, 4762)
    >>> select_features(3)
    ('Cells_AreaShape_Area', 'Cytoplasm_Texture_SumVariance_AGP_10_03_256', 'Nuclei_Texture_Variance_RNA_5_03_256')
    """
    names = feature_names()
    n = DEFAULT_N_FEATURES if n_features is None else n_features
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(names):
        raise ParameterError(
            f"n_features={n_features!r} is not valid: expected None (a {DEFAULT_N_FEATURES}-column "
            f"demo) or an integer from 1 to {len(names)} (full width); try n_features=None"
        )
    if n_features is None:  # keep the columns the packaged real profiles carry
        real = [names.index(c) for c in _REAL_COLUMNS]
        spread = np.linspace(0, len(names) - 1, n - len(real)).round().astype(int)
        idx = np.unique(np.concatenate([spread, real]))
    else:
        idx = np.unique(np.linspace(0, len(names) - 1, n).round().astype(int))
    return tuple(names[i] for i in idx)


def mixed_features(features: Sequence[str]) -> tuple[str, ...]:
    """The feature columns of the demo's odd source: some columns missing, some extra.

    Every seventh feature is dropped and a few Brightfield versions of DNA features are added
    (real sources imaged with a brightfield channel carry such columns).

    >>> base = select_features()
    >>> mixed = mixed_features(base)
    >>> len(set(base) - set(mixed)) > 0, sorted(set(mixed) - set(base))[0]
    (True, 'Cells_Correlation_Manders_AGP_Brightfield')
    """
    kept = [f for i, f in enumerate(features) if i % 7 != 3]
    present = set(features)
    extra: list[str] = []
    want = max(3, len(features) // 50)
    for name in feature_names():
        if len(extra) >= want:
            break
        if "_DNA" in name and name in present:
            alt = name.replace("_DNA", "_Brightfield", 1)
            if alt not in present and alt not in extra:
                extra.append(alt)
    if len(extra) < want:  # narrow demos: take DNA features from the full list
        for name in feature_names():
            if len(extra) >= want:
                break
            alt = name.replace("_DNA", "_Brightfield", 1)
            if "_DNA" in name and alt not in present and alt not in extra:
                extra.append(alt)
    return tuple(kept + extra)


def _seed_of(seed: int, *parts: str) -> list[int]:
    return [seed, *(zlib.crc32(p.encode()) for p in parts)]


def _scales(features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Location and scale per feature from its measurement family (plausible magnitudes)."""
    loc = np.zeros(len(features), dtype=np.float32)
    scale = np.ones(len(features), dtype=np.float32)
    rules = (  # first match wins
        ("Location", 500.0, 250.0),
        ("_Count", 40.0, 8.0),
        ("AreaShape_Area", 900.0, 200.0),
        ("AreaShape_Perimeter", 120.0, 25.0),
        ("Intensity", 0.12, 0.04),
        ("Correlation", 0.5, 0.2),
        ("Granularity", 2.0, 0.8),
        ("RadialDistribution", 0.3, 0.1),
        ("Neighbors", 6.0, 2.0),
    )
    for i, name in enumerate(features):
        for token, mu, sd in rules:
            if token in name:
                loc[i], scale[i] = mu, sd
                break
    return loc, scale


@functools.lru_cache(maxsize=8)
def _base_matrix(features: tuple[str, ...], seed: int) -> np.ndarray:
    """Standard-normal (384, n) float32 matrix shared by every plate with these features."""
    rng = np.random.default_rng(_seed_of(seed, "base", str(len(features))))
    z = rng.standard_normal((len(WELLS), len(features)), dtype=np.float32)
    return np.asfortranarray(z)


def _plate_values(features: tuple[str, ...], plate: str, seed: int) -> np.ndarray:
    """(384, n) float32 values of one plate: shared base, a per-plate shift, real magnitudes."""
    z = _base_matrix(features, seed)
    rng = np.random.default_rng(_seed_of(seed, "plate", plate))
    shift = rng.normal(0.0, 0.25, len(features)).astype(np.float32)
    loc, scale = _scales(features)
    out = np.asfortranarray((z + shift) * scale + loc, dtype=np.float32)
    if plate in _REAL_PLATES:  # overlay the real values the JUMP recipe ships for these plates
        real = _real_profile(plate).set_index("Metadata_Well").reindex(list(WELLS))
        for j, name in enumerate(features):
            if name in real.columns:
                out[:, j] = real[name].to_numpy(dtype=np.float32)
    return out


def _features_for(source: str, features: tuple[str, ...]) -> tuple[str, ...]:
    return mixed_features(features) if source == _MIXED_SOURCE else features


def plate_profile(
    source: str, plate: str, n_features: int | None = None, *, seed: int = 0
) -> pa.Table:
    """The exact table the demo writes as ``<plate>.parquet`` for a cpg0016 plate.

    Three string columns ``Metadata_Source, Metadata_Plate, Metadata_Well`` (wells A01..P24)
    followed by float32 features (the mixed source's subset for ``source_2``).

    >>> t = plate_profile("source_2", "1053601756")
    >>> t.column_names[:3], t.num_rows, str(t.schema.field("Metadata_Plate").type)
    (['Metadata_Source', 'Metadata_Plate', 'Metadata_Well'], 384, 'string')
    """
    features = _features_for(source, select_features(n_features))
    return _profile_table(source, plate, features, seed)


def _profile_table(source: str, plate: str, features: tuple[str, ...], seed: int) -> pa.Table:
    values = _plate_values(features, plate, seed)
    n = len(WELLS)
    arrays: list[pa.Array] = [
        pa.array([source] * n, pa.string()),
        pa.array([plate] * n, pa.string()),
        pa.array(WELLS, pa.string()),
    ]
    arrays += [pa.array(values[:, j]) for j in range(values.shape[1])]
    names = ["Metadata_Source", "Metadata_Plate", "Metadata_Well", *features]
    return pa.Table.from_arrays(arrays, names=names)


# --------------------------------------------------------------------------------------------
# serialisation helpers (deterministic bytes)
# --------------------------------------------------------------------------------------------


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _csv_bytes(df: pd.DataFrame, *, gz: bool = False) -> bytes:
    data = df.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode()
    return gzip.compress(data, compresslevel=6, mtime=0) if gz else data


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _string_table(df: pd.DataFrame) -> pa.Table:
    """All-string frame as an Arrow table of ``string`` (not ``large_string``) columns."""
    return pa.table({c: pa.array(df[c].tolist(), pa.string()) for c in df.columns})


def _strings(n: int, value: str) -> pa.Array:
    return pa.array([value] * n, pa.string())


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # holds a DataFrame: compare fields, not galleries
class DemoGallery:
    """What :func:`build_demo` wrote.

    ``keys`` are relative to ``root``; ``etags`` and ``sizes`` give, per key, the S3 ETag
    (single-part MD5, or the multipart form for the objects uploaded in parts) and the byte
    size. ``plates`` has one row per per-plate profile file (``project, source, batch, plate,
    variant, key``).
    """

    root: str
    keys: tuple[str, ...]
    manifest_key: str
    plates: pd.DataFrame
    etags: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    multipart_keys: tuple[str, ...] = ()
    metadata_prefix: str = METADATA_PREFIX

    @property
    def metadata_root(self) -> str:
        """The mirror of the JUMP metadata tables (``metadata_root=``) for the demo's plates."""
        return self.url(f"{self.metadata_prefix}/metadata")

    @property
    def metadata_release(self) -> str:
        """The pin table of that mirror (``metadata_release=``)."""
        return self.url(f"{self.metadata_prefix}/pins.csv")

    def url(self, key: str) -> str:
        """Full URL (or path) of a root-relative key."""
        return f"{self.root.rstrip('/')}/{key}"

    @property
    def total_bytes(self) -> int:
        """Bytes written in all."""
        return sum(self.sizes.values())

    def summary(self) -> str:
        """A few lines saying what is where."""
        lines = [
            f"demo gallery at {self.root}: {len(self.keys)} objects, "
            f"{self.total_bytes / 2**20:.1f} MiB"
        ]
        tops: dict[str, list[int]] = {}
        for key in self.keys:
            top = key.split("/", 1)[0]
            entry = tops.setdefault(top, [0, 0])
            entry[0] += 1
            entry[1] += self.sizes.get(key, 0)
        for top, (count, size) in sorted(tops.items()):
            line = f"  {top}: {count} objects, {size / 2**20:.2f} MiB"
            sel = self.plates[self.plates.project == top]
            if len(sel):
                line += (
                    f"; {sel.source.nunique()} sources, {sel.batch.nunique()} batches, "
                    f"{sel.plate.nunique()} plates"
                )
            lines.append(line)
        lines.append(f"  manifest: {self.manifest_key}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


class _Writer:
    """Writes objects under one root and records their sizes and S3 ETags (thread safe)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root_path: str, target: str):
        self.fs = fs
        self.root_path = root_path.rstrip("/")
        self.target = target
        self.local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        self.etags: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.multipart: list[str] = []

    def put(self, key: str, data: bytes, *, multipart: bool = False) -> None:
        path = f"{self.root_path}/{key}"
        try:
            if self.local:  # whole or not at all (a temporary file renamed into place)
                atomic_write(path, data)
            elif multipart:
                # write part-size slices so s3fs uploads exactly PART_SIZE parts (the last shorter)
                with self.fs.open(path, "wb", block_size=PART_SIZE) as f:
                    for start in range(0, len(data), PART_SIZE):
                        f.write(data[start : start + PART_SIZE])
            else:
                self.fs.pipe_file(path, data)
        except (OSError, ValueError) as exc:
            raise StorageError(
                f"could not write demo object {key!r} under {self.target!r}: {exc}. "
                "Check that the location exists and is writable (for S3: the bucket exists and "
                "storage_options carry credentials)."
            ) from exc
        self.etags[key] = compute_etag(data, PART_SIZE if multipart else None)
        self.sizes[key] = len(data)
        if multipart:
            self.multipart.append(key)


def _root_of(fs: fsspec.AbstractFileSystem, root_path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return root_path
    return f"{protocol}://{root_path}"


def _select_cpg0016(
    plates_per_batch: int, all_plates: bool, with_extra: bool = False
) -> pd.DataFrame:
    """Rows (source, batch, plate, plate_type) of the cpg0016 plates the demo writes
    (``with_extra``: and the extra TARGET2 plates, which get profiles only)."""
    table = _plate_list()
    if all_plates:
        rows = table
    else:
        parts = []
        for source, batch, first in _CPG0016_GROUPS:
            grp = table[(table.Metadata_Source == source) & (table.Metadata_Batch == batch)]
            order = list(first) + [p for p in grp.Metadata_Plate if p not in first]
            chosen = order[: max(plates_per_batch, 1)]
            parts.append(grp.set_index("Metadata_Plate").loc[chosen].reset_index())
        rows = pd.concat(parts, ignore_index=True)
        extra = table.set_index(["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
        extra = extra.loc[list(_TARGET2_PLATES)].reset_index()
        rows = pd.concat([rows, extra], ignore_index=True) if with_extra else rows
    out = pd.DataFrame(
        {
            "source": rows.Metadata_Source.to_numpy(),
            "batch": rows.Metadata_Batch.to_numpy(),
            "plate": rows.Metadata_Plate.to_numpy(),
            "plate_type": rows.Metadata_PlateType.to_numpy(),
        }
    )
    return out.astype(str)


def _load_data_table(source: str, batch: str, plate: str, sites: int) -> pd.DataFrame:
    """CellProfiler LoadData table; paths name the public bucket, as the real files do."""
    wells = [w for w in WELLS for _ in range(sites)]
    site_ids = [str(s) for _ in WELLS for s in range(1, sites + 1)]
    data: dict[str, Any] = {
        "Metadata_Source": source,
        "Metadata_Batch": batch,
        "Metadata_Plate": plate,
        "Metadata_Well": wells,
        "Metadata_Site": site_ids,
    }
    root = f"s3://{GALLERY_BUCKET}"
    image_dir = f"{root}/cpg0016-jump/{source}/images/{batch}/images/{plate}__Measurement1/Images/"
    illum_dir = f"{root}/cpg0016-jump/{source}/images/{batch}/illum/{plate}/"
    for k, ch in enumerate(_CHANNELS, 1):
        data[f"FileName_Orig{ch}"] = [
            f"r{ord(w[0]) - 64:02d}c{int(w[1:]):02d}f{int(s):02d}p01-ch{k}sk1fk1fl1.tiff"
            for w, s in zip(wells, site_ids, strict=True)
        ]
        data[f"PathName_Orig{ch}"] = image_dir
    for ch in _CHANNELS:
        data[f"FileName_Illum{ch}"] = f"{plate}_Illum{ch}.npy"
        data[f"PathName_Illum{ch}"] = illum_dir
    return pd.DataFrame(data).astype(str)


def _strip(features: Iterable[str], compartment: str) -> list[str]:
    prefix = compartment + "_"
    return [f for f in features if f.startswith(prefix)]


def _analysis_tables(
    source: str, plate: str, well: str, site: int, features: tuple[str, ...], seed: int
) -> dict[str, pd.DataFrame]:
    """CellProfiler per-site output: Image.csv plus one table per object (prefix-free columns)."""
    rng = np.random.default_rng(_seed_of(seed, "analysis", plate, well, str(site)))
    n_cells = int(rng.integers(12, 30))
    meta = {
        "Metadata_Source": source,
        "Metadata_Plate": plate,
        "Metadata_Well": well,
        "Metadata_Site": str(site),
    }
    out: dict[str, pd.DataFrame] = {}
    for comp in ("Cells", "Nuclei"):
        cols = _strip(features, comp)
        loc, scale = _scales(cols)
        values = rng.standard_normal((n_cells, len(cols))).astype(np.float32) * scale + loc
        df = pd.DataFrame({"ImageNumber": 1, "ObjectNumber": np.arange(1, n_cells + 1), **meta})
        df["Location_Center_X"] = rng.uniform(0, 1080, n_cells).round(2)
        df["Location_Center_Y"] = rng.uniform(0, 1080, n_cells).round(2)
        if comp == "Cells":
            df["Parent_Nuclei"] = np.arange(1, n_cells + 1)
        feats = pd.DataFrame(values, columns=[c[len(comp) + 1 :] for c in cols])
        out[comp] = pd.concat([df, feats], axis=1)
    image_cols = _strip(features, "Image")
    loc, scale = _scales(image_cols)
    img = pd.DataFrame({"ImageNumber": [1], **{k: [v] for k, v in meta.items()}})
    img["Count_Cells"] = n_cells
    img["Count_Nuclei"] = n_cells
    for k, ch in enumerate(_CHANNELS, 1):
        img[f"FileName_Orig{ch}"] = (
            f"r{ord(well[0]) - 64:02d}c{int(well[1:]):02d}f{site:02d}p01-ch{k}sk1fk1fl1.tiff"
        )
    values = rng.standard_normal((1, len(image_cols))).astype(np.float32) * scale + loc
    out["Image"] = pd.concat(
        [img, pd.DataFrame(values, columns=[c[len("Image_") :] for c in image_cols])], axis=1
    )
    return out


def _dl_profile_table(source: str, batch: str, plate: str, model: str, seed: int) -> pa.Table:
    rng = np.random.default_rng(_seed_of(seed, "dl", model, plate))
    n = len(WELLS)
    arrays: dict[str, pa.Array] = {
        "source": _strings(n, source),
        "batch": _strings(n, batch),
        "plate": _strings(n, plate),
        "well": pa.array(WELLS, pa.string()),
    }
    if model == _CPCNN:  # one float32 vector per well
        dim = 16
        flat = rng.normal(2.0, 0.5, n * dim).astype(np.float32)
        arrays["all_emb"] = pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim), flat)
    else:  # one float64 vector per channel
        dim = 8
        for ch in ("agp", "dna", "er", "mito", "rna"):
            flat = rng.normal(0.3, 0.2, n * dim)
            arrays[f"{ch}_emb"] = pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim), flat)
    return pa.table(arrays)


def _embedding_table(
    source: str, batch: str, plate: str, well: str, site: int, seed: int
) -> pa.Table:
    rng = np.random.default_rng(_seed_of(seed, "emb", plate, well, str(site)))
    n = int(rng.integers(8, 16))
    dim = 16
    flat = rng.normal(2.0, 0.5, n * dim).astype(np.float32)
    return pa.table(
        {
            "source": _strings(n, source),
            "batch": _strings(n, batch),
            "plate": _strings(n, plate),
            "well": _strings(n, well),
            "site": _strings(n, str(site)),
            "object_number": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "all_emb": pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim), flat),
        }
    )


def _jcp_ids(plates: pd.DataFrame) -> list[str]:
    """The JCP2022 ids of the wells of ``plates`` (A01..P24 each), as the demo's well table says."""
    well = _demo_well(plates)
    return (
        well.set_index(["Metadata_Plate", "Metadata_Well"])
        .Metadata_JCP2022.loc[[(p, w) for p in plates.plate for w in WELLS]]
        .tolist()
    )


def _demo_well(plates: pd.DataFrame) -> pd.DataFrame:
    """The demo's ``well`` table for ``plates`` (columns source, plate, plate_type)."""
    from .metadata.synthetic import build_well, packaged_file
    from .metadata.tables import decode_table

    frame = pd.DataFrame(
        {
            "Metadata_Source": plates.source.to_numpy(),
            "Metadata_Plate": plates.plate.to_numpy(),
            "Metadata_PlateType": plates.plate_type.to_numpy(),
        }
    )
    real = {t: decode_table(packaged_file(t), f"{t}.csv") for t in ("perturbation_control",)}
    real |= {t: decode_table(packaged_file(t), f"{t}.csv.gz") for t in ("orf", "crispr")}
    return build_well(frame, **real)


def _assembled_table(
    plates: pd.DataFrame, features: tuple[str, ...], kind: str, seed: int, tag: str
) -> pa.Table:
    """Assembled profiles: the wells of ``plates`` with a JCP2022 id and features or X_1..X_k."""
    n = len(WELLS) * len(plates)
    sources = np.repeat(plates.source.to_numpy(), len(WELLS)).tolist()
    wells = list(WELLS) * len(plates)
    cols: dict[str, pa.Array] = {
        "Metadata_Source": pa.array(sources, pa.string()),
        "Metadata_Plate": pa.array(
            np.repeat(plates.plate.to_numpy(), len(WELLS)).tolist(), pa.string()
        ),
        "Metadata_Well": pa.array(wells, pa.string()),
        "Metadata_JCP2022": pa.array(_jcp_ids(plates), pa.string()),
    }
    names = (
        list(features)
        if kind == "features"
        else [f"X_{i}" for i in range(1, max(3, len(features) // 4) + 1)]
    )
    rng = np.random.default_rng(_seed_of(seed, "assembled", tag))
    values = np.asfortranarray(rng.standard_normal((n, len(names)), dtype=np.float32))
    for j, name in enumerate(names):
        cols[name] = pa.array(values[:, j])
    return pa.table(cols)


def _index_html(keys: Iterable[str]) -> bytes:
    tops = sorted({k.split("/", 1)[0] + "/" for k in keys if "/" in k})
    items = "\n".join(f'    <li><a href="{t}">{t}</a></li>' for t in tops)
    return (
        "<!DOCTYPE html>\n<html><head><title>Cell Painting Gallery (demo)</title></head>\n"
        f"<body>\n  <h1>Cell Painting Gallery (demo)</h1>\n  <ul>\n{items}\n  </ul>\n"
        "</body></html>\n"
    ).encode()


def build_demo(
    target: str = "demo-gallery",
    storage_options: dict | None = None,
    *,
    n_features: int | None = None,
    plates_per_batch: int = 2,
    all_plates: bool = False,
    analysis_sites: int = 2,
    seed: int = 0,
    large_object: bool = False,
    max_workers: int | None = None,
    jump_metadata: bool = False,
) -> DemoGallery:
    """Write the demo gallery into ``target`` (a local folder or any fsspec URL).

    Args:
        target: where to write (``"demo-gallery"``, ``"/tmp/g"``, ``"s3://bucket"``); an S3
            bucket must exist and ``storage_options`` must carry credentials that can write.
        storage_options: options for ``target``, as :func:`intake_cpg.storage.filesystem`
            takes them (an S3 target needs credentials in them: without, S3 is anonymous).
        n_features: feature columns of the cpg0016 per-plate profiles: None for a small
            realistic subset (60 real names), 4762 for full width (4,765 columns with the
            metadata). The other products always use the small subset.
        plates_per_batch: plates written per demo batch (ignored with ``all_plates``).
        all_plates: write a ``<plate>.parquet`` for every one of the 2,525 cpg0016 plates.
        analysis_sites: sites per well in ``load_data`` and the ``analysis`` folders.
        seed: seed of every generated number; same arguments, same bytes.
        large_object: also make one assembled profile larger than 5 MiB and upload it in
            5 MiB parts, so the manifest holds a multipart ETag (``<hex>-2``).
        max_workers: threads writing in parallel (default ``min(8, 2 * cpus)``).
        jump_metadata: also write a mirror of the JUMP datasets metadata for the demo's
            cpg0016 plates under ``jump-metadata/`` (``metadata/<file>`` and ``pins.csv``,
            see :attr:`DemoGallery.metadata_root`); the real metadata is not in the bucket.

    Returns:
        A :class:`DemoGallery` describing what was written.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     demo = build_demo(folder, plates_per_batch=1, seed=1)
    >>> any(k.endswith("/1053601756/1053601756.parquet") for k in demo.keys)
    True
    """
    for name, value in (("plates_per_batch", plates_per_batch), ("analysis_sites", analysis_sites)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(
                f"{name}={value!r} is not valid: expected a positive integer; try {name}=2"
            )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed={seed!r} is not valid: expected an integer >= 0; try seed=0")
    features = select_features(n_features)  # the cpg0016 per-plate profiles
    small = select_features(None)  # everything else stays narrow, whatever n_features is

    if "://" not in target and not target.startswith("file:"):
        target = os.path.abspath(target)
    fs, root_path = filesystem(target, storage_options)
    writer = _Writer(fs, root_path, target)
    root = _root_of(fs, writer.root_path)
    log.info(
        "building demo gallery in %s (features=%d, all_plates=%s)", root, len(features), all_plates
    )

    tasks: list[Callable[[], None]] = []
    plate_rows: list[dict[str, str | None]] = []

    # ---- cpg0016-jump per-plate profiles
    project = "cpg0016-jump"
    selected = _select_cpg0016(plates_per_batch, all_plates, with_extra=True)
    for row in selected.itertuples(index=False):
        key = format_key(
            "profiles",
            project=project,
            source=row.source,
            batch=row.batch,
            plate=row.plate,
            extension="parquet",
        )
        plate_rows.append(
            {
                "project": project,
                "source": row.source,
                "batch": row.batch,
                "plate": row.plate,
                "variant": None,
                "key": key,
            }
        )
        src_features = _features_for(row.source, features)
        tasks.append(
            functools.partial(
                _write_profile, writer, key, row.source, row.plate, src_features, seed
            )
        )

    # ---- cpg0016-jump per-stage products, for the demo's first batch of a few sources
    stage = _select_cpg0016(plates_per_batch, False)
    for source in _STAGE_SOURCES:
        first_batch = next(b for s, b, _ in _CPG0016_GROUPS if s == source)
        grp = stage[(stage.source == source) & (stage.batch == first_batch)]
        for i, row in enumerate(grp.itertuples(index=False)):
            tasks.append(
                functools.partial(
                    _write_stage,
                    writer,
                    row.source,
                    row.batch,
                    row.plate,
                    _features_for(row.source, small),
                    analysis_sites,
                    seed,
                    first=(i == 0),
                    deep=(source == "source_4"),
                )
            )

    # ---- cpg0016-jump raw images: a few tiny real-named files of two microscopes
    tasks += _image_tasks(writer, stage, selected, seed)

    # ---- cpg0004-lincs
    tasks += _lincs_tasks(writer, small, plates_per_batch, seed, plate_rows)

    # ---- cpg0016-jump-assembled (+ manifest, after the objects exist)
    assembled_keys = _assembled_tasks(writer, stage, small, seed, large_object, tasks)

    # ---- not projects
    scratch = {
        "dev-scratch/README.txt": b"Scratch space for pipeline development; not a dataset.\n",
        "dev-scratch/tmp/test_upload.csv": b"a,b\n1,2\n",
    }
    for key, data in scratch.items():
        tasks.append(functools.partial(writer.put, key, data))

    workers = max_workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fut in [pool.submit(t) for t in tasks]:
            fut.result()

    from .metadata.synthetic import mirror_files

    jump = selected.rename(
        columns={
            "source": "Metadata_Source",
            "plate": "Metadata_Plate",
            "plate_type": "Metadata_PlateType",
        }
    )
    for name, data in (mirror_files(jump, seed=seed) if jump_metadata else {}).items():
        writer.put(f"{METADATA_PREFIX}/{name}", data)
    writer.put(_MANIFEST_KEY, _manifest_bytes(writer, assembled_keys))
    writer.put("index.html", _index_html(writer.sizes))

    plates = pd.DataFrame(
        plate_rows, columns=["project", "source", "batch", "plate", "variant", "key"]
    )
    demo = DemoGallery(
        root=root,
        keys=tuple(sorted(writer.sizes)),
        manifest_key=_MANIFEST_KEY,
        plates=plates,
        etags=dict(sorted(writer.etags.items())),
        sizes=dict(sorted(writer.sizes.items())),
        multipart_keys=tuple(sorted(writer.multipart)),
    )
    log.info("%s", demo.summary())
    return demo


#: Sources whose first demo plate gets raw images: a Yokogawa plate (folder = plate) and a
#: Phenix plate (folder with the measurement suffix). Not source_4, whose entries tests count.
_IMAGE_PLATES = (
    ("source_13", "{plate}", "{plate}_{well}_T0001F{site:03d}L01A01Z01C{channel:02d}.tif"),
    (
        "source_5",
        "{plate}__2021-06-29T06_41_33-Measurement1/Images",
        "r{row:02d}c{col:02d}f{site:02d}p01-ch{channel}sk1fk1fl1.tiff",
    ),
)


def _tiny_tiff(value: int) -> bytes:
    """A valid 1x1 8-bit grayscale baseline TIFF holding ``value``."""
    import struct

    tags = [  # (tag, type: 3 SHORT / 4 LONG, value)
        (256, 3, 1),  # ImageWidth
        (257, 3, 1),  # ImageLength
        (258, 3, 8),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 8 + 2 + 12 * 9 + 4),  # StripOffsets: just after the IFD
        (277, 3, 1),  # SamplesPerPixel
        (278, 3, 1),  # RowsPerStrip
        (279, 4, 1),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, k, v) if k == 4 else struct.pack("<HHIHH", t, k, 1, v, 0)
        for t, k, v in tags
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes([value % 256])


def _image_tasks(
    writer: _Writer, stage: pd.DataFrame, selected: pd.DataFrame, seed: int
) -> list[Callable[[], None]]:
    """Two wells x one site x two channels of the first demo plate of each :data:`_IMAGE_PLATES`
    source, named as each microscope names them."""
    tasks: list[Callable[[], None]] = []
    rows = pd.concat([stage, selected]).drop_duplicates(["source", "batch", "plate"])
    for source, folder_t, name_t in _IMAGE_PLATES:
        first = rows[rows.source == source].sort_values(["batch", "plate"]).iloc[0]
        folder = folder_t.format(plate=first.plate)
        base = f"cpg0016-jump/{source}/images/{first.batch}/images/{folder}"
        for well in WELLS[:2]:
            for channel in (1, 2):
                name = name_t.format(
                    plate=first.plate,
                    well=well,
                    row=ord(well[0]) - 64,
                    col=int(well[1:]),
                    site=1,
                    channel=channel,
                )
                data = _tiny_tiff(seed + channel)
                tasks.append(functools.partial(writer.put, f"{base}/{name}", data))
    return tasks


def _write_profile(
    writer: _Writer, key: str, source: str, plate: str, features: tuple[str, ...], seed: int
) -> None:
    writer.put(key, _parquet_bytes(_profile_table(source, plate, features, seed)))


def _write_stage(
    writer: _Writer,
    source: str,
    batch: str,
    plate: str,
    features: tuple[str, ...],
    sites: int,
    seed: int,
    *,
    first: bool,
    deep: bool,
) -> None:
    """load_data, backend, illum, (analysis, load_data_csv_orig for the first plate), deep learning."""
    project = "cpg0016-jump"
    ids = {"project": project, "source": source, "batch": batch, "plate": plate}
    load_data = _load_data_table(source, batch, plate, sites)
    # the first plate's load_data is plain CSV, the others gzip'd: the gallery holds both
    ext = "csv" if first else "csv.gz"
    writer.put(
        format_key("load_data", **ids, variant="with_illum", extension=ext),
        _csv_bytes(load_data, gz=not first),
    )
    if deep:
        profile = _profile_table(source, plate, features, seed).to_pandas()
        writer.put(
            format_key("backend", **ids, extension="csv"),
            _csv_bytes(profile.drop(columns="Metadata_Source")),
        )
    if first:
        writer.put(
            format_key(
                "load_data", **ids, version="orig", variant="with_illum", extension="parquet"
            ),
            _parquet_bytes(_string_table(load_data)),
        )
        for well in ("A01", "B02"):
            for site in range(1, sites + 1):
                tables = _analysis_tables(source, plate, well, site, features, seed)
                for name, df in tables.items():
                    writer.put(
                        format_key(
                            "analysis",
                            **ids,
                            well=well,
                            site=str(site),
                            variant=name,
                            extension="csv",
                        ),
                        _csv_bytes(df),
                    )
    if not deep:
        return
    rng = np.random.default_rng(_seed_of(seed, "illum", plate))
    for ch in _CHANNELS:
        illum = (1.0 + 0.05 * rng.standard_normal((8, 8))).astype(np.float32)
        writer.put(
            format_key("illum", **ids, variant=f"Illum{ch}", extension="npy"), _npy_bytes(illum)
        )
    for model in (_CPCNN, _EFFNET):
        writer.put(
            format_key("dl_profiles", **ids, model=model, extension="parquet"),
            _parquet_bytes(_dl_profile_table(source, batch, plate, model, seed)),
        )
    if first:
        for well in ("A01", "B02"):
            for site in range(1, sites + 1):
                writer.put(
                    format_key(
                        "embeddings",
                        **ids,
                        model=_CPCNN,
                        well=well,
                        site=str(site),
                        extension="parquet",
                    ),
                    _parquet_bytes(_embedding_table(source, batch, plate, well, site, seed)),
                )


def _lincs_tasks(
    writer: _Writer,
    features: tuple[str, ...],
    plates_per_batch: int,
    seed: int,
    plate_rows: list[dict[str, str | None]],
) -> list[Callable[[], None]]:
    project, source, batch = "cpg0004-lincs", "broad", _LINCS_BATCH
    base = f"cpg0004-lincs/{batch}/"
    barcode_bytes = _data(base + "barcode_platemap.csv")
    barcodes = pd.read_csv(io.BytesIO(barcode_bytes), dtype=str)
    platemap_files = sorted(
        p.name
        for p in resources.files("intake_cpg").joinpath("data", base, "platemap").iterdir()
        if p.name.endswith(".txt")
    )
    have = {f[: -len(".txt")] for f in platemap_files}
    usable = barcodes[barcodes.Plate_Map_Name.isin(have)].sort_values("Assay_Plate_Barcode")
    chosen = usable.head(plates_per_batch)
    ids = {"project": project, "source": source, "batch": batch}
    tasks: list[Callable[[], None]] = [
        functools.partial(
            writer.put, format_key("barcode_platemap", **ids, extension="csv"), barcode_bytes
        )
    ]
    for name in platemap_files:
        tasks.append(
            functools.partial(
                writer.put,
                format_key("platemap", **ids, variant=name.removesuffix(".txt"), extension="txt"),
                _data(base + "platemap/" + name),
            )
        )
    for row in chosen.itertuples(index=False):
        platemap = pd.read_csv(
            io.BytesIO(_data(base + f"platemap/{row.Plate_Map_Name}.txt")),
            sep="\t",
            dtype=str,
            keep_default_na=False,
        )
        for variant in _LINCS_VARIANTS:
            key = format_key(
                "profiles",
                **ids,
                plate=row.Assay_Plate_Barcode,
                variant=variant,
                extension="csv.gz",
            )
            plate_rows.append(
                {
                    "project": project,
                    "source": source,
                    "batch": batch,
                    "plate": row.Assay_Plate_Barcode,
                    "variant": variant,
                    "key": key,
                }
            )
        tasks.append(
            functools.partial(
                _write_lincs_plate, writer, ids, row._asdict(), platemap, features, seed
            )
        )
    return tasks


def _write_lincs_plate(
    writer: _Writer,
    ids: dict[str, str],
    barcode_row: dict[str, str],
    platemap: pd.DataFrame,
    features: tuple[str, ...],
    seed: int,
) -> None:
    """pycytominer outputs of one plate: aggregated, augmented, normalized, feature-selected."""
    plate = barcode_row["Assay_Plate_Barcode"]
    values = _plate_values(features, plate, seed)
    feats = pd.DataFrame(values, columns=list(features))
    wells = pd.DataFrame({"Metadata_Plate": plate, "Metadata_Well": list(WELLS)})
    pm = platemap.set_index("well_position").reindex(list(WELLS)).reset_index()
    meta = pd.DataFrame(
        {
            f"Metadata_{c}": pm[c].fillna("").to_numpy()
            for c in ("plate_map_name", "broad_sample", "mg_per_ml", "mmoles_per_liter", "solvent")
        }
    )
    meta["Metadata_Plate"] = plate
    meta["Metadata_Well"] = list(WELLS)
    for col in ("Assay_Plate_Barcode", "Plate_Map_Name", "Batch_Number", "Batch_Date"):
        meta[f"Metadata_{col}"] = barcode_row[col]
    meta = meta.astype(str)
    med = feats.median()
    mad = (feats - med).abs().median().replace(0, 1.0)
    normalized = (feats - med) / mad
    negcon = (meta.Metadata_broad_sample == "").to_numpy()
    ref = feats[negcon] if negcon.any() else feats
    negcon_norm = (feats - ref.median()) / (ref - ref.median()).abs().median().replace(0, 1.0)
    selected = [f for i, f in enumerate(features) if i % 3 != 1]
    outputs = {
        None: pd.concat([wells, feats], axis=1),
        "augmented": pd.concat([meta, feats], axis=1),
        "normalized": pd.concat([meta, normalized], axis=1),
        "normalized_negcon": pd.concat([meta, negcon_norm], axis=1),
        "normalized_feature_select_negcon_batch": pd.concat([meta, negcon_norm[selected]], axis=1),
    }
    for variant, df in outputs.items():
        key = format_key("profiles", **ids, plate=plate, variant=variant, extension="csv.gz")
        writer.put(key, _csv_bytes(df, gz=True))


def _assembled_tasks(
    writer: _Writer,
    stage: pd.DataFrame,
    features: tuple[str, ...],
    seed: int,
    large_object: bool,
    tasks: list[Callable[[], None]],
) -> list[tuple[str, str | None, str]]:
    """Queue the assembled profiles; return (subset folder, manifest subset, key) per file."""
    ids = {"project": "cpg0016-jump-assembled", "source": "source_all"}
    by_type = {
        "ORF": stage[stage.plate_type == "ORF"],
        "CRISPR": stage[stage.plate_type == "CRISPR"],
        "COMPOUND": stage[stage.plate_type == "COMPOUND"],
        "ALL": stage,
    }
    out = []
    for subset, version, variant, manifest_subset, kind in _ASSEMBLED:
        key = format_key(
            "profiles_assembled",
            **ids,
            subset=subset,
            version=version,
            variant=variant,
            extension="parquet",
        )
        big = large_object and (subset, version, variant) == LARGE_OBJECT_VARIANT
        plates = by_type[subset]
        plates = (plates if len(plates) else stage).head(_LARGE_N_PLATES if big else 2)
        cols = select_features(_LARGE_N_FEATURES) if big else features
        tag = f"{subset}/{version}/{variant}"
        tasks.append(
            functools.partial(_write_assembled, writer, key, plates, cols, kind, seed, tag, big)
        )
        out.append((subset, manifest_subset, key))
    return out


def _write_assembled(
    writer: _Writer,
    key: str,
    plates: pd.DataFrame,
    features: tuple[str, ...],
    kind: str,
    seed: int,
    tag: str,
    multipart: bool,
) -> None:
    data = _parquet_bytes(_assembled_table(plates, features, kind, seed, tag))
    if multipart and len(data) <= PART_SIZE:  # pragma: no cover - guards the size constants
        raise AssertionError(f"large demo object is only {len(data)} bytes")
    writer.put(key, data, multipart=multipart)


@functools.cache
def _reference_manifest() -> list[dict[str, str]]:
    return json.loads(_data("jump_profile_index_v0.13.json"))


def _manifest_bytes(writer: _Writer, assembled: list[tuple[str, str | None, str]]) -> bytes:
    """The JUMP manifest shape, pointing at the demo's objects with their true ETags."""
    reference = {rec["subset"]: rec for rec in _reference_manifest()}
    fallback = next(iter(reference.values()))
    records = []
    for _subset, manifest_subset, key in assembled:
        if manifest_subset is None:
            continue
        ref = reference.get(manifest_subset, fallback)
        records.append(
            {
                "subset": manifest_subset,
                "url": f"https://{GALLERY_BUCKET}.s3.amazonaws.com/{key}",
                "recipe_permalink": ref["recipe_permalink"],
                "config_permalink": ref["config_permalink"],
                "etag": writer.etags[key],
            }
        )
    return (json.dumps(records, indent=2) + "\n").encode()


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's arguments (``DIR`` and the build options) to ``parser``.

    One definition for ``python -m intake_cpg.demo`` and ``intake-cpg demo``; read them back
    with :func:`build_from_args`.
    """
    parser.add_argument(
        "target",
        nargs="?",
        default="demo-gallery",
        metavar="DIR",
        help="folder or fsspec URL to write into (default: demo-gallery)",
    )
    parser.add_argument(
        "--n-features",
        type=int,
        default=None,
        help="feature columns per plate (default 60; 4762 = full width)",
    )
    parser.add_argument(
        "--plates-per-batch", type=int, default=2, help="plates written per batch (default 2)"
    )
    parser.add_argument(
        "--all-plates", action="store_true", help="write every one of the 2,525 cpg0016 plates"
    )
    parser.add_argument(
        "--analysis-sites", type=int, default=2, help="sites per well in analysis (default 2)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every generated number (default 0)"
    )
    parser.add_argument(
        "--large-object",
        action="store_true",
        help="add a >5 MiB assembled profile uploaded in 5 MiB parts",
    )
    parser.add_argument(
        "--jump-metadata",
        action="store_true",
        help="also write a mirror of the JUMP metadata tables for the demo's plates",
    )


def build_from_args(args: argparse.Namespace, storage_options: dict | None = None) -> DemoGallery:
    """:func:`build_demo` with the arguments :func:`add_arguments` defined."""
    return build_demo(
        args.target,
        storage_options,
        n_features=args.n_features,
        plates_per_batch=args.plates_per_batch,
        all_plates=args.all_plates,
        analysis_sites=args.analysis_sites,
        seed=args.seed,
        large_object=args.large_object,
        jump_metadata=args.jump_metadata,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m intake_cpg.demo DIR``: build the demo gallery into DIR and print a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m intake_cpg.demo",
        description="Build the intake-cpg demo gallery (a small, realistic Cell Painting Gallery).",
    )
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        demo = build_from_args(args)
    except (ParameterError, StorageError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(demo.summary() + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
