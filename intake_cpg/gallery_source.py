"""The data source behind every table entry of the gallery catalog.

:class:`GallerySource` holds a product's *name and parameters* (project, source, product,
batch, plate, variant, ...), not file paths: it resolves them into files through
:mod:`intake_cpg.resolve` when it is first loaded, then hands the files to
:class:`~intake_cpg.sources.ProfilesSource`, which builds the dask graph. Entries saved to YAML
(``cat.save``) therefore stay short and validated, and a frozen catalog keeps working when new
plates are added to a batch.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from intake.source.base import DataSource, Schema

from . import __version__
from .entries import ENTRY_TABLE, SourceView, validate_params
from .errors import ParameterError
from .outputs import TableOutputs
from .refs import FileRef
from .resolve import ALL, Gallery
from .storage import DEFAULT_ROOT, get_storage

log = logging.getLogger(__name__)

__all__ = ["GallerySource"]

#: Options passed through to :class:`~intake_cpg.sources.ProfilesSource` unchanged.
_READER_OPTIONS = (
    "columns",
    "filters",
    "index",
    "schema",
    "path_metadata",
    "expand_embeddings",
    "files_per_partition",
    "footer_cache",
)


class GallerySource(TableOutputs, DataSource):
    """One product of one source of a gallery, selected by parameters, as a dask dataframe.

    Usually made by the catalog (``cat["cpg0016-jump"]["source_4"]["profiles"](batch=...)``),
    but usable directly:

    >>> import intake_cpg, tempfile
    >>> root = intake_cpg.build_demo(tempfile.mkdtemp()).root
    >>> src = GallerySource(root, project="cpg0016-jump", source="source_4", product="profiles",
    ...                     batch="2021_04_26_Batch1", plate="BR00117037")
    >>> src.to_dask().Metadata_Plate.unique().compute().tolist()
    ['BR00117037']
    """

    container = "dataframe"
    name = "cpg_gallery_table"
    version = __version__
    partition_access = True

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        source: Any = "",
        product: str = "profiles",
        storage_options: dict[str, Any] | None = None,
        *,
        batch: Any = ALL,
        plate: Any = ALL,
        variant: str | None = None,
        model: str | None = None,
        compartment: str | None = None,
        platemap: str | None = None,
        subset: str | None = None,
        version: str | None = None,
        verify: bool = False,
        etag: str | None = None,
        strict: bool = False,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
        annotate: Any = False,
        metadata_root: str | None = None,
        metadata_verify: bool = True,
        metadata_release: str | None = None,
        metadata_cache: str | None = None,
        plate_type: Any = None,
        plates: Any = None,
        plate_query: Any = None,
        **reader_options: Any,
    ) -> None:
        loads = [n for n, r in ENTRY_TABLE.items() if r.select is not None and not r.driver]
        if product not in loads:
            raise ParameterError(
                f"product {product!r} is not a table product; expected one of {sorted(loads)}"
            )
        self.row = row = ENTRY_TABLE[product]
        if row.level == "project":  # source, batch, plate choose among the project's plates
            source = source or ALL
        elif plate_type is not None or plates is not None or plate_query:
            raise ParameterError(
                f"plate_type=, plates= and plate_query= choose plates of a project-level entry "
                f"(cat[{project!r}]['profiles']), not of {project}/{source}/{product}"
            )
        unknown = set(reader_options) - set(_READER_OPTIONS)
        if unknown:
            raise ParameterError(
                f"unknown option(s) {sorted(unknown)} for {product!r}; "
                f"the loader accepts {list(_READER_OPTIONS)}"
            )
        params = {
            "project": project,
            "source": source,
            "batch": batch,
            "plate": plate,
            "variant": variant,
            "model": model,
            "compartment": compartment,
            "platemap": platemap,
            "subset": subset,
            "version": version,
            "plate_type": plate_type,
        }
        validate_params(params, row)  # before any request is made
        if plates is not None:
            from .plates import pairs_of

            pairs_of(plates)  # a clear error now for a frame without source/plate columns
        self.plate_frame = plates
        from .entries import plate_queries

        self.plate_query = plate_queries(plate_query)
        self.root = urlpath
        self.params = params
        self.product = product
        self.verify = bool(verify)
        self.etag = etag or None
        self.strict = bool(strict)
        self.reader_options = reader_options
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir
        )
        self._refs: list[FileRef] | None = None
        self._view: Any = None
        self._inner: Any = None
        self.metadata_options = {
            "metadata_root": metadata_root or None,
            "metadata_verify": bool(metadata_verify),
            "metadata_release": metadata_release or None,
            "metadata_cache": metadata_cache or None,
        }
        # annotate=: the JUMP tables (cpg0016) or the platemaps (see intake_cpg.annotation_sources;
        # imported here, not at module level: `import intake` loads this module and must stay
        # free of pandas)
        from .annotation_sources import AnnotationRequest

        self.annotation = AnnotationRequest.make(annotate, project, **self.metadata_options)
        super().__init__(metadata=metadata)

    # -- resolution -------------------------------------------------------------------------
    @property
    def where(self) -> str:
        p = self.params
        if self.row.level == "project":
            return f"{p['project']}/{self.row.entry_name}"
        return f"{p['project']}/{p['source']}/{self.product}"

    def view(self) -> Any:
        """What the row's selector sees: a :class:`~intake_cpg.entries.SourceView`, or for a
        project-level row a :class:`~intake_cpg.entries.ProjectView` (made once)."""
        if self._view is None:
            p, gallery = self.params, Gallery(self.storage)
            if self.row.level == "project":
                from .project import project_view

                self._view = project_view(
                    gallery,
                    p["project"],
                    self.metadata_options,
                    query=self.plate_query,
                    strict=self.strict,
                )
            else:
                self._view = SourceView(gallery, p["project"], p["source"], strict=self.strict)
        return self._view

    def file_refs(self) -> list[FileRef]:
        """The files this source loads, with what their listing said (listing what it must, once)."""
        if self._refs is None:
            assert self.row.select is not None  # the entry-table contract test checks every row
            self._refs = self.row.select(self.view(), {**self.params, "plates": self.plate_frame})
            log.debug("%s resolved to %d file(s)", self.where, len(self._refs))
        return self._refs

    def plates(self) -> Any:
        """The plates this source loads (``Metadata_Source, Metadata_Batch, Metadata_Plate``;
        for a project-level entry, its rows of the plates table, plate type and variants too).
        """
        if self.row.level == "project":
            from .entries import chosen_plates

            return chosen_plates(
                self.view(), self.row.name, {**self.params, "plates": self.plate_frame}
            )
        from .annotation_sources import plates_of_keys

        return plates_of_keys(self.file_keys())

    def file_keys(self) -> list[str]:
        """Root-relative keys of the files this source loads."""
        return [r.key for r in self.file_refs()]

    def file_urls(self) -> list[str]:
        """Full URLs of the files this source loads."""
        return [r.url for r in self.file_refs()]

    # -- loading ----------------------------------------------------------------------------
    def _loader(self) -> Any:
        if self._inner is None:
            from .sources import ProfilesSource

            refs = self.file_refs()
            found = None
            if self.verify:
                from .etag import verify_files

                found = verify_files(
                    self.storage, [r.key for r in refs], self.etag, subset=self.params.get("subset")
                )
            if found is not None:  # every read, on any worker, is pinned to the verified ETag
                refs = [dataclasses.replace(refs[0], etag=found)]
            self._inner = ProfilesSource(
                refs,
                pin_etags=found is not None,
                storage_options=self.storage.storage_options,
                metadata=self.metadata,
                **(
                    self.annotation.reader_options(self.reader_options)
                    if self.annotation
                    else self.reader_options
                ),
            )
        return self._inner

    def _get_schema(self) -> Schema:
        schema = self._loader()._get_schema()
        self.npartitions = schema["npartitions"]
        self.dtype = schema["dtype"]
        self.shape = schema["shape"]
        urls = self.file_urls()
        self.metadata = {**self.metadata, "n_files": len(urls), "urls": urls[:20]}
        return Schema(
            datashape=None,
            dtype=schema["dtype"],
            shape=schema["shape"],
            npartitions=schema["npartitions"],
            extra_metadata={},
        )

    def _get_partition(self, i: int) -> Any:
        return self._loader()._get_partition(i)

    def read_partition(self, i: int) -> Any:
        self._load_metadata()
        return self._loader().read_partition(i)

    def to_dask(self) -> Any:
        self._load_metadata()
        ddf = self._loader().to_dask()
        if self.annotation is None:
            return ddf
        plates = self.plates()
        return self.annotation.apply(ddf, Gallery(self.storage), plates if len(plates) else None)

    def read(self) -> Any:
        self._load_metadata()
        if self.annotation is not None:
            return self.to_dask().compute()
        return self._loader().read()

    def head(self, n: int = 5, columns: list[str] | None = None) -> Any:
        """The first ``n`` rows, reading only the first batches of the first files."""
        self._load_metadata()
        return self._loader().head(n, columns)

    def _close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self._inner = None
