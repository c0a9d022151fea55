"""Where a project's annotations come from, and the lookups a load ships to its workers.

Which metadata a project uses is a table (:data:`PROJECT_METADATA`): the cpg0016 projects use
the JUMP ``datasets`` tables (:mod:`intake_cpg.metadata`), every other project its platemaps
in the bucket. The functions here read what a load needs (on the client, once) and give the
:class:`~intake_cpg.annotate.Annotations` that :func:`~intake_cpg.annotate.annotate_dask`
ships to the workers.

>>> metadata_kind("cpg0016-jump"), metadata_kind("cpg0004-lincs")
('jump', 'platemap')
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from .annotate import Annotations, platemap_lookup, prepare, resolve_tables
from .errors import ParameterError
from .metadata.store import JumpMetadata

log = logging.getLogger(__name__)

__all__ = ["PROJECT_METADATA", "metadata_kind", "jump_annotations", "platemap_annotations"]

#: Projects whose annotations are the JUMP datasets tables; every other project: platemaps.
PROJECT_METADATA: Mapping[str, str] = {
    "cpg0016-jump": "jump",
    "cpg0016-jump-assembled": "jump",
}


def metadata_kind(project: str) -> str:
    """``"jump"`` or ``"platemap"``: what ``annotate=`` joins for ``project``."""
    return PROJECT_METADATA.get(project, "platemap")


def jump_annotations(
    store: JumpMetadata, annotate: Any, plates: pd.DataFrame | None
) -> Annotations:
    """The JUMP lookups ``annotate=`` asks for, cut to ``plates`` (source/plate pairs) if given.

    The tables are read (fetched and verified) through ``store`` on the caller's side.
    """
    names = resolve_tables(annotate, store.tables)
    lookups = prepare(store.read_many(names), label=store.release.describe())
    return lookups.for_plates(plates) if plates is not None else lookups


def platemap_annotations(
    annotate: Any,
    barcode_platemaps: Iterable[pd.DataFrame],
    read_platemap: Callable[[str], pd.DataFrame | None],
    plates: Iterable[str],
) -> Annotations:
    """Platemap lookups for ``plates``: ``barcode_platemaps`` (one per batch), each platemap read
    by name with ``read_platemap`` (``None`` where the batch has no such file)."""
    if annotate is not True:
        raise ParameterError(
            f"annotate={annotate!r}: this project is annotated from its platemaps; use "
            "annotate=True (the JUMP table names apply to cpg0016 only)"
        )
    frames = [b for b in barcode_platemaps if len(b)]
    barcodes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if barcodes.empty:
        raise ParameterError(
            "annotate=True: no barcode_platemap.csv for these plates' batches "
            "(workspace/metadata/platemaps/<batch>/barcode_platemap.csv)"
        )
    wanted = set(plates)
    barcodes = barcodes[barcodes["Assay_Plate_Barcode"].isin(wanted)]
    maps: dict[str, pd.DataFrame] = {}
    for name in sorted(set(barcodes["Plate_Map_Name"].dropna())):
        table = read_platemap(name)
        if table is None:
            log.warning("platemap %r named by barcode_platemap.csv is not in the bucket", name)
            continue
        maps[name] = table
    return platemap_lookup(barcodes, maps)
