"""Project-level entries (the ``level="project"`` rows of the entry table), Intake side.

A project catalog lists, next to its sources, the rows of
:data:`~intake_cpg.entries.ENTRY_TABLE` at the project level:

* ``cat[project]["profiles"]``: per-plate profiles of every source, chosen by ``source``,
  ``batch``, ``plate`` (names, globs, lists), ``plate_type`` (where the project's metadata has
  it) and ``plates=`` (a DataFrame of source/plate pairs, e.g. the plates table filtered with
  pandas), with the per-source loader options (``columns=``, ``filters=``, ...) and
  ``annotate=``. It loads through :class:`~intake_cpg.gallery_source.GallerySource`, like
  every per-source table; :class:`ProjectProfilesSource` is the same with the project's
  signature (``catalogs/*.yaml`` name it).
* ``cat[project]["plates"]`` (:class:`ProjectPlatesSource`): one row per plate,
  ``Metadata_Source, Metadata_Batch, Metadata_Plate``, ``Metadata_PlateType`` where known
  (cpg0016: the JUMP ``plate`` table) and the ``variants`` present.
* ``cat[project]["metadata"]`` (:class:`ProjectMetadataCatalog`, JUMP projects only): one entry
  per table of the pinned JUMP datasets release.

:func:`project_view` makes the :class:`~intake_cpg.entries.ProjectView` those rows read
(which projects have the JUMP tables is :data:`~intake_cpg.annotation_sources.PROJECT_METADATA`).
:func:`search` and :func:`unique` filter and summarise a plates table (the project catalog has
them as methods, as in intake-esm).

Listing cost: one listing per source and batch (and one sample plate folder per batch), the
same as opening each source's ``profiles`` entry; nothing is read until ``to_dask()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .annotation_sources import metadata_kind
from .entries import ENTRY_TABLE, ProjectView, plate_queries, validate_plate_query
from .errors import ParameterError
from .frame_source import FrameSource
from .gallery_source import GallerySource
from .metadata.source import MetadataCatalog, open_store
from .plates import select_plates
from .resolve import Gallery
from .storage import DEFAULT_ROOT, get_storage

log = logging.getLogger(__name__)

__all__ = [
    "ProjectMetadataCatalog",
    "ProjectPlatesSource",
    "ProjectProfilesSource",
    "project_view",
    "search",
    "unique",
]

#: The options that say where a project's external metadata is (``open_store``'s parameters).
METADATA_OPTIONS = ("metadata_root", "metadata_verify", "metadata_release", "metadata_cache")


def metadata_options(**given: Any) -> dict[str, Any]:
    """The metadata options from catalog-style arguments (``""`` means "not given")."""
    return {
        "metadata_root": given.get("metadata_root") or None,
        "metadata_verify": bool(given.get("metadata_verify", True)),
        "metadata_release": given.get("metadata_release") or None,
        "metadata_cache": given.get("metadata_cache") or None,
    }


def project_view(
    gallery: Gallery,
    project: str,
    options: Mapping[str, Any] | None = None,
    *,
    query: Any = None,
    strict: bool = False,
) -> ProjectView:
    """The view the project-level rows read: the JUMP metadata store (opened on first use)
    for the projects that have it, nothing for the others."""
    store = None
    if metadata_kind(project) == "jump":
        opened: list[Any] = []
        opts = metadata_options(**(options or {}))

        def store() -> Any:
            if not opened:
                opened.append(open_store(**opts))
            return opened[0]

    return ProjectView(gallery, project, store=store, query=query, strict=strict)


class ProjectProfilesSource(GallerySource):
    """Per-plate profiles of a project across its sources (the project's ``profiles`` entry).

    The same as ``GallerySource(product="project_profiles")`` with the project's signature:

    >>> import intake_cpg, tempfile
    >>> root = intake_cpg.build_demo(tempfile.mkdtemp()).root
    >>> src = ProjectProfilesSource(root, "cpg0004-lincs", plate="SQ00015116")
    >>> src.chosen().Metadata_Plate.tolist(), len(src.read())
    (['SQ00015116'], 384)
    """

    name = "cpg_project_profiles"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        variant: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("product", None)
        super().__init__(
            urlpath,
            project=project,
            product="project_profiles",
            storage_options=storage_options,
            variant=variant,  # None: the project's default
            **kwargs,
        )

    def chosen(self) -> pd.DataFrame:
        """The rows of the plates table this source loads."""
        return self.plates()


class ProjectPlatesSource(FrameSource):
    """The plates of a project, one row each (the project's ``plates`` entry).

    ``plate_query`` (plate criteria, or a list of them) narrows the table (what
    ``ProjectCatalog.search`` keeps).
    """

    name = "cpg_project_plates"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        product: str = "project_plates",
        plate_query: Any = None,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - set(METADATA_OPTIONS)
        if unknown:
            raise ParameterError(
                f"unknown option(s) {sorted(unknown)} for {project}/plates; it takes "
                f"{list(METADATA_OPTIONS)}, plate_query, cache_dir and listing_ttl"
            )
        self.row = ENTRY_TABLE[product]
        self.root = urlpath
        self.project = project
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir or None
        )
        self.metadata_options = metadata_options(**options)
        self.plate_query = plate_queries(plate_query)
        self._view: ProjectView | None = None
        super().__init__(metadata={"project": project, **(metadata or {})})

    def view(self) -> ProjectView:
        if self._view is None:
            self._view = project_view(
                Gallery(self.storage), self.project, self.metadata_options, query=self.plate_query
            )
        return self._view

    def _make_frame(self) -> pd.DataFrame:
        return self.view().plates(self.row.product)

    def file_refs(self) -> list[Any]:
        """The per-plate files the table describes (each plate's default variant)."""
        assert self.row.select is not None
        return self.row.select(self.view(), {})


class ProjectMetadataCatalog(MetadataCatalog):
    """The project's JUMP metadata tables (the project's ``metadata`` entry): a
    :class:`~intake_cpg.metadata.source.MetadataCatalog` opened with the project's signature
    (the gallery's location is accepted and not needed: the tables are not in the bucket)."""

    name = "cpg_project_metadata"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        product: str = "project_metadata",
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        plate_query: Any = None,
        **options: Any,
    ) -> None:
        kwargs = {k: v for k, v in options.items() if k not in METADATA_OPTIONS}
        if metadata_kind(project) != "jump":
            raise ParameterError(
                f"{project} has no JUMP metadata tables (they exist for "
                "cpg0016-jump and cpg0016-jump-assembled); its platemaps are per source"
            )
        self.project = project
        opts = metadata_options(**options)
        super().__init__(**opts, **kwargs)
        self.metadata = {**(self.metadata or {}), "project": project}


def unique(plates: pd.DataFrame) -> dict[str, list[Any]]:
    """The distinct values of each plates-table column (``variants`` flattened), as in intake-esm.

    >>> import pandas as pd
    >>> unique(pd.DataFrame({"Metadata_Source": ["s2", "s1"], "variants": [("",), ("", "a")]}))
    {'Metadata_Source': ['s1', 's2'], 'variants': ['', 'a']}
    """
    out: dict[str, list[Any]] = {}
    for col in plates.columns:
        values = plates[col].dropna()
        if col == "variants":
            out[col] = sorted({v for vs in values for v in vs})
        else:
            out[col] = sorted(set(values))
    return out


def search(plates: pd.DataFrame, **query: Any) -> pd.DataFrame:
    """The plates matching ``source``, ``batch``, ``plate``, ``plate_type`` (names, globs, lists).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"Metadata_Source": ["s1", "s2"], "Metadata_Batch": ["b", "b"],
    ...                   "Metadata_Plate": ["p1", "p2"], "Metadata_PlateType": ["ORF", "TARGET2"]})
    >>> search(t, plate_type="TARGET2").Metadata_Plate.tolist()
    ['p2']
    """
    validate_plate_query(query)
    return select_plates(plates, **query)
