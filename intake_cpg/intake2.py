"""The gallery in Intake 2's current API: ``intake.readers`` readers, data types and catalogs.

Intake imports this module when it starts (``intake.imports`` entry point), so its readers are
known to ``intake.readers.recommend`` without importing intake-cpg. It imports no pandas:
everything heavy is imported when data is read.

**Data types** (one per table entry of a gallery source): ``CPGProfiles``, ``CPGLoadData``,
``CPGAnalysis``, ``CPGBackend``, ``CPGPlatemaps``, ``CPGDlProfiles``, ``CPGEmbeddings`` and
``CPGProfilesAssembled`` say *where* a table is (gallery root, storage options, project,
source; subset and manifest ETag for assembled profiles). :class:`CellPaintingGallery` is a
gallery root, read as a catalog.

**Readers** (one per data type and output, generated from :data:`ENTRIES` and
:data:`OUTPUTS`): ``Pandas<Type>``, ``Dask<Type>``, ``Polars<Type>``, ``PolarsLazy<Type>`` and
``Arrow<Type>`` take the entry's parameters (``batch``, ``plate``, ``variant``, ...) and the
loader's options (``columns``, ``filters``, ...) and read through the v1 sources, so the
values, dtype rules and ETag pinning are the same. ``reader.to_reader("polars")`` keeps the
parameters and changes the output.

**Catalogs**: :func:`to_catalog` (``cat.to_intake2()`` on every v1 level) makes an
``intake.readers.entry.Catalog`` of one level: sub-levels are catalog readers (listed when
read), tables are readers with user parameters carrying the allowed values, resolved when an
entry is first looked at. It saves with ``to_yaml_file`` and re-opens with
``intake.from_yaml_file`` / ``intake.open_catalog`` without listing anything.

>>> import intake, intake_cpg, tempfile
>>> root = intake_cpg.build_demo(tempfile.mkdtemp()).root
>>> reader = PandasCPGProfiles(root, project="cpg0016-jump", source="source_4",
...                            batch="2021_04_26_Batch1", plate="BR00117037")
>>> reader.read()["Metadata_Plate"].unique().tolist()
['BR00117037']
>>> reader.to_reader("polars:LazyFrame").read().select("Metadata_Well").collect().height
384
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from intake.readers import BaseReader, datatypes
from intake.readers.entry import Catalog, DataDescription, ReaderDescription
from intake.readers.user_parameters import BaseUserParameter, SimpleUserParameter
from intake.readers.utils import LazyDict, PartlyLazyDict
from intake.readers.utils import to_dict as _intake_to_dict

from . import layout
from .entries import ENTRY_TABLE, validate_params
from .errors import ParameterError, not_found
from .gallery_source import _READER_OPTIONS
from .resolve import match_names
from .storage import DEFAULT_ROOT

__all__ = [
    "ENTRIES",
    "OUTPUTS",
    "CPGSource",
    "CPGSourceReader",
    "CellPaintingGallery",
    "GalleryCatalogReader",
    "GalleryTableData",
    "GalleryTableReader",
    "GalleryV2Catalog",
    "EntryDescription",
    "NameParameter",
    "Output",
    "data_class",
    "gallery_catalog",
    "public_catalog_yaml",
    "reader_class",
    "to_catalog",
]


# =============================================================================================
# what is generated: entries x outputs
# =============================================================================================
@dataclass(frozen=True)
class EntryDescription:
    """What a table entry needs to get its Intake 2 data type and readers.

    ``name`` is the catalog entry name (and :class:`~intake_cpg.gallery_source.GallerySource`
    product); ``parameters`` are the entry's user parameters; ``fixed`` are the data fields
    the catalog fills in beyond project and source (for an entry that is a catalog of
    sub-entries, the parameter that names them, and the manifest's ETag).
    """

    name: str
    parameters: tuple[str, ...]
    fixed: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The class-name stem: ``dl_profiles`` -> ``DlProfiles`` (``CPGDlProfiles``, ...)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @classmethod
    def of(cls, name: str, parameters: tuple[str, ...], catalog: bool = False) -> EntryDescription:
        """The description of an entry; a ``catalog`` entry's first parameter names its
        sub-entries, so it is a data field (with the manifest ETag), not a parameter."""
        if catalog:
            return cls(name, parameters[1:], (parameters[0], "etag"))
        return cls(name, parameters)


#: One description per row of the entry table (:data:`intake_cpg.entries.ENTRY_TABLE`) that
#: loads as a gallery table or is a catalog of them; a row added to the table gets its data
#: type and readers from this line. (Rows with their own v1 ``driver``, a project's plates
#: table and metadata catalog, are read through :class:`CPGSourceReader`.)
ENTRIES: tuple[EntryDescription, ...] = tuple(
    EntryDescription.of(
        row.name, tuple(p.name for p in row.params), catalog=row.output == "catalog"
    )
    for row in ENTRY_TABLE.values()
    if row.output in ("table", "catalog") and not row.driver
)


def _read_pandas(src: Any) -> Any:
    return src.read()


def _read_dask(src: Any) -> Any:
    return src.to_dask()


def _read_polars(src: Any) -> Any:
    from .outputs import to_polars

    return to_polars(src)


def _read_polars_lazy(src: Any) -> Any:
    from .outputs import scan_polars

    return scan_polars(src)


def _read_arrow(src: Any) -> Any:
    from .outputs import to_arrow

    return to_arrow(src)


@dataclass(frozen=True)
class Output:
    """One output container: reader-class prefix, Intake output type, packages, how to read."""

    prefix: str
    instance: str
    imports: frozenset[str]
    read: Callable[[Any], Any]


#: Output name -> how the readers of that output read a loaded source.
OUTPUTS: Mapping[str, Output] = MappingProxyType(
    {
        "pandas": Output("Pandas", "pandas:DataFrame", frozenset({"pandas"}), _read_pandas),
        "dask": Output("Dask", "dask.dataframe:DataFrame", frozenset({"dask"}), _read_dask),
        "polars": Output("Polars", "polars:DataFrame", frozenset({"polars"}), _read_polars),
        "polars_lazy": Output(
            "PolarsLazy", "polars:LazyFrame", frozenset({"polars"}), _read_polars_lazy
        ),
        "arrow": Output("Arrow", "pyarrow:Table", frozenset({"pyarrow"}), _read_arrow),
    }
)

#: Data fields that say where the gallery is and how to reach it (not what to read).
_STORAGE_FIELDS = ("urlpath", "storage_options", "cache_dir", "listing_ttl")


# =============================================================================================
# data types
# =============================================================================================
class _GalleryLocation(datatypes.BaseData):
    """A gallery root and how to reach it (shared by the data types below)."""

    def __init__(
        self,
        url: str = DEFAULT_ROOT,
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ParameterError(f"the gallery root must be a URL or a path, got {url!r}")
        self.url = url
        self.storage_options = dict(storage_options or {}) or None
        self.cache_dir = cache_dir or None
        self.listing_ttl = float(listing_ttl)
        super().__init__(metadata=metadata)

    def _storage(self) -> dict[str, Any]:
        """Keyword arguments of the v1 classes for this root."""
        return {
            "urlpath": self.url,
            "storage_options": self.storage_options,
            "cache_dir": self.cache_dir,
            "listing_ttl": self.listing_ttl,
        }


class CellPaintingGallery(_GalleryLocation):
    """A Cell Painting Gallery root (the public bucket, a mirror or a copy), read as a catalog.

    >>> CellPaintingGallery().url
    's3://cellpainting-gallery'
    """

    structure = {"catalog"}
    filepattern = "^s3://cellpainting-gallery"


class GalleryTableData(_GalleryLocation):
    """One table entry of one gallery source; subclasses (one per entry) are generated."""

    structure = {"table"}
    #: The entry this data type is (set on the generated subclasses).
    entry: ClassVar[str] = ""

    def __init__(
        self,
        url: str = DEFAULT_ROOT,
        project: str = "",
        source: str = "",
        storage_options: dict[str, Any] | None = None,
        subset: str | None = None,
        etag: str | None = None,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
        metadata_options: dict[str, Any] | None = None,
        **reader_arguments: Any,
    ) -> None:
        # Intake 2 hands a catalog's parameter values (``cat(batch=...)``) to every data
        # description as well as to the reader; the reader checks them, the data ignores them.
        layout.validate_name(project, "project")
        if source:  # project-level entries span the sources (``source`` is their parameter)
            layout.validate_name(source, "source")
        if subset is not None:
            layout.validate_name(subset, "subset")
        self.project = project
        self.source = source
        self.subset = subset
        self.etag = etag or None
        # where annotate= and the project-level entries find the JUMP metadata (when set)
        self.metadata_options = dict(metadata_options or {}) or None
        super().__init__(url, storage_options, cache_dir, listing_ttl, metadata)


# =============================================================================================
# readers
# =============================================================================================
class GalleryTableReader(BaseReader):
    """Base of the generated table readers: parameters checked on creation, read via v1.

    ``read()`` opens a :class:`~intake_cpg.gallery_source.GallerySource` with the data's
    location and the reader's parameters and options, and hands it to the output's reader.
    """

    #: Set on the generated subclasses.
    entry: ClassVar[EntryDescription]
    output: ClassVar[str]

    def __init__(
        self,
        *args: Any,
        metadata: dict[str, Any] | None = None,
        output_instance: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, metadata=metadata, output_instance=output_instance, **kwargs)
        self._check(self.kwargs)

    @classmethod
    def _check(cls, kwargs: Mapping[str, Any]) -> None:
        known = {*cls.entry.parameters, *_READER_OPTIONS, "parameters"}
        unknown = sorted(k for k in kwargs if k not in known and k not in ("args", "data"))
        chosen = kwargs.get("parameters") or {}
        if not isinstance(chosen, Mapping):
            raise ParameterError(f"parameters= takes a mapping of names to values, got {chosen!r}")
        unknown += sorted(f"parameters[{k!r}]" for k in chosen if k not in cls.entry.parameters)
        if unknown:
            raise ParameterError(
                f"{cls.__name__} ({cls.entry.name!r}) takes no parameter(s) {unknown}; "
                f"its parameters are {list(cls.entry.parameters)} and the loader's options "
                f"{list(_READER_OPTIONS)}"
            )
        names = {k: v for k, v in cls._chosen(kwargs).items() if k != "verify"}
        validate_params(names, ENTRY_TABLE[cls.entry.name])  # before any request is made

    @classmethod
    def _chosen(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The entry's parameters: ``parameters={...}`` (how catalogs template them, since an
        Intake 2 parameter cannot share its name with a reader argument), then keywords."""
        out = dict(kwargs.get("parameters") or {})
        out.update({k: v for k, v in kwargs.items() if k in cls.entry.parameters})
        return out

    def _read(self, data: GalleryTableData, **kwargs: Any) -> Any:
        from .gallery_source import GallerySource

        self._check(kwargs)
        fixed = {k: getattr(data, k) for k in self.entry.fixed}
        options = {k: v for k, v in kwargs.items() if k in _READER_OPTIONS}
        where = {"project": data.project, **({"source": data.source} if data.source else {})}
        src = GallerySource(
            **where,
            product=self.entry.name,
            metadata=dict(self.metadata),
            **data._storage(),
            **(data.metadata_options or {}),
            **fixed,
            **self._chosen(kwargs),
            **options,
        )
        return OUTPUTS[self.output].read(src)

    def to_reader(
        self, outtype: str | tuple[str, ...] | None = None, reader: Any = None, **kw: Any
    ) -> BaseReader:
        """The reader of the same data and parameters for another output.

        ``outtype`` is one of :data:`OUTPUTS` (``"pandas"``, ``"dask"``, ``"polars"``,
        ``"polars_lazy"``, ``"arrow"``) or, as in Intake, an output type or a pattern of one
        (``"polars:LazyFrame"``); Intake's own ``to_reader`` would drop this reader's
        parameters.
        """
        if isinstance(outtype, str) and outtype in OUTPUTS and reader is None:
            cls: type[BaseReader] = reader_class(self.entry.name, outtype)
        else:
            cls = self.data.to_reader_cls(outtype, reader)
        kwargs = {k: v for k, v in self.kwargs.items() if k not in ("args", "data")}
        kwargs.update(kw)
        return cls(self.data, metadata=dict(self.metadata), **kwargs)


_DATA_CLASSES: dict[str, type[GalleryTableData]] = {}
_READER_CLASSES: dict[tuple[str, str], type[GalleryTableReader]] = {}


def _generate(entry: EntryDescription) -> None:
    """Make and publish (in this module) the data type and the readers of one entry."""
    params = ", ".join(entry.parameters)
    data_name = f"CPG{entry.stem}"
    data_cls = type(
        data_name,
        (GalleryTableData,),
        {
            "__module__": __name__,
            "__qualname__": data_name,
            "__doc__": f"The gallery entry {entry.name!r} of one project and source.",
            "entry": entry.name,
        },
    )
    _DATA_CLASSES[entry.name] = data_cls
    globals()[data_name] = data_cls
    for key, out in OUTPUTS.items():
        name = f"{out.prefix}{data_name}"
        cls = type(
            name,
            (GalleryTableReader,),
            {
                "__module__": __name__,
                "__qualname__": name,
                "__doc__": (
                    f"The gallery entry {entry.name!r} as {out.instance}.\n\n"
                    f"Parameters: {params}; loader options: {', '.join(_READER_OPTIONS)}."
                ),
                "implements": {data_cls},
                "imports": set(out.imports),
                "output_instance": out.instance,
                "entry": entry,
                "output": key,
            },
        )
        _READER_CLASSES[(entry.name, key)] = cls
        globals()[name] = cls


for _entry in ENTRIES:
    _generate(_entry)
del _entry

#: Entry name -> its data type; ``(entry, output)`` -> its reader (read-only views).
DATA_CLASSES: Mapping[str, type[GalleryTableData]] = MappingProxyType(_DATA_CLASSES)
READER_CLASSES: Mapping[tuple[str, str], type[GalleryTableReader]] = MappingProxyType(
    _READER_CLASSES
)


def data_class(entry: str) -> type[GalleryTableData]:
    """The data type of a table entry (``"profiles"`` -> ``CPGProfiles``)."""
    if entry not in DATA_CLASSES:
        raise not_found("table entry", entry, list(DATA_CLASSES), "intake_cpg.intake2")
    return DATA_CLASSES[entry]


def reader_class(entry: str, output: str = "pandas") -> type[GalleryTableReader]:
    """The reader of a table entry for an output (``"pandas"``, ``"dask"``, ``"polars"``,
    ``"polars_lazy"``, ``"arrow"``).

    >>> reader_class("profiles", "polars").__name__
    'PolarsCPGProfiles'
    """
    data_class(entry)
    if output not in OUTPUTS:
        raise not_found("output", output, list(OUTPUTS), "intake_cpg.intake2")
    return READER_CLASSES[(entry, output)]


class CPGSource(datatypes.BaseData):
    """An intake-cpg v1 data source or catalog, by class and arguments: the entries that are
    not gallery tables (a project's ``plates`` table, its JUMP ``metadata`` catalog and the
    tables in it). Only intake-cpg's own classes are opened."""

    structure = {"table"}

    def __init__(
        self,
        driver: str,
        args: dict[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(driver, str) or not driver.startswith(__package__ + "."):
            raise ParameterError(
                f"CPGSource opens intake-cpg's own sources only, got driver {driver!r}"
            )
        self.driver = driver
        self.args = dict(args or {})
        self.storage_options = dict(storage_options or {}) or None
        super().__init__(metadata=metadata)

    def open(self, **kwargs: Any) -> Any:
        """The v1 source or catalog."""
        import importlib

        module, _, name = self.driver.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        args = {**self.args, **kwargs}
        if self.storage_options is not None:
            args["storage_options"] = self.storage_options
        return cls(**args)


def _frame_output(output: str, frame: Any) -> Any:
    if output == "pandas":
        return frame
    if output in ("polars", "polars_lazy"):
        import polars as pl

        out = pl.from_pandas(frame)
        return out.lazy() if output == "polars_lazy" else out
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


class CPGSourceReader(BaseReader):
    """Reads a :class:`CPGSource`: a table as ``output`` (``"pandas"``, ``"dask"``, ...), a
    catalog as a :class:`GalleryV2Catalog` of such readers."""

    implements = {CPGSource}
    imports = {"intake_cpg"}
    output_instance = "pandas:DataFrame"

    def _read(self, data: CPGSource, output: str = "pandas", **kwargs: Any) -> Any:
        from intake.catalog import Catalog as V1Catalog

        if output not in OUTPUTS:
            raise not_found("output", output, list(OUTPUTS), "CPGSourceReader")
        src = data.open(**kwargs)
        if isinstance(src, V1Catalog):
            return _v1_catalog(src, output)
        if output == "dask":
            return src.to_dask()
        return _frame_output(output, src.read())


def _source_description(v1: Any, output: str) -> tuple[DataDescription, ReaderDescription]:
    """The data and reader descriptions of a v1 entry opened through :class:`CPGSourceReader`."""
    from intake.catalog import Catalog as V1Catalog

    cls = v1._plugin[0]
    # a parameter still templated (a source's images entry) is left to the source's own
    # default, and given when read: ``reader.read(batch=...)``
    args = {k: v for k, v in v1._open_args.items() if v != "{{ " + k + " }}"}
    options = args.pop("storage_options", None)
    data = CPGSource(f"{cls.__module__}.{cls.__name__}", args, options).to_entry()
    catalog = issubclass(cls, V1Catalog)
    instance = GalleryCatalogReader.output_instance if catalog else OUTPUTS[output].instance
    reader = ReaderDescription(
        reader=CPGSourceReader.qname(),
        kwargs={"data": _ref(data.token), "output": output},
        # what the entry says of itself without listing (a lazy entry's own metadata waits)
        metadata={"description": v1._description, **dict(_listed_metadata(v1))},
        output_instance=instance,
    )
    return data, reader


def _listed_metadata(v1: Any) -> Mapping[str, Any]:
    base = getattr(v1, "_base_metadata", None)
    return base if base is not None else (v1._metadata or {})


def _v1_catalog(cat: Any, output: str) -> GalleryV2Catalog:
    """A v1 catalog of intake-cpg sources (the JUMP metadata tables) as a v2 catalog."""
    data: dict[str, DataDescription] = {}
    entries: dict[str, ReaderDescription] = {}
    for name, v1 in cat._get_entries().items():
        desc, reader = _source_description(v1, output)
        data[desc.token] = desc
        entries[name] = reader
    return GalleryV2Catalog(
        entries=entries,
        aliases={n: n for n in entries},
        data=data,
        metadata={**(cat.metadata or {}), "name": cat.name},
    )


# =============================================================================================
# user parameters
# =============================================================================================
class NameParameter(BaseUserParameter):
    """A gallery name: one of ``options``, a glob matching some of them (``glob=True``), or,
    without options, any plain name (a glob for ``batch``/``plate``).

    A value that does not fit raises :class:`~intake_cpg.errors.ProductNotFoundError` naming
    the close matches (Intake's own parameters raise a bare ``ValueError``).

    >>> p = NameParameter("batch", "*", "batch folder", ["2021_04_26_Batch1", "*"], glob=True)
    >>> p.with_default("2021_*").default
    '2021_*'
    >>> p.with_default("2021_04_26_Batch9")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ProductNotFoundError: no batch named '2021_04_26_Batch9' in parameter 'batch'; did you mean '2021_04_26_Batch1'? Available: *, 2021_04_26_Batch1.
    """

    def __init__(
        self,
        name: str,
        default: str,
        description: str = "",
        options: list[str] | tuple[str, ...] = (),
        glob: bool = False,
    ) -> None:
        self.name = name
        self.options = [str(o) for o in options]
        self.glob = bool(glob)
        super().__init__(default=default, description=description)

    def _validate(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if not self.options:
            validate_params({self.name: value})
            return True
        return value in self.options or (self.glob and bool(match_names(value, self.options)))

    def set_default(self, value: Any) -> None:
        if self.options and isinstance(value, str) and not self._validate(value):
            raise not_found(self.name, value, self.options, f"parameter {self.name!r}")
        if not self.options:
            validate_params({self.name: value})  # ParameterError naming the value
        elif not isinstance(value, str):
            raise ParameterError(f"parameter {self.name!r} takes a name, got {value!r}")
        self.default = value


def _v2_parameter(p: Any) -> BaseUserParameter:
    """The Intake 2 parameter for a v1 ``UserParameter`` (same default, description, choices)."""
    from .catalog import GlobParameter

    if p.type == "bool":
        return SimpleUserParameter(dtype=bool, default=bool(p.default), description=p.description)
    return NameParameter(
        p.name,
        p.default,
        p.description,
        list(p.allowed or ()),
        glob=isinstance(p, GlobParameter),
    )


# =============================================================================================
# catalogs
# =============================================================================================
class GalleryCatalogReader(BaseReader):
    """A gallery level (the root, a project, a source, its assembled profiles) as a v2 catalog.

    Reading lists that one level (as the v1 catalog does when it is iterated) and returns a
    :class:`GalleryV2Catalog` of its entries.
    """

    implements = {CellPaintingGallery}
    imports = {"intake_cpg"}
    output_instance = "intake.readers.entry:Catalog"

    def _read(
        self,
        data: CellPaintingGallery,
        level: str = "gallery",
        output: str = "dask",
        **level_args: Any,
    ) -> GalleryV2Catalog:
        from . import catalog as v1

        classes = {
            c.kind: c
            for c in (v1.GalleryCatalog, v1.ProjectCatalog, v1.SourceCatalog, v1.AssembledCatalog)
        }
        if level not in classes:
            raise not_found("catalog level", level, list(classes), "GalleryCatalogReader")
        # a catalog's ``cat(storage_options=...)`` reaches the data and this reader alike;
        # the data has applied it
        for k in ("url", "storage_options", "cache_dir", "listing_ttl"):
            level_args.pop(k, None)
        opened = classes[level](**data._storage(), **level_args)
        return to_catalog(opened, output)


class GalleryV2Catalog(Catalog):
    """An ``intake.readers.entry.Catalog`` whose table entries are built when first used.

    ``to_dict`` (so ``to_yaml_file``) builds them all and leaves secret ``storage_options``
    values out, as the v1 catalogs' ``save`` does.
    """

    def to_dict(self) -> dict[str, Any]:
        from .storage import redact

        state = {}
        for k, v in self.__dict__.items():
            if k.startswith("_"):
                continue
            state[k] = dict(v.items()) if isinstance(v, LazyDict) else v
        out = _intake_to_dict(state)
        for desc in out.get("data", {}).values():
            opts = desc.get("kwargs", {}).get("storage_options")
            if opts:
                desc["kwargs"]["storage_options"] = {
                    k: v for k, v in redact(opts).items() if v != "***"
                }
        for name, desc in out.get("entries", {}).items():
            for pname, up in desc.get("user_parameters", {}).items():
                # intake's to_dict leaves out the class of nested parameters
                up["cls"] = self.entries[name].user_parameters[pname].qname()
        return out

    def search(self, expr: Any) -> GalleryV2Catalog:
        """Intake's ``search`` (text or a search expression), keeping the data descriptions the
        found entries refer to (Intake's own drops them, so its results cannot be read)."""
        found = super().search(expr)
        used = {t for desc in found.entries.values() for t in _REF.findall(str(desc.kwargs))}
        return type(self)(
            entries=found.entries,
            aliases=found.aliases,
            data={t: d for t, d in self.data.items() if t in used},
            user_parameters=self.user_parameters,
            metadata=self.metadata,
        )

    def __call__(self, **kwargs: Any) -> GalleryV2Catalog:
        """A copy with parameter values set (``cat(batch="...")["profiles"]``)."""
        over = {**self._up_overrides, **kwargs}
        return type(self)(
            entries=self.entries,
            aliases=self.aliases,
            data=self.data,
            user_parameters=self.user_parameters,
            parameter_overrides=over,
            metadata=self.metadata,
        )


class _LazyEntries(LazyDict):
    """Reader descriptions by entry name, each built (parameters resolved) on first access."""

    def __init__(self, makers: Mapping[str, Callable[[], ReaderDescription]]) -> None:
        self._makers = dict(makers)
        self._made: dict[str, ReaderDescription] = {}

    def __getitem__(self, item: str) -> ReaderDescription:
        if item not in self._made:
            if item not in self._makers:
                raise KeyError(item)
            desc = self._makers[item]()
            desc._tok = item
            self._made[item] = desc
        return self._made[item]

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


_TEMPLATE = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")
_REF = re.compile(r"\{data\(([^)]+)\)\}")


def to_catalog(level: Any, output: str = "dask") -> GalleryV2Catalog:
    """The v2 catalog of a v1 gallery level (what ``level.to_intake2(output)`` returns).

    One listing of the level names its entries. Sub-levels become
    :class:`GalleryCatalogReader` entries (listed when read); tables become readers of
    ``output`` whose parameters (with allowed values) are resolved when the entry is first
    looked at, or when the catalog is saved.
    """
    if output not in OUTPUTS:
        raise not_found("output", output, list(OUTPUTS), "to_intake2")
    from .catalog import _Level
    from .gallery_source import GallerySource

    storage = {**level._source_args, "urlpath": level.storage.root}
    gallery_desc = CellPaintingGallery(
        storage["urlpath"], storage["storage_options"], storage["cache_dir"], storage["listing_ttl"]
    ).to_entry()
    data: dict[str, DataDescription] = {}
    makers: dict[str, Callable[[], ReaderDescription]] = {}
    for name, v1 in level._get_entries().items():
        cls = v1._plugin[0]
        args = {k: v for k, v in v1._open_args.items() if k not in _STORAGE_FIELDS}
        if issubclass(cls, _Level):
            data.setdefault(gallery_desc.token, gallery_desc)
            kwargs = {"data": _ref(gallery_desc.token), "level": cls.kind, "output": output}
            kwargs.update(args)
            makers[name] = _fixed(
                ReaderDescription(
                    reader=GalleryCatalogReader.qname(),
                    kwargs=kwargs,
                    metadata=dict(v1._metadata),
                    output_instance=GalleryCatalogReader.output_instance,
                )
            )
            continue
        if not issubclass(cls, GallerySource):  # the plates table, the metadata catalog
            desc, reader = _source_description(v1, output)
            data[desc.token] = desc
            makers[name] = _fixed(reader)
            continue
        entry = args.pop("product")
        own = set(next(e.parameters for e in ENTRIES if e.name == entry))
        ids = ("project", "source", "subset", "etag")
        fixed = {k: args.pop(k) for k in ids if k in args and k not in own}
        where = {k: storage[k] for k in ("storage_options", "cache_dir", "listing_ttl")}
        meta = {k: v for k, v in storage.items() if k.startswith("metadata_")}
        if meta:
            where["metadata_options"] = meta
        table = data_class(entry)(storage["urlpath"], **fixed, **where).to_entry()
        data[table.token] = table
        makers[name] = _table_maker(v1, table.token, reader_class(entry, output), args)
    return GalleryV2Catalog(
        entries=PartlyLazyDict(_LazyEntries(makers)),
        aliases={n: n for n in makers},
        data=data,
        metadata={**level.metadata, "name": level.name, "description": level.description or ""},
    )


def _ref(token: str) -> str:
    """Intake 2's reference to a data description of the same catalog."""
    return "{data(" + token + ")}"


def _fixed(desc: ReaderDescription) -> Callable[[], ReaderDescription]:
    return lambda: desc


def _table_maker(
    v1: Any, data_token: str, reader: type[GalleryTableReader], args: Mapping[str, Any]
) -> Callable[[], ReaderDescription]:
    def make() -> ReaderDescription:
        params = {p.name: _v2_parameter(p) for p in v1._user_parameters}
        chosen: dict[str, Any] = {}
        for k, v in args.items():
            m = _TEMPLATE.match(v) if isinstance(v, str) else None
            if m is not None and m.group(1) in params:
                chosen[k] = "{" + m.group(1) + "}"  # an Intake 2 template
        kwargs = {"data": _ref(data_token), "parameters": chosen}
        return ReaderDescription(
            reader=reader.qname(),
            kwargs=kwargs,
            user_parameters=params,
            metadata={"description": v1._description, **v1._metadata},
            output_instance=reader.output_instance,
        )

    return make


def gallery_catalog(
    url: str = DEFAULT_ROOT,
    storage_options: dict[str, Any] | None = None,
    *,
    output: str = "dask",
) -> Catalog:
    """A v2 catalog with one entry, ``gallery``: the whole gallery at ``url`` (lists nothing).

    >>> cat = gallery_catalog("s3://cellpainting-gallery")
    >>> list(cat), cat["gallery"].output_instance
    (['gallery'], 'intake.readers.entry:Catalog')
    """
    reader = GalleryCatalogReader(CellPaintingGallery(url, storage_options), output=output)
    cat = Catalog(metadata={"description": _GALLERY_DESCRIPTION})
    cat["gallery"] = reader
    cat.aliases["gallery"] = "gallery"  # Intake lists a catalog by its aliases
    return cat


_GALLERY_DESCRIPTION = "The Cell Painting Gallery, browsed through intake-cpg"
_YAML_HEADER = """\
# The Cell Painting Gallery as an Intake 2 catalog (written by
# intake_cpg.intake2.public_catalog_yaml(); tests/test_intake2.py checks it is current).
#
#   import intake
#   cat = intake.from_yaml_file("catalogs/cellpainting-gallery-v2.yaml")
#   gallery = cat["gallery"].read()                       # the public bucket, anonymously
#   gallery = cat(root="/data/cpg-mirror")["gallery"].read()      # a mirror or another bucket
#   gallery = cat(root="s3://my-bucket", storage_options={...})["gallery"].read()
#   profiles = gallery["cpg0016-jump"].read()["source_4"].read()["profiles"]
"""


def public_catalog_yaml() -> str:
    """The text of ``catalogs/cellpainting-gallery-v2.yaml``: :func:`gallery_catalog` of the
    public bucket, with the root as the catalog parameter ``root``."""
    import yaml

    cat = gallery_catalog("{root}")
    cat.user_parameters["root"] = SimpleUserParameter(
        dtype=str,
        default=DEFAULT_ROOT,
        description="gallery root: the public bucket (default), a mirror or another bucket",
    )
    doc = cat.to_dict()
    doc["user_parameters"]["root"]["cls"] = SimpleUserParameter.qname()
    return _YAML_HEADER + yaml.safe_dump(doc, sort_keys=True)
