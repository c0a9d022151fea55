"""Annotating profiles with metadata: pure functions on pandas frames, and a dask wrapper.

Two kinds of metadata, one mechanism (a lookup table with a unique key, joined row for row):

* **JUMP tables** (cpg0016): profiles join ``well`` on ``Metadata_Source, Metadata_Plate,
  Metadata_Well`` (giving ``Metadata_JCP2022``), then the perturbation tables (``compound``,
  ``orf``, ``crispr``, ``perturbation_control``) on ``Metadata_JCP2022``, and ``plate`` on
  ``Metadata_Source, Metadata_Plate`` (``Metadata_Batch``, ``Metadata_PlateType``). Which table
  joins on what is the table :data:`intake_cpg.metadata.TABLE_SPECS`; ``annotate=True`` is
  :data:`intake_cpg.metadata.USUAL_TABLES`.
* **Platemaps** (every other project): ``barcode_platemap.csv`` maps a plate to its platemap,
  ``platemap/<name>.txt`` (tab separated) gives one row per well position. Platemap and
  barcode columns get pycytominer's ``Metadata_`` prefix (a column already named
  ``Metadata_...`` keeps its name) and join on ``Metadata_Plate, Metadata_Well``; the
  platemap's ``well_position`` is the join key and is not repeated, as in pycytominer.

Rules, the same for both:

* **Never drop, never duplicate.** Each input row gives exactly one output row, in the same
  order with the same index. A metadata table whose key is not unique is refused
  (:class:`~intake_cpg.errors.MetadataError` with examples) when the annotations are prepared.
* **Missing matches are counted.** Rows whose key the metadata lacks keep their values with
  missing annotations, and a WARNING says how many rows of which plates (per table group).
* **Precedence.** A column the profiles already have keeps its values; a column two tables
  share keeps the earlier table's value; later tables only fill missing cells.
* **Strings.** Key columns and added columns are ``string[pyarrow]``; a numeric key column is
  refused (the plate ``1053601756`` read as an integer would silently never match).

>>> import pandas as pd
>>> profiles = pd.DataFrame({"Metadata_Source": ["source_2"] * 2,
...                          "Metadata_Plate": ["1053601756"] * 2,
...                          "Metadata_Well": ["A01", "A02"], "Cells_Area": [1.0, 2.0]})
>>> well = pd.DataFrame({"Metadata_Source": ["source_2"], "Metadata_Plate": ["1053601756"],
...                      "Metadata_Well": ["A01"], "Metadata_JCP2022": ["JCP2022_033924"]})
>>> compound = pd.DataFrame({"Metadata_JCP2022": ["JCP2022_033924"],
...                          "Metadata_InChIKey": ["IAZDPXIOMUYVGZ-UHFFFAOYSA-N"]})
>>> ann = prepare({"well": well, "compound": compound})
>>> out = annotate_frame(profiles, ann)  # A02 is not in `well`: kept, counted in a warning
>>> out[["Metadata_Well", "Metadata_JCP2022", "Metadata_InChIKey"]].fillna("-").values.tolist()
[['A01', 'JCP2022_033924', 'IAZDPXIOMUYVGZ-UHFFFAOYSA-N'], ['A02', '-', '-']]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import MetadataError, ParameterError, not_found
from .metadata.tables import TABLE_SPECS, USUAL_TABLES
from .readers import STRING_DTYPE

log = logging.getLogger(__name__)

__all__ = [
    "Lookup",
    "Annotations",
    "resolve_tables",
    "prepare",
    "platemap_lookup",
    "annotate_frame",
    "annotate_dask",
    "PLATEMAP_KEYS",
]

#: Join key of platemap annotations (the profile side).
PLATEMAP_KEYS = ("Metadata_Plate", "Metadata_Well")
_EXAMPLES = 5


@dataclass(frozen=True)
class Lookup:
    """One metadata table ready to join: unique key index and the value columns, in key order."""

    name: str
    group: str
    keys: tuple[str, ...]
    index: pd.Index
    values: pd.DataFrame  # one row per index entry, plus a last all-missing row

    @property
    def columns(self) -> list[str]:
        """The columns this table adds."""
        return list(self.values.columns)

    def restrict(self, mask: np.ndarray) -> Lookup:
        """The same lookup with only the rows where ``mask`` is true."""
        keep = np.append(mask, True)  # the all-missing last row stays
        return replace(
            self, index=self.index[mask], values=self.values[keep].reset_index(drop=True)
        )


@dataclass(frozen=True)
class Annotations:
    """The lookups to apply, in join order; what a partition function carries to the workers."""

    lookups: tuple[Lookup, ...]
    label: str = "metadata"

    @property
    def columns(self) -> list[str]:
        """Every column the annotations may add, in order, each once."""
        return list(dict.fromkeys(c for lk in self.lookups for c in lk.columns))

    def for_plates(self, plates: pd.DataFrame) -> Annotations:
        """Only the rows of tables keyed by plate that concern ``plates`` (smaller to ship).

        ``plates`` has the columns ``Metadata_Source``/``Metadata_Plate`` (either may be
        missing, then only the other is used); tables without those keys are kept whole.
        """
        cols = [c for c in ("Metadata_Source", "Metadata_Plate") if c in plates.columns]
        if not cols:
            return self
        wanted = pd.MultiIndex.from_frame(plates[cols].astype(STRING_DTYPE).drop_duplicates())
        out = []
        for lk in self.lookups:
            if not set(cols) <= set(lk.keys):
                out.append(lk)
                continue
            frame = lk.index.to_frame(index=False) if lk.index.nlevels > 1 else None
            if frame is None:
                have = pd.MultiIndex.from_arrays([lk.index])
            else:
                have = pd.MultiIndex.from_frame(frame[cols])
            out.append(lk.restrict(have.isin(wanted)))
        return replace(self, lookups=tuple(out))


def resolve_tables(annotate: Any, available: Sequence[str] | None = None) -> tuple[str, ...]:
    """The JUMP tables ``annotate=`` asks for, with the tables they need, in join order.

    ``True`` is the usual set; ``False``/``None`` none; a name or a list of names those tables.

    >>> resolve_tables(["compound"])
    ('well', 'compound')
    >>> resolve_tables(True) == USUAL_TABLES, resolve_tables(False)
    (True, ())
    >>> resolve_tables(["microscope_filter"])
    ('microscope_config', 'microscope_filter')
    """
    if annotate is None or annotate is False:
        return ()
    if annotate is True:
        names: list[str] = list(USUAL_TABLES)
    elif isinstance(annotate, str):
        names = [annotate]
    elif isinstance(annotate, Sequence) and all(isinstance(n, str) for n in annotate):
        names = list(annotate)
    else:
        raise ParameterError(
            f"annotate={annotate!r} is not valid: expected True (the tables "
            f"{', '.join(USUAL_TABLES)}), False, or a list of table names"
        )
    known = list(available) if available is not None else list(TABLE_SPECS)
    wanted: set[str] = set()
    for name in names:
        if name not in TABLE_SPECS or name not in known:
            raise not_found("metadata table", name, known, "annotate=")
        spec = TABLE_SPECS[name]
        if not spec.keys:
            raise ParameterError(
                f"annotate=[{name!r}]: the {name} table has no unique key a profile carries "
                "(several rows per compound), so joining it would duplicate rows; read it with "
                f"cat.metadata.{name}.read() and join it yourself where that is what you want"
            )
        while spec is not None:
            wanted.add(spec.name)
            spec = TABLE_SPECS[spec.needs] if spec.needs else None
    return tuple(n for n in TABLE_SPECS if n in wanted)


def _string_keys(df: pd.DataFrame, keys: Sequence[str], what: str) -> pd.DataFrame:
    """``df`` with its key columns as ``string[pyarrow]``; a numeric key is refused."""
    out = df
    for k in keys:
        col = df[k]
        if isinstance(col.dtype, pd.StringDtype) and col.dtype.storage == "pyarrow":
            continue
        if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            raise ParameterError(
                f"{what}: key column {k!r} is {col.dtype}, expected strings (a plate such as "
                f"'1053601756' read as a number never matches); read it with dtype=str"
            )
        if out is df:
            out = df.copy()
        out[k] = col.astype(STRING_DTYPE)
    return out


def _lookup(name: str, group: str, keys: tuple[str, ...], table: pd.DataFrame) -> Lookup:
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise MetadataError(
            f"metadata table {name!r} lacks its key column(s) {', '.join(missing)} "
            f"(it has {', '.join(map(str, table.columns[:12]))}); is it the right file?"
        )
    table = _string_keys(table, keys, f"metadata table {name!r}")
    table = table[table[list(keys)].notna().all(axis=1)]
    dup = table.duplicated(list(keys), keep=False)
    if dup.any():
        examples = table.loc[dup, list(keys)].drop_duplicates().head(_EXAMPLES)
        shown = "; ".join(", ".join(map(str, r)) for r in examples.itertuples(index=False))
        raise MetadataError(
            f"metadata table {name!r} has {int(dup.sum())} rows with a repeated key "
            f"({', '.join(keys)}), e.g. {shown}: joining it would duplicate profile rows. "
            "Fix or deduplicate the table (or annotate without it)."
        )
    index = (
        pd.Index(table[keys[0]], name=keys[0])
        if len(keys) == 1
        else pd.MultiIndex.from_frame(table[list(keys)])
    )
    value_cols = [c for c in table.columns if c not in keys]
    values = table[value_cols].reset_index(drop=True)
    values = values.astype({c: STRING_DTYPE for c in value_cols if c.startswith("Metadata_")})
    if value_cols:
        blank = pd.DataFrame({c: pd.Series([pd.NA], dtype=values[c].dtype) for c in value_cols})
        values = pd.concat([values, blank], ignore_index=True)
    else:  # a key-only table: it only tells which rows match
        values = pd.DataFrame(index=pd.RangeIndex(len(table) + 1))
    return Lookup(name=name, group=group, keys=keys, index=index, values=values)


def prepare(tables: Mapping[str, pd.DataFrame], label: str = "metadata") -> Annotations:
    """JUMP tables (by name, any order) as :class:`Annotations` in join order; keys checked once.

    Raises:
        MetadataError: a table lacks its key columns or repeats a key.
    """
    unknown = [n for n in tables if n not in TABLE_SPECS]
    if unknown:
        raise not_found("metadata table", unknown[0], TABLE_SPECS, "annotations")
    lookups = []
    for name, spec in TABLE_SPECS.items():
        if name in tables:
            if not spec.keys:
                resolve_tables([name])  # raises the explanation
            lookups.append(_lookup(name, spec.group, spec.keys, tables[name]))
    return Annotations(tuple(lookups), label)


def _prefixed(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns=lambda c: c if c.startswith("Metadata_") else f"Metadata_{c}")


def platemap_lookup(
    barcode_platemap: pd.DataFrame, platemaps: Mapping[str, pd.DataFrame], label: str = "platemap"
) -> Annotations:
    """Platemap annotations keyed by ``Metadata_Plate, Metadata_Well``.

    ``barcode_platemap`` has ``Assay_Plate_Barcode`` and ``Plate_Map_Name`` (and maybe more,
    e.g. ``Batch_Number``); ``platemaps`` maps a platemap name to its table with a
    ``well_position`` column. Plates whose platemap is not given get no rows (their profiles
    are counted as unmatched when annotated).

    >>> import pandas as pd
    >>> barcodes = pd.DataFrame({"Assay_Plate_Barcode": ["SQ1"], "Plate_Map_Name": ["PM1"]})
    >>> pm = pd.DataFrame({"plate_map_name": ["PM1"], "well_position": ["A01"],
    ...                    "broad_sample": ["BRD-K1"]})
    >>> ann = platemap_lookup(barcodes, {"PM1": pm})
    >>> ann.columns
    ['Metadata_Assay_Plate_Barcode', 'Metadata_Plate_Map_Name', 'Metadata_plate_map_name', 'Metadata_broad_sample']
    """
    need = ("Assay_Plate_Barcode", "Plate_Map_Name")
    if not set(need) <= set(barcode_platemap.columns):
        raise MetadataError(
            f"barcode_platemap lacks {', '.join(n for n in need if n not in barcode_platemap)}; "
            f"expected the columns {', '.join(need)} (it has {', '.join(barcode_platemap.columns)})"
        )
    barcodes = barcode_platemap.astype(STRING_DTYPE)
    dup = barcodes.duplicated("Assay_Plate_Barcode", keep=False)
    if dup.any():
        raise MetadataError(
            "barcode_platemap names plate(s) "
            f"{', '.join(barcodes.Assay_Plate_Barcode[dup].unique()[:_EXAMPLES])} more than once; "
            "each plate must map to exactly one platemap"
        )
    parts = []
    for row in barcodes.itertuples(index=False):
        pm = platemaps.get(row.Plate_Map_Name)
        if pm is None:
            continue
        if "well_position" not in pm.columns:
            raise MetadataError(
                f"platemap {row.Plate_Map_Name!r} has no well_position column "
                f"(it has {', '.join(pm.columns)}); expected a platemap/<name>.txt table"
            )
        part = _prefixed(pm.astype(STRING_DTYPE)).rename(
            columns={"Metadata_well_position": "Metadata_Well"}
        )
        extra = _prefixed(pd.DataFrame([row._asdict()] * len(part), index=part.index))
        part = pd.concat([extra, part.drop(columns=[c for c in extra if c in part])], axis=1)
        part.insert(0, "Metadata_Plate", row.Assay_Plate_Barcode)
        parts.append(part)
    if parts:
        table = pd.concat(parts, ignore_index=True).astype(STRING_DTYPE)
    else:
        table = pd.DataFrame({k: pd.Series([], dtype=STRING_DTYPE) for k in PLATEMAP_KEYS})
    return Annotations((_lookup("platemap", "platemap", PLATEMAP_KEYS, table),), label)


def _key_index(df: pd.DataFrame, keys: Sequence[str]) -> pd.Index:
    if len(keys) == 1:
        return pd.Index(df[keys[0]])
    return pd.MultiIndex.from_arrays([df[k] for k in keys])


def _describe_rows(df: pd.DataFrame, mask: np.ndarray) -> str:
    cols = [c for c in ("Metadata_Source", "Metadata_Plate") if c in df.columns]
    if not cols:
        return ""
    sel = df.loc[mask, cols].drop_duplicates()
    shown = ", ".join("/".join(map(str, r)) for r in sel.head(_EXAMPLES).itertuples(index=False))
    more = f" and {len(sel) - _EXAMPLES} more" if len(sel) > _EXAMPLES else ""
    return f" (plates {shown}{more})"


def annotate_frame(df: pd.DataFrame, annotations: Annotations) -> pd.DataFrame:
    """``df`` with the annotation columns joined: same rows, same order, same index.

    Raises:
        ParameterError: ``df`` lacks a key column a table joins on, or a key is numeric.
    """
    out = df.copy()
    matched: dict[str, np.ndarray] = {}
    keyed: dict[str, np.ndarray] = {}
    for lk in annotations.lookups:
        missing = [k for k in lk.keys if k not in out.columns]
        if missing:
            raise ParameterError(
                f"cannot annotate with {lk.name!r}: the profiles have no {', '.join(missing)} "
                f"column (they have {', '.join(map(str, out.columns[:8]))}, ...); "
                + (
                    "add the 'well' table to annotate= to get Metadata_JCP2022"
                    if "Metadata_JCP2022" in missing
                    else "load them with path_metadata=True"
                )
            )
        out = _string_keys(out, lk.keys, f"profiles annotated with {lk.name!r}")
        pos = lk.index.get_indexer(_key_index(out, lk.keys))
        hit = pos >= 0
        has_key = out[list(lk.keys)].notna().all(axis=1).to_numpy()
        matched[lk.group] = matched.get(lk.group, np.zeros(len(out), bool)) | hit
        keyed[lk.group] = keyed.get(lk.group, np.zeros(len(out), bool)) | has_key
        pos = np.where(hit, pos, len(lk.values) - 1)  # the all-missing last row
        added = lk.values.take(pos)
        added.index = out.index
        for col in added.columns:
            if col not in out.columns:
                out[col] = added[col]
                continue
            current = out[col]
            if current.dtype != added[col].dtype and col.startswith("Metadata_"):
                current = current.astype(STRING_DTYPE)
            out[col] = current.where(current.notna(), added[col])
    for group, hit in matched.items():
        lost = keyed[group] & ~hit
        if lost.any():
            log.warning(
                "%d of %d rows have no match in the %s table%s (%s): they are kept with missing "
                "annotations",
                int(lost.sum()),
                len(out),
                group,
                _describe_rows(out, lost),
                annotations.label,
            )
    return out


def annotate_dask(ddf: Any, annotations: Annotations) -> Any:
    """Annotate every partition of a dask dataframe; the lookups enter the graph once.

    The :class:`Annotations` travel as one ``dask.delayed`` object that every partition task
    depends on: the graph holds one copy (sent once to each worker that needs it), no
    shuffle, row order and divisions kept.
    """
    import dask

    meta = annotate_frame(ddf._meta, annotations)
    shipped = dask.delayed(annotations, pure=True)
    return ddf.map_partitions(
        _annotate_partition, shipped, meta=meta, align_dataframes=False, enforce_metadata=False
    )


def _annotate_partition(df: pd.DataFrame, annotations: Annotations) -> pd.DataFrame:
    return annotate_frame(df, annotations)
