"""The data source behind every table entry of the gallery catalog.

:class:`GallerySource` holds a product's *name and parameters* (project, source, product,
batch, plate, variant, ...), not file paths: it resolves them into files through
:mod:`intake_cpg.resolve` when it is first loaded, then hands the files to
:class:`~intake_cpg.sources.ProfilesSource`, which builds the dask graph. Entries saved to YAML
(``cat.save``) therefore stay short and validated, and a frozen catalog keeps working when new
plates are added to a batch.
"""

from __future__ import annotations

import logging
from typing import Any

from intake.source.base import DataSource, Schema

from . import __version__, layout
from .errors import ParameterError, not_found
from .resolve import ALL, ENTRY_PRODUCTS, Gallery, is_table, match_names, validate_params
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


class GallerySource(DataSource):
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
        source: str = "",
        product: str = "profiles",
        storage_options: dict[str, Any] | None = None,
        *,
        batch: str = ALL,
        plate: str = ALL,
        variant: str = "",
        model: str | None = None,
        compartment: str = "Cells",
        platemap: str = "barcode_platemap",
        subset: str | None = None,
        version: str | None = None,
        verify: bool = False,
        etag: str | None = None,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
        **reader_options: Any,
    ) -> None:
        if product not in ENTRY_PRODUCTS:
            raise ParameterError(
                f"product {product!r} is not a table product; expected one of {sorted(ENTRY_PRODUCTS)}"
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
        }
        validate_params(params)  # before any request is made
        self.root = urlpath
        self.params = params
        self.product = product
        self.verify = bool(verify)
        self.etag = etag or None
        self.reader_options = reader_options
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir
        )
        self._keys: list[str] | None = None
        self._inner: Any = None
        super().__init__(metadata=metadata)

    # -- resolution -------------------------------------------------------------------------
    @property
    def where(self) -> str:
        p = self.params
        return f"{p['project']}/{p['source']}/{self.product}"

    def file_keys(self) -> list[str]:
        """Root-relative keys of the files this source loads (listing what it must, once)."""
        if self._keys is None:
            self._keys = self._resolve()
            log.debug("%s resolved to %d file(s)", self.where, len(self._keys))
        return self._keys

    def file_urls(self) -> list[str]:
        """Full URLs of the files this source loads."""
        return [self.storage.url(k) for k in self.file_keys()]

    def _resolve(self) -> list[str]:
        p = self.params
        g = Gallery(self.storage)
        if self.product == "profiles_assembled":
            return [self._assembled_key(g)]
        if self.product == "platemaps":
            return self._platemap_keys(g)
        pp = g.plate_product(p["project"], p["source"], self.product, model=p["model"])
        pairs = pp.select(p["batch"], p["plate"], self.where)
        if self.product in ("profiles", "dl_profiles"):
            return g.plate_keys(pp, pairs, p["variant"] or "", self.where)
        if self.product in ("load_data", "backend"):
            if not pp.files:
                raise not_found("table file", "*", [], self.where)
            preferred = [v for v in pp.files if "with_illum" in v] or sorted(pp.files)
            return g.plate_keys(pp, pairs, preferred[0], self.where)
        if self.product == "analysis":
            comp = p["compartment"]
            keys = g.subtree_keys(
                pp,
                pairs,
                lambda e: is_table(e.name) and layout.parse_key(e.key).variant == comp,
            )
            if not keys:
                raise not_found(
                    "compartment", comp, ["Cells", "Cytoplasm", "Nuclei", "Image"], self.where
                )
            return keys
        # embeddings
        keys = g.subtree_keys(pp, pairs, lambda e: layout.parse_key(e.key).extension == "parquet")
        if not keys:
            raise not_found("embedding file", "*.parquet", [], self.where)
        return keys

    def _platemap_keys(self, g: Gallery) -> list[str]:
        p = self.params
        batches = g.platemap_batches(p["project"], p["source"])
        chosen = match_names(p["batch"], batches)
        if not chosen:
            raise not_found("batch", p["batch"], batches, self.where)
        keys = []
        for b in chosen:
            tables = g.platemap_keys(p["project"], p["source"], b)
            if p["platemap"] not in tables:
                raise not_found("platemap", p["platemap"], tables, f"{self.where} ({b})")
            keys.append(tables[p["platemap"]])
        return keys

    def _assembled_key(self, g: Gallery) -> str:
        p = self.params
        tree = g.assembled(p["project"], p["source"])
        subset = p["subset"] or ""
        if subset not in tree:
            raise not_found("subset", subset, tree, self.where)
        versions = tree[subset]
        version = p["version"] or max(versions, key=layout.version_key)
        if version not in versions:
            raise not_found("version", version, versions, f"{self.where}/{subset}")
        variants = versions[version]
        if p["variant"] not in variants:
            raise not_found("variant", p["variant"], variants, f"{self.where}/{subset}/{version}")
        return variants[p["variant"]]

    # -- loading ----------------------------------------------------------------------------
    def _loader(self) -> Any:
        if self._inner is None:
            from .sources import ProfilesSource

            keys = self.file_keys()
            if self.verify:
                from .etag import verify_files

                verify_files(self.storage, keys, self.etag, subset=self.params.get("subset"))
            self._inner = ProfilesSource(
                [self.storage.url(k) for k in keys],
                storage_options=self.storage.storage_options,
                metadata=self.metadata,
                **self.reader_options,
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
        return self._loader().to_dask()

    def read(self) -> Any:
        self._load_metadata()
        return self._loader().read()

    def _close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self._inner = None
