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

import io
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .annotate import (
    PLATEMAP_KEYS,
    Annotations,
    annotate_dask,
    platemap_lookup,
    prepare,
    resolve_tables,
)
from .errors import ParameterError
from .metadata.store import JumpMetadata

log = logging.getLogger(__name__)

__all__ = [
    "PROJECT_METADATA",
    "AnnotationRequest",
    "metadata_kind",
    "jump_annotations",
    "platemap_annotations",
    "gallery_platemap_annotations",
]

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


def _read_text(storage: Any, key: str) -> pd.DataFrame:
    """A platemap table of the bucket, every column text (plate barcodes can be all digits)."""
    sep = "\t" if key.endswith((".txt", ".tsv")) else ","
    with storage.open(key) as f:
        return pd.read_csv(io.BytesIO(f.read()), sep=sep, dtype=str, keep_default_na=False)


def gallery_platemap_annotations(
    gallery: Any, project: str, annotate: Any, chosen: pd.DataFrame
) -> Annotations:
    """Platemap lookups for the plates of ``chosen`` (``Metadata_Source, Metadata_Batch,
    Metadata_Plate``), from each batch's ``barcode_platemap.csv`` and ``platemap/*.txt``."""
    barcodes, maps = [], {}
    products = ("barcode_platemap", "platemap")
    for (source, batch), _ in chosen.groupby(["Metadata_Source", "Metadata_Batch"]):
        if batch not in gallery.batches(project, source, "barcode_platemap"):
            continue
        refs = gallery.platemap_files(project, source, batch, products)
        keys = {name: ref.key for name, ref in refs.items()}
        if "barcode_platemap" in keys:
            barcodes.append(_read_text(gallery.storage, keys["barcode_platemap"]))
        maps.update({n: k for n, k in keys.items() if n != "barcode_platemap"})
    return platemap_annotations(
        annotate,
        barcodes,
        lambda name: _read_text(gallery.storage, maps[name]) if name in maps else None,
        chosen.Metadata_Plate,
    )


_WELL_KEYS = ("Metadata_Source", "Metadata_Plate", "Metadata_Well")


@dataclass
class AnnotationRequest:
    """What ``annotate=`` asked for on one entry, and where its metadata comes from.

    ``metadata_options`` are :func:`intake_cpg.metadata.source.open_store`'s parameters.
    """

    annotate: Any
    project: str
    metadata_options: dict[str, Any] = field(default_factory=dict)
    _lookups: Annotations | None = field(default=None, repr=False)

    @classmethod
    def make(cls, annotate: Any, project: str, **metadata_options: Any) -> AnnotationRequest | None:
        """``None`` when nothing is asked for (``annotate`` false or empty)."""
        if not annotate:
            return None
        if metadata_kind(project) == "jump":
            resolve_tables(annotate)  # validate now, before any request is made
        return cls(annotate, project, dict(metadata_options))

    @property
    def kind(self) -> str:
        return metadata_kind(self.project)

    def reader_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the join-key columns added to ``columns=`` (when it is given)."""
        out = dict(options)
        if out.get("columns") is not None:
            keys = _WELL_KEYS if self.kind == "jump" else PLATEMAP_KEYS
            cols = list(out["columns"])
            out["columns"] = [*[k for k in keys if k not in cols], *cols]
        return out

    def lookups(self, gallery: Any, chosen: pd.DataFrame | None) -> Annotations:
        """The lookups (metadata read on the caller's side, once per request)."""
        if self._lookups is None:
            if self.kind == "jump":
                from .metadata.source import open_store

                store = open_store(**self.metadata_options)
                self._lookups = jump_annotations(store, self.annotate, chosen)
            else:
                if chosen is None:
                    raise ParameterError("platemap annotation needs the plates being loaded")
                self._lookups = gallery_platemap_annotations(
                    gallery, self.project, self.annotate, chosen
                )
        return self._lookups

    def apply(self, ddf: Any, gallery: Any, chosen: pd.DataFrame | None) -> Any:
        """``ddf`` annotated (lazily; the lookups enter the graph once)."""
        return annotate_dask(ddf, self.lookups(gallery, chosen))


def plates_of_keys(keys: Sequence[str]) -> pd.DataFrame:
    """``Metadata_Source, Metadata_Batch, Metadata_Plate`` of gallery keys (one row per plate;
    keys without a plate, such as assembled profiles, give none)."""
    from .layout import parse_key

    rows = set()
    for key in keys:
        p = parse_key(key)
        if p.plate is not None:
            rows.add((p.source, p.batch, p.plate))
    return pd.DataFrame(
        sorted(rows), columns=["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]
    )
