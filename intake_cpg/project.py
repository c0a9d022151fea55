"""Project-level entries: plates chosen by what they hold, across sources, annotated.

* :class:`ProjectPlatesSource` (``cat[project]["plates"]``): one row per plate of the project
  with ``Metadata_Source, Metadata_Batch, Metadata_Plate``, ``Metadata_PlateType`` where the
  metadata has it (cpg0016: the JUMP ``plate`` table) and the ``variants`` present (learnt from
  one sample plate per batch, as the per-source entries learn them).
* :class:`ProjectProfilesSource` (``cat[project]["profiles"]``): per-plate profiles of every
  source, chosen by ``source``, ``batch``, ``plate`` (names, globs, lists), ``plate_type`` and
  ``plates=`` (a DataFrame of source/plate pairs, e.g. the plates table filtered with pandas),
  with the per-source loader options (``columns=``, ``filters=``, ``schema=``, ...) and
  ``annotate=``.
* :func:`search` / :func:`unique`: the plates table filtered and summarised, as in intake-esm.

Listing cost: one listing per source and batch (and one sample plate folder per batch), the
same as opening each source's ``profiles`` entry; nothing is read until ``to_dask()``.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from intake.source.base import DataSource, Schema

from . import __version__
from .annotation_sources import AnnotationRequest, metadata_kind
from .errors import ParameterError, not_found
from .frame_source import FrameSource
from .metadata.source import open_store
from .plates import plates_table, select_plates
from .resolve import Gallery, choose_variant
from .storage import DEFAULT_ROOT, get_storage

log = logging.getLogger(__name__)

__all__ = ["ProjectPlatesSource", "ProjectProfilesSource", "search", "unique"]


#: Options of every project-level source (the rest go to the profiles loader).
_BASE_OPTIONS = (
    "cache_dir",
    "listing_ttl",
    "metadata_root",
    "metadata_verify",
    "metadata_release",
    "metadata_cache",
    "metadata",
)


class _ProjectBase(DataSource):
    container = "dataframe"
    version = __version__
    partition_access = True

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata_root: str | None = None,
        metadata_verify: bool = True,
        metadata_release: str | None = None,
        metadata_cache: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.root = urlpath
        self.project = project
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir or None
        )
        self.metadata_options = {
            "metadata_root": metadata_root or None,
            "metadata_verify": bool(metadata_verify),
            "metadata_release": metadata_release or None,
            "metadata_cache": metadata_cache or None,
        }
        self._store: Any = None
        self._plates: pd.DataFrame | None = None
        self._products: dict[str, Any] = {}
        super().__init__(metadata={"project": project, **(metadata or {})})

    @property
    def store(self) -> Any:
        """The JUMP metadata store (opened on first use)."""
        if self._store is None:
            self._store = open_store(**self.metadata_options)
        return self._store

    def plates(self) -> pd.DataFrame:
        """The project's plates table (listed once per source)."""
        if self._plates is None:
            g = Gallery(self.storage)
            found = []
            for source in g.sources(self.project):
                if "profiles" not in g.present(self.project, source, ("profiles",)):
                    continue
                pp = g.plate_product(self.project, source, "profiles", learn_files=True)
                self._products[source] = pp
                for batch, plates in pp.plates.items():
                    for plate in plates:
                        found.extend((source, batch, plate, v) for v in pp.variants or ("",))
            meta = self.store.read("plate") if metadata_kind(self.project) == "jump" else None
            self._plates = plates_table(found, meta)
        return self._plates


class ProjectPlatesSource(FrameSource, _ProjectBase):
    """The plates of a project, one row each (see the module text)."""

    name = "cpg_project_plates"

    def _make_frame(self) -> pd.DataFrame:
        return self.plates()


class ProjectProfilesSource(_ProjectBase):
    """Per-plate profiles of a project across its sources (see the module text)."""

    name = "cpg_project_profiles"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        source: Any = None,
        batch: Any = None,
        plate: Any = None,
        plate_type: Any = None,
        plates: pd.DataFrame | None = None,
        variant: str | None = None,
        annotate: Any = False,
        **options: Any,
    ) -> None:
        base = {k: options.pop(k) for k in _BASE_OPTIONS if k in options}
        super().__init__(urlpath, project, storage_options, **base)
        reader_options = options
        self.selection = {
            "source": source or None,
            "batch": batch or None,
            "plate": plate or None,
            "plate_type": plate_type or None,
        }
        self.plate_frame = plates
        self.variant = variant
        self.annotate = annotate
        self.request = AnnotationRequest.make(annotate, project, **self.metadata_options)
        self.reader_options = reader_options
        self._inner: Any = None

    def chosen(self) -> pd.DataFrame:
        """The plates this source loads (rows of the plates table)."""
        sel = {k: v for k, v in self.selection.items() if v != "*"}
        return select_plates(
            self.plates(), **sel, plates=self.plate_frame, where=f"{self.project} profiles"
        )

    def file_urls(self) -> list[Any]:
        """One file reference per chosen plate (the chosen variant, default per source)."""
        g = Gallery(self.storage)
        chosen = self.chosen()
        urls = []
        for source, rows in chosen.groupby("Metadata_Source", sort=True):
            pp = self._products[source]
            variant = self.variant if self.variant is not None else choose_variant(pp.variants)
            if variant not in pp.files:
                raise not_found(
                    "variant",
                    variant or "(bare file)",
                    [v or "(bare file)" for v in pp.files],
                    f"{self.project}/{source}/profiles",
                )
            pairs = zip(rows.Metadata_Batch, rows.Metadata_Plate, strict=True)
            urls.extend(g.plate_file(pp, b, p, variant) for b, p in pairs)
        return urls

    def _loader(self) -> Any:
        if self._inner is None:
            from .sources import ProfilesSource

            options = self.reader_options
            if self.request is not None:
                options = self.request.reader_options(options)
            self._inner = ProfilesSource(
                self.file_urls(),
                storage_options=self.storage.storage_options,
                metadata=self.metadata,
                **options,
            )
        return self._inner

    def _get_schema(self) -> Schema:
        ddf = self.to_dask()
        return Schema(
            datashape=None,
            dtype={c: str(t) for c, t in ddf.dtypes.items()},
            shape=(None, len(ddf.columns)),
            npartitions=ddf.npartitions,
            extra_metadata={},
        )

    def to_dask(self) -> Any:
        """The lazy dask dataframe (annotated when ``annotate=`` is given)."""
        ddf = self._loader().to_dask()
        if self.request is None:
            return ddf
        return self.request.apply(ddf, Gallery(self.storage), self.chosen())

    def _get_partition(self, i: int) -> pd.DataFrame:
        return self.to_dask().get_partition(i).compute()

    def read(self) -> pd.DataFrame:
        """Every chosen plate, concatenated (annotated when asked)."""
        return self.to_dask().compute()


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
    unknown = set(query) - {"source", "batch", "plate", "plate_type"}
    if unknown:
        raise ParameterError(
            f"search() takes source, batch, plate and plate_type, not {', '.join(sorted(unknown))}"
        )
    return select_plates(plates, **query)
