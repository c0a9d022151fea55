"""Plates chosen by what they hold: the project's plates table and selection on it (pure).

:func:`plates_table` turns what a listing found (source, batch, plate, variant per file) and,
where a project has it, plate metadata (the JUMP ``plate`` table: ``Metadata_PlateType``) into
one row per plate::

    Metadata_Source  Metadata_Batch     Metadata_Plate  Metadata_PlateType  variants
    source_4         2021_05_31_Batch2  BR00121437      TARGET2             ('',)

``variants`` is the sorted tuple of per-plate variants present (``""`` is the bare
``<plate>.<ext>`` file, as in :func:`intake_cpg.resolve.choose_variant`).
``Metadata_PlateType`` is missing (``<NA>``) for plates the metadata does not list, and the
column is absent for projects without plate metadata.

:func:`select_plates` filters it by ``source``, ``batch``, ``plate`` (each a name, a shell
glob or a list of them), ``plate_type`` and ``plates=`` (a DataFrame of source/plate pairs,
e.g. the table itself filtered with pandas). A name that matches nothing is a
:class:`~intake_cpg.errors.ProductNotFoundError` naming what exists.

>>> import pandas as pd
>>> found = [("source_4", "B1", "BR1", ""), ("source_4", "B1", "BR2", ""),
...          ("source_2", "B2", "1053601756", "")]
>>> meta = pd.DataFrame({"Metadata_Source": ["source_4", "source_2"],
...                      "Metadata_Plate": ["BR1", "1053601756"],
...                      "Metadata_PlateType": ["TARGET2", "COMPOUND"]})
>>> table = plates_table(found, meta)
>>> select_plates(table, plate_type="TARGET2").Metadata_Plate.tolist()
['BR1']
>>> select_plates(table, source="source_*", plate=["BR*", "1053601756"]).Metadata_Plate.tolist()
['1053601756', 'BR1', 'BR2']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .errors import ParameterError, not_found
from .readers import STRING_DTYPE
from .resolve import match_names

__all__ = ["PLATE_COLUMNS", "plates_table", "select_plates", "pairs_of"]

#: Identity columns of the plates table (a plate is named by its source and plate).
PLATE_COLUMNS = ("Metadata_Source", "Metadata_Batch", "Metadata_Plate")
_TYPE = "Metadata_PlateType"
_PAIR_ALIASES = {"source": "Metadata_Source", "plate": "Metadata_Plate"}


def plates_table(
    found: Iterable[tuple[str, str, str, str | None]], plate_meta: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (source, batch, plate) found, with its variants and plate type."""
    rows: dict[tuple[str, str, str], set[str]] = {}
    for source, batch, plate, variant in found:
        rows.setdefault((source, batch, plate), set()).add(variant or "")
    keys = sorted(rows)
    table = pd.DataFrame(
        {
            c: pd.Series([k[i] for k in keys], dtype=STRING_DTYPE)
            for i, c in enumerate(PLATE_COLUMNS)
        }
    )
    if plate_meta is not None:
        types = plate_meta[["Metadata_Source", "Metadata_Plate", _TYPE]].astype(STRING_DTYPE)
        types = types.drop_duplicates(["Metadata_Source", "Metadata_Plate"])
        table = table.merge(types, on=["Metadata_Source", "Metadata_Plate"], how="left")
    table["variants"] = [tuple(sorted(rows[k])) for k in keys]
    return table


def _patterns(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ParameterError(
        f"{name}={value!r} is not valid: expected a name, a shell glob, or a list of them"
    )


def _match(table: pd.DataFrame, column: str, name: str, value: Any, where: str) -> pd.Series:
    patterns = _patterns(name, value)
    if patterns is None:
        return pd.Series(True, index=table.index)
    known = sorted(set(table[column].dropna()))
    hits: set[str] = set()
    for p in patterns:
        got = match_names(p, known)
        if not got:
            raise not_found(name, p, known, where)
        hits.update(got)
    return table[column].isin(hits).fillna(False).astype(bool)


def pairs_of(plates: pd.DataFrame) -> pd.DataFrame:
    """The ``Metadata_Source, Metadata_Plate`` pairs of a user's plates frame (also accepts
    ``source``/``plate`` column names), as strings, without repeats."""
    if not isinstance(plates, pd.DataFrame):
        raise ParameterError(
            f"plates= must be a DataFrame with Metadata_Source and Metadata_Plate columns "
            f"(e.g. the plates entry's table, filtered), got {type(plates).__name__}"
        )
    frame = plates.rename(columns={k: v for k, v in _PAIR_ALIASES.items() if v not in plates})
    missing = [c for c in ("Metadata_Source", "Metadata_Plate") if c not in frame.columns]
    if missing:
        raise ParameterError(
            f"plates= lacks the column(s) {', '.join(missing)}: expected Metadata_Source and "
            f"Metadata_Plate (it has {', '.join(map(str, plates.columns))})"
        )
    pairs = frame[["Metadata_Source", "Metadata_Plate"]].astype(STRING_DTYPE)
    return pairs.drop_duplicates().reset_index(drop=True)


def select_plates(
    table: pd.DataFrame,
    *,
    source: Any = None,
    batch: Any = None,
    plate: Any = None,
    plate_type: Any = None,
    plates: pd.DataFrame | None = None,
    where: str = "",
) -> pd.DataFrame:
    """The rows of ``table`` (from :func:`plates_table`) that every given criterion keeps."""
    keep = _match(table, "Metadata_Source", "source", source, where)
    keep &= _match(table, "Metadata_Batch", "batch", batch, where)
    keep &= _match(table, "Metadata_Plate", "plate", plate, where)
    if plate_type is not None:
        if _TYPE not in table.columns:
            raise ParameterError(
                f"plate_type={plate_type!r}: {where or 'this project'} has no plate metadata "
                "(Metadata_PlateType is known for cpg0016 from the JUMP plate table)"
            )
        keep &= _match(table, _TYPE, "plate_type", plate_type, where)
    if plates is not None:
        pairs = pairs_of(plates)
        have = pd.MultiIndex.from_frame(table[["Metadata_Source", "Metadata_Plate"]])
        want = pd.MultiIndex.from_frame(pairs)
        absent = want[~want.isin(have)]
        if len(absent):
            shown = ", ".join(f"{s}/{p}" for s, p in list(absent)[:5])
            raise not_found("plate", shown, [f"{s}/{p}" for s, p in have][:50], where)
        keep &= have.isin(want)
    out = table[keep.to_numpy()].reset_index(drop=True)
    if out.empty:
        given = {"source": source, "batch": batch, "plate": plate, "plate_type": plate_type}
        asked = {k: v for k, v in given.items() if v is not None}
        raise ParameterError(
            f"no plate of {where or 'the project'} matches all of {asked or 'the plates given'}; "
            "each criterion matches some plates, but not together: read the plates entry to see "
            "which plates hold what"
        )
    return out
