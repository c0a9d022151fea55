"""The entry table: what every catalog entry is, written down once as plain data.

One :class:`EntryRow` per catalog entry (``profiles``, ``load_data``, ``analysis``, ...): its
layout product(s), description, parameters (name, kind, default, how the allowed values are
listed), a selector ``select(view, params) -> [FileRef]``, how its files group into partitions,
and the order in which command-line PATH parts fill its parameters. The catalog levels
(:mod:`intake_cpg.catalog`), :class:`~intake_cpg.gallery_source.GallerySource` and the command
line read this table and decide nothing per product; this module imports no Intake.

A row says at which catalog ``level`` it appears (``"source"``: below each source, its
selector sees a :class:`SourceView`; ``"project"``: below each project, next to its sources,
spanning them, its selector sees a :class:`ProjectView`), what it gives (``output``: a
``"table"``, a ``"catalog"`` of child entries named by the allowed values of its first
parameter, or a ``"listing"``) and how files become partitions (:class:`Partitioning`, a
callable strategy). Rows of different levels may share an entry name (``entry``: the source's
``profiles`` and the project's ``profiles``); ``applies`` says for which projects a
project-level row exists, and ``driver`` names the Intake class of a row that does not load
through :class:`~intake_cpg.gallery_source.GallerySource` (a source's raw images table, a
project's plates table, its metadata catalog).

>>> sorted(ENTRY_TABLE)[:3]
['analysis', 'backend', 'dl_profiles']
>>> [(r.name, r.entry_name) for r in ENTRY_TABLE.at_level("project")]
[('project_profiles', 'profiles'), ('project_plates', 'plates'), ('project_metadata', 'metadata')]
>>> row = ENTRY_TABLE["profiles"]
>>> row.products, row.cli_path, [p.name for p in row.params]
(('profiles',), ('batch', 'plate'), ['batch', 'plate', 'variant'])
>>> ENTRY_TABLE["profile"]
Traceback (most recent call last):
...
intake_cpg.errors.ProductNotFoundError: no entry named 'profile' in the entry table; did you mean 'profiles' or 'dl_profiles' or 'project_profiles'? Available: analysis, backend, dl_profiles, embeddings, images, load_data, platemaps, profiles, profiles_assembled, project_metadata, project_plates, project_profiles.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import layout
from .errors import ParameterError, ProductNotFoundError, not_found
from .image_names import plate_of_folder
from .refs import FileRef
from .resolve import ALL, Gallery, PlateProduct, choose_variant, match_names, newest_version

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ANALYSIS_FILES_PER_PARTITION",
    "COMPARTMENTS",
    "PLATE_CRITERIA",
    "ENTRY_TABLE",
    "EntryRow",
    "EntryTable",
    "IMAGE_FILTERS",
    "Param",
    "Partitioning",
    "ProjectView",
    "ResolvedParam",
    "SourceView",
    "describe_row",
    "chosen_plates",
    "partition_refs",
    "plate_queries",
    "plates_of",
    "validate_params",
    "validate_plate_query",
]

Level = Literal["source", "project"]
Output = Literal["table", "catalog", "listing"]


# =============================================================================================
# the view a selector sees
# =============================================================================================
class SourceView:
    """One source of one project as selectors see it: the gallery model, memoised per view.

    A view lives for one resolution (one entry described or loaded), so each per-plate product
    is learnt once however many parameters and selectors ask for it.
    """

    def __init__(
        self, gallery: Gallery, project: str, source: str, *, strict: bool = False
    ) -> None:
        self.gallery = gallery
        self.project = project
        self.source = source
        self.strict = strict  # a selected plate without its table raises instead of a warning
        self._plate_products: dict[tuple[str, str | None, bool], PlateProduct] = {}

    def where(self, entry: str) -> str:
        return f"{self.project}/{self.source}/{entry}"

    def plate_product(
        self, product: str, model: str | None = None, *, learn_files: bool = False
    ) -> PlateProduct:
        key = (product, model, learn_files)
        if key not in self._plate_products:
            self._plate_products[key] = self.gallery.plate_product(
                self.project, self.source, product, model=model, learn_files=learn_files
            )
        return self._plate_products[key]

    def prefix(self, product: str, **fields: str | None) -> str:
        return self.gallery.base_prefix(self.project, self.source, product, **fields)


class ProjectView:
    """One project as project-level selectors see it: its sources' views and its plates table.

    ``store`` gives the project's external metadata (the JUMP tables, an object with
    ``tables`` and ``read(name)``), or is ``None`` for a project without it; the adapter
    that makes the view decides which (:func:`intake_cpg.project.project_view`), so this module
    reads no metadata. ``query`` (plate criteria, or a list of them applied in turn) narrows
    the plates table before any row sees it (what ``ProjectCatalog.search(plate_type=...)``
    keeps). Like a :class:`SourceView`, a view lives
    for one resolution and learns each source's per-plate product once.
    """

    def __init__(
        self,
        gallery: Gallery,
        project: str,
        *,
        store: Callable[[], Any] | None = None,
        query: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        strict: bool = False,
    ) -> None:
        self.gallery = gallery
        self.project = layout.validate_name(project, "project")
        self.strict = strict
        self.query = plate_queries(query)
        self._store = store
        self._sources: dict[str, SourceView] = {}
        self._plates: dict[str, pd.DataFrame] = {}

    @property
    def has_metadata(self) -> bool:
        """Whether the project has external metadata (the JUMP tables)."""
        return self._store is not None

    def store(self) -> Any:
        """The project's external metadata (opened by the adapter's callable on first use)."""
        if self._store is None:
            raise ParameterError(f"{self.project} has no external metadata (JUMP tables)")
        return self._store()

    def where(self, entry: str) -> str:
        return f"{self.project}/{entry}"

    def source(self, source: str) -> SourceView:
        if source not in self._sources:
            self._sources[source] = SourceView(
                self.gallery, self.project, source, strict=self.strict
            )
        return self._sources[source]

    def sources_with(self, product: str) -> list[str]:
        """The sources holding ``product`` (one listing per source, as opening each one does)."""
        return [
            s
            for s in self.gallery.sources(self.project)
            if product in self.gallery.present(self.project, s, (product,))
        ]

    def plates(self, product: str) -> pd.DataFrame:
        """The plates table of a per-plate product across the sources (see :mod:`intake_cpg.plates`),
        with ``Metadata_PlateType`` where the project's metadata has it, narrowed by ``query``."""
        if product not in self._plates:
            from .plates import plates_table, select_plates

            found = []
            for source in self.sources_with(product):
                pp = self.source(source).plate_product(product, learn_files=True)
                for batch, names in pp.plates.items():
                    found.extend((source, batch, p, v) for p in names for v in pp.variants or ("",))
            meta = self.store().read("plate") if self.has_metadata and found else None
            table = plates_table(found, meta)
            for q in self.query:
                table = select_plates(table, **q, where=self.where("plates"))
            self._plates[product] = table
        return self._plates[product]


# =============================================================================================
# rows
# =============================================================================================
Bound = Mapping[str, Any]
ValuesOf = Callable[["SourceView", Bound], Any]


@dataclass(frozen=True)
class Param:
    """One parameter of an entry: ``default`` and ``allowed`` are values or ``f(view, bound)``.

    ``bound`` holds the values of the parameters already fixed (e.g. a sub-catalog's
    ``subset``). ``glob`` parameters take a name or a shell glob of allowed names; ``many``
    ones also a list of names and globs; ``hide_if_empty`` ones are left out where no value is
    allowed (a source without models, a project without plate types).
    """

    name: str
    description: str
    kind: Literal["str", "bool"] = "str"
    default: Any = None
    allowed: ValuesOf | None = None
    glob: bool = False
    hide_if_empty: bool = False
    many: bool = False

    def resolve(self, view: Any, bound: Bound) -> ResolvedParam:
        allowed = None if self.allowed is None else tuple(self.allowed(view, bound))
        default = self.default(view, bound) if callable(self.default) else self.default
        return ResolvedParam(
            self.name, self.description, self.kind, default, allowed, self.glob, self.many
        )


@dataclass(frozen=True)
class ResolvedParam:
    """A :class:`Param` with its default and allowed values listed from the gallery."""

    name: str
    description: str
    kind: str
    default: Any
    allowed: tuple[Any, ...] | None
    glob: bool = False
    many: bool = False


@dataclass(frozen=True)
class Partitioning:
    """How a row's files group into partitions.

    Files whose ``group(ref.path)`` keys are equal (and adjacent) may share a partition, up to
    ``files_per_partition``; ``group=None`` puts every file of the row in one group.
    """

    files_per_partition: int = 1
    group: Callable[[layout.GalleryPath], Hashable] | None = None

    def key(self, ref: FileRef) -> Hashable:
        if self.group is None or ref.path is None:
            return None
        return self.group(ref.path)


@dataclass(frozen=True)
class EntryRow:
    """One catalog entry kind. See the module docstring for the meaning of each field."""

    name: str
    products: tuple[str, ...]
    description: str
    params: tuple[Param, ...]
    select: Callable[[Any, Bound], list[FileRef]] | None
    partitioning: Partitioning = field(default_factory=Partitioning)
    cli_path: tuple[str, ...] = ()
    level: Level = "source"
    output: Output = "table"
    metadata: Callable[[Any, Bound], dict[str, Any]] | None = None
    entry: str = ""
    applies: Callable[[ProjectView], bool] | None = None
    driver: str = ""

    @property
    def product(self) -> str:
        """The layout product whose base folder tells that the entry exists."""
        return self.products[0]

    @property
    def entry_name(self) -> str:
        """The catalog entry name (``entry``, else the row name)."""
        return self.entry or self.name

    def applies_to(self, view: ProjectView) -> bool:
        """Whether a project-level row has an entry in the project of ``view``."""
        return self.applies is None or self.applies(view)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise not_found("parameter", name, [p.name for p in self.params], f"entry {self.name!r}")


class EntryTable(Mapping[str, EntryRow]):
    """The rows by name, read-only; a missing name is a clear error naming the rows that exist."""

    def __init__(self, rows: Iterable[EntryRow]) -> None:
        self._rows = types.MappingProxyType({r.name: r for r in rows})
        by_product: dict[str, EntryRow] = {}
        for r in self.at_level("source"):  # the first row naming a product loads it
            for product in r.products:
                by_product.setdefault(product, r)
        self._by_product = types.MappingProxyType(by_product)

    def __getitem__(self, name: str) -> EntryRow:
        try:
            return self._rows[name]
        except KeyError:
            raise not_found("entry", str(name), list(self._rows), "the entry table") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def at_level(self, level: Level) -> list[EntryRow]:
        return [r for r in self._rows.values() if r.level == level]

    def for_product(self, product: str) -> EntryRow | None:
        """The source-level row that loads a layout product (``None`` for products no entry
        loads); asked once per file of a load."""
        return self._by_product.get(product)

    def only(self, output: Output, level: Level = "source") -> EntryRow:
        """The one row of an output kind at a level (e.g. the source level's ``"catalog"``)."""
        (row,) = (r for r in self.at_level(level) if r.output == output)
        return row

    def parameter_names(self) -> frozenset[str]:
        return frozenset(p.name for r in self._rows.values() for p in r.params)

    def glob_names(self) -> frozenset[str]:
        return frozenset(p.name for r in self._rows.values() for p in r.params if p.glob)


# =============================================================================================
# selectors (pure given the listings the view makes)
# =============================================================================================
def _plates(row: str, view: SourceView, params: Bound, *, learn_files: bool) -> tuple:
    product = ENTRY_TABLE[row].product
    pp = view.plate_product(product, params.get("model"), learn_files=learn_files)
    return pp, pp.select(params.get("batch") or ALL, params.get("plate") or ALL, view.where(row))


def _plate_files(
    view: SourceView, row: str, pp: PlateProduct, pairs: list, variant: str
) -> list[FileRef]:
    if variant not in pp.files:
        raise not_found(
            "variant",
            variant or "(bare file)",
            [v or "(bare file)" for v in pp.files],
            view.where(row),
        )
    return view.gallery.plate_files(pp, pairs, variant, view.where(row), strict=view.strict)


def _select_per_plate(row: str, variant_of: Callable[[PlateProduct, Bound], str]) -> Any:
    def select(view: SourceView, params: Bound) -> list[FileRef]:
        pp, pairs = _plates(row, view, params, learn_files=True)
        return _plate_files(view, row, pp, pairs, variant_of(pp, params))

    return select


def _given_variant(pp: PlateProduct, params: Bound) -> str:
    return params.get("variant") or ""


def _select_listed_per_plate(row: str) -> Any:
    """load_data/backend: each plate's ``with_illum`` table when it has one, else its first
    (listed per plate: the extension changes between plates, e.g. csv and csv.gz)."""

    def select(view: SourceView, params: Bound) -> list[FileRef]:
        pp, pairs = _plates(row, view, params, learn_files=False)
        out = []
        for (b, p), refs in zip(pairs, view.gallery.plate_tables(pp, pairs), strict=True):
            if not refs:
                raise not_found("table file", "*", [], f"{view.where(row)} ({b}/{p})")
            illum = [r for r in refs if "with_illum" in (r.path.variant or "")]
            by_variant = sorted(refs, key=lambda r: r.path.variant or "")
            out.append((illum or [by_variant[0]])[0])
        return out

    return select


#: The CellProfiler object tables of ``analysis``.
COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei", "Image", "Experiment")


def _select_analysis(view: SourceView, params: Bound) -> list[FileRef]:
    pp, pairs = _plates("analysis", view, params, learn_files=False)
    comp = params.get("compartment") or ENTRY_TABLE["analysis"].param("compartment").default
    refs = view.gallery.subtree_files(
        pp, pairs, lambda r: r.path.variant == comp and Gallery.is_table(r.path.filename)
    )
    if not refs:
        raise not_found("compartment", comp, COMPARTMENTS, view.where("analysis"))
    return refs


def _select_embeddings(view: SourceView, params: Bound) -> list[FileRef]:
    pp, pairs = _plates("embeddings", view, params, learn_files=False)
    refs = view.gallery.subtree_files(pp, pairs, lambda r: r.path.extension == "parquet")
    if not refs:
        raise not_found("embedding file", "*.parquet", [], view.where("embeddings"))
    return refs


#: The fields an ``images`` entry filters its files by (names or globs, from each file's name).
IMAGE_FILTERS = ("well", "site", "channel")


def _image_batches(view: SourceView, bound: Bound) -> list[str]:
    """The batches of a source with raw images (``images/<batch>/images/<plate folder>``); the
    listing that learns the plate folders of each batch tells them from the batches holding
    only illumination functions (``images/<batch>/illum/``). Only describing or loading the
    entry lists them: listing a source sees its ``images/`` folder and nothing below."""
    pp = view.plate_product(ENTRY_TABLE["images"].product)
    return [b for b in pp.batches if pp.plates.get(b)]


def _select_images(view: SourceView, params: Bound) -> list[FileRef]:
    """Raw image files of the chosen plates (a plate pattern matches the plate or its folder as
    named, e.g. with the microscope's measurement suffix), narrowed by well, site and channel;
    files of no known name scheme (``Index.idx.xml``, thumbnails) only with ``all_files``."""
    where = view.where("images")
    pp = view.plate_product(ENTRY_TABLE["images"].product)
    with_images = _image_batches(view, params)
    batch, plate = params.get("batch") or ALL, params.get("plate") or ALL
    batches = match_names(batch, pp.batches)
    if not batches:
        raise not_found("batch", batch, with_images or pp.batches, where)
    folders = [(b, f) for b in batches for f in pp.plates.get(b, ())]
    if not folders:
        holds = (
            f"batches with raw images: {', '.join(with_images)}"
            if with_images
            else "its images/ folder holds only illumination functions (images/<batch>/illum/)"
        )
        raise ProductNotFoundError(
            f"no raw images in {where} batch {batch!r} (no {pp.prefix}/<batch>/images/ "
            f"plate folder); {holds}",
            name=batch,
            suggestions=with_images,
        )
    pairs = [
        (b, f)
        for b, f in folders
        if match_names(plate, [f]) or match_names(plate, [plate_of_folder(f)])
    ]
    if not pairs:
        raise not_found("plate", plate, sorted({plate_of_folder(f) for _, f in folders}), where)
    every = bool(params.get("all_files"))
    wanted = {k: params.get(k) or ALL for k in IMAGE_FILTERS}

    def keep(ref: FileRef) -> bool:
        p = ref.path
        if p is None or p.channel is None:
            return every and all(v == ALL for v in wanted.values())
        return all(v == ALL or match_names(v, [str(getattr(p, k))]) for k, v in wanted.items())

    refs = view.gallery.subtree_files(pp, pairs, keep)
    if not refs:
        asked = ", ".join(f"{k}={v!r}" for k, v in wanted.items() if v != ALL) or "any image"
        raise not_found("image file", asked, [], f"{where} ({len(pairs)} plate folder(s))")
    return refs


def _platemap_batches(view: SourceView, bound: Bound) -> tuple[str, ...]:
    return view.gallery.batches(view.project, view.source, ENTRY_TABLE["platemaps"].product)


def _select_platemaps(view: SourceView, params: Bound) -> list[FileRef]:
    where = view.where("platemaps")
    batches = _platemap_batches(view, params)
    chosen = match_names(params.get("batch") or ALL, batches)
    if not chosen:
        raise not_found("batch", params.get("batch"), batches, where)
    name = params.get("platemap") or ENTRY_TABLE["platemaps"].param("platemap").default
    refs = []
    for b in chosen:
        tables = view.gallery.platemap_files(
            view.project, view.source, b, ENTRY_TABLE["platemaps"].products
        )
        if name not in tables:
            raise not_found("platemap", name, tables, f"{where} ({b})")
        refs.append(tables[name])
    return refs


def _assembled(view: SourceView) -> dict[str, dict[str, dict[str, FileRef]]]:
    return view.gallery.assembled(
        view.project, view.source, ENTRY_TABLE["profiles_assembled"].product
    )


def _select_assembled(view: SourceView, params: Bound) -> list[FileRef]:
    where = view.where("profiles_assembled")
    tree = _assembled(view)
    subset = params.get("subset") or ""
    if subset not in tree:
        raise not_found("subset", subset, tree, where)
    versions = tree[subset]
    version = params.get("version") or newest_version(versions)
    if version not in versions:
        raise not_found("version", version, versions, f"{where}/{subset}")
    variants = versions[version]
    if params.get("variant") not in variants:
        raise not_found("variant", params.get("variant"), variants, f"{where}/{subset}/{version}")
    return [variants[params["variant"]]]


# -- project level: plates chosen by what they hold, across sources ----------------------------
#: The parameters that choose rows of a project's plates table (see :func:`chosen_plates`).
PLATE_CRITERIA = ("source", "batch", "plate", "plate_type")


def _table_of(view: ProjectView, row: str) -> pd.DataFrame:
    return view.plates(ENTRY_TABLE[row].product)


def chosen_plates(view: ProjectView, row: str, params: Bound) -> pd.DataFrame:
    """The rows of the project's plates table that ``params`` choose: ``source``, ``batch``,
    ``plate``, ``plate_type`` (each a name, a glob or a list; ``"*"`` or ``None``: any) and
    ``plates`` (a DataFrame of source/plate pairs)."""
    from .plates import select_plates

    given = {k: params.get(k) for k in PLATE_CRITERIA}
    criteria = {k: v for k, v in given.items() if v is not None and v != ALL and v != ""}
    table = _table_of(view, row)
    if table.empty and not view.query:
        product = ENTRY_TABLE[row].product
        raise ProductNotFoundError(
            f"no source of {view.project} holds per-plate {product}, so its project-level "
            f"{ENTRY_TABLE[row].entry_name!r} has nothing to load; open a source instead: "
            f"cat[{view.project!r}][<source>] (sources: "
            f"{', '.join(view.gallery.sources(view.project)) or 'none'})",
            name=view.project,
        )
    return select_plates(
        table,
        **criteria,
        plates=params.get("plates"),
        where=view.where(ENTRY_TABLE[row].entry_name),
    )


def plates_of(view: ProjectView) -> pd.DataFrame:
    """The project's plates table (what its ``plates`` entry reads)."""
    return _table_of(view, "project_plates")


def plate_queries(query: Any) -> list[dict[str, Any]]:
    """Plate criteria as a list of mappings applied in turn (``None`` or ``{}``: none).

    >>> plate_queries({"plate_type": "TARGET2"}), plate_queries(None)
    ([{'plate_type': 'TARGET2'}], [])
    """
    if not query:
        return []
    queries = [query] if isinstance(query, Mapping) else list(query)
    out = []
    for q in queries:
        if not isinstance(q, Mapping):
            raise ParameterError(f"plate_query= takes plate criteria (a mapping), got {q!r}")
        validate_plate_query(q)
        out.append({k: list(v) if isinstance(v, tuple) else v for k, v in q.items()})
    return out


def validate_plate_query(query: Mapping[str, Any]) -> None:
    """Refuse plate criteria other than :data:`PLATE_CRITERIA`, and values that are not names,
    globs or lists of them, before any request is made.

    >>> validate_plate_query({"plate_type": ["TARGET2", "ORF"], "source": "source_*"})
    >>> validate_plate_query({"well": "A01"})
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: plate criteria are source, batch, plate, plate_type, not well
    """
    unknown = set(query) - set(PLATE_CRITERIA)
    if unknown:
        raise ParameterError(
            f"plate criteria are {', '.join(PLATE_CRITERIA)}, not {', '.join(sorted(unknown))}"
        )
    validate_params(query, ENTRY_TABLE["project_profiles"])


def _project_variant(view: ProjectView, bound: Bound, row: str) -> str:
    """The default variant of a project row: the usual choice among those the plates have."""
    table = _table_of(view, row)
    return choose_variant({v for vs in table.variants for v in vs})


def _select_across_sources(row: str) -> Any:
    """Per-plate files of the chosen plates of every source (the variant given, else the
    project's default)."""

    def select(view: ProjectView, params: Bound) -> list[FileRef]:
        chosen = chosen_plates(view, row, params)
        product = ENTRY_TABLE[row].product
        per_source = ENTRY_TABLE.for_product(product)
        variant = params.get("variant")
        if variant is None:
            variant = _project_variant(view, params, row)
        refs: list[FileRef] = []
        for source in sorted(set(chosen.Metadata_Source)):
            rows = chosen[chosen.Metadata_Source == source]
            sv = view.source(source)
            pp = sv.plate_product(product, learn_files=True)
            pairs = list(zip(rows.Metadata_Batch, rows.Metadata_Plate, strict=True))
            refs.extend(_plate_files(sv, per_source.name, pp, pairs, variant))
        return refs

    return select


# =============================================================================================
# parameters and metadata
# =============================================================================================
_BATCH_HELP = "batch folder, a glob, or '*' for all"
_PLATE_HELP = "plate name, a glob (e.g. 'BR0011703*'), or '*' for all"


def _pp(row: str, learn_files: bool = False) -> Callable[[SourceView, Bound], PlateProduct]:
    def get(view: SourceView, bound: Bound) -> PlateProduct:
        return view.plate_product(
            ENTRY_TABLE[row].product, bound.get("model"), learn_files=learn_files
        )

    return get


def _batch(row: str, learn_files: bool = False) -> Param:
    pp = _pp(row, learn_files)
    return Param(
        "batch", _BATCH_HELP, default=ALL, allowed=lambda v, b: [*pp(v, b).batches, ALL], glob=True
    )


_PLATE = Param("plate", _PLATE_HELP, default=ALL, glob=True)


def _model(row: str) -> Param:
    pp = _pp(row)
    return Param(
        "model",
        "deep-learning model folder",
        default=lambda v, b: next(iter(pp(v, b).models), None),
        allowed=lambda v, b: pp(v, b).models,
        hide_if_empty=True,
    )


def _plate_metadata(row: str, learn_files: bool = False) -> Callable[..., dict[str, Any]]:
    """Metadata of a per-plate row; rows that learn file names show their variants and files."""
    get = _pp(row, learn_files)

    def metadata(view: SourceView, bound: Bound) -> dict[str, Any]:
        pp = get(view, bound)
        md: dict[str, Any] = {
            "prefix": pp.prefix,
            "batches": list(pp.batches),
            "n_plates": sum(len(v) for v in pp.plates.values()),
        }
        if pp.models:
            md["models"] = list(pp.models)
        if learn_files and any(p.name == "variant" for p in ENTRY_TABLE[row].params):
            md["variants"] = list(pp.variants)
            md["files"] = dict(pp.files)
        return md

    return metadata


def _platemap_metadata(view: SourceView, bound: Bound) -> dict[str, Any]:
    return {
        "prefix": view.prefix(ENTRY_TABLE["platemaps"].product),
        "batches": list(_platemap_batches(view, bound)),
    }


def _images_metadata(view: SourceView, bound: Bound) -> dict[str, Any]:
    pp = view.plate_product(ENTRY_TABLE["images"].product)
    return {
        "prefix": pp.prefix,
        "batches": _image_batches(view, bound),
        "n_plates": sum(len(v) for v in pp.plates.values()),
    }


def _subset_versions(view: SourceView, bound: Bound) -> list[str]:
    return sorted(_assembled(view).get(bound.get("subset") or "", {}), key=layout.version_key)


def _subset_variants(view: SourceView, bound: Bound) -> list[str]:
    versions = _assembled(view).get(bound.get("subset") or "", {})
    return sorted({v for vs in versions.values() for v in vs})


def _project_param(name: str, description: str, column: str | None, **kw: Any) -> Param:
    """A plates-table criterion: allowed values are the column's values (and ``"*"``)."""

    def allowed(view: ProjectView, bound: Bound) -> list[str]:
        table = _table_of(view, "project_profiles")
        if column is None or column not in table.columns:
            return []
        return [*sorted(set(table[column].dropna())), ALL]

    return Param(
        name,
        description,
        default=ALL,
        allowed=allowed if column else None,
        glob=True,
        many=True,
        **kw,
    )


_PROJECT_PARAMS = (
    _project_param("source", "source, a glob, a list of them, or '*'", "Metadata_Source"),
    _project_param("batch", "batch, a glob, a list of them, or '*'", "Metadata_Batch"),
    _project_param("plate", "plate, a glob, a list of them, or '*'", None),
    _project_param(
        "plate_type",
        "plate type from the project's plate metadata (e.g. 'TARGET2'), a list, or '*'",
        "Metadata_PlateType",
        hide_if_empty=True,
    ),
    Param(
        "variant",
        "processing variant ('' is the bare <plate>.<ext> file; default: the usual choice)",
        default=lambda v, b: _project_variant(v, b, "project_profiles"),
        allowed=lambda v, b: sorted(
            {x for vs in _table_of(v, "project_profiles").variants for x in vs}
        ),
        hide_if_empty=True,
    ),
)


def _project_metadata(view: ProjectView, bound: Bound) -> dict[str, Any]:
    table = _table_of(view, "project_profiles")
    md: dict[str, Any] = {
        "sources": sorted(set(table.Metadata_Source)),
        "n_plates": len(table),
    }
    if "Metadata_PlateType" in table.columns:
        md["plate_types"] = sorted(set(table.Metadata_PlateType.dropna()))
    if view.query:
        md["plate_query"] = view.query
    return md


def _has_metadata(view: ProjectView) -> bool:
    return view.has_metadata


def _metadata_tables(view: ProjectView, bound: Bound) -> list[str]:
    return list(view.store().tables)


#: Default number of per-object ``analysis`` CSVs (same plate and compartment) per partition.
ANALYSIS_FILES_PER_PARTITION = 100


def _plate_table_row(name: str, description: str) -> EntryRow:
    """A per-plate table chosen per plate folder (load_data, backend): batch and plate params."""
    return EntryRow(
        name,
        (name,),
        description,
        (_batch(name), _PLATE),
        _select_listed_per_plate(name),
        cli_path=("batch", "plate"),
        metadata=_plate_metadata(name),
    )


_ANALYSIS_GROUP = Partitioning(
    files_per_partition=ANALYSIS_FILES_PER_PARTITION,
    group=lambda p: (p.source, p.batch, p.plate, p.filename),
)

#: The rows, in the order a source lists its entries.
ENTRY_TABLE = EntryTable(
    [
        EntryRow(
            "profiles",
            ("profiles",),
            "per-plate profiles (one file per plate and variant)",
            (
                _batch("profiles", True),
                _PLATE,
                Param(
                    "variant",
                    "processing variant ('' is the bare <plate>.<ext> file)",
                    default=lambda v, b: choose_variant(_pp("profiles", True)(v, b).variants),
                    allowed=lambda v, b: _pp("profiles", True)(v, b).variants,
                ),
            ),
            _select_per_plate("profiles", _given_variant),
            cli_path=("batch", "plate"),
            metadata=_plate_metadata("profiles", True),
        ),
        _plate_table_row(
            "load_data", "CellProfiler LoadData CSVs (image paths and metadata per site)"
        ),
        EntryRow(
            "analysis",
            ("analysis",),
            "per-object CellProfiler measurements (one file per site and compartment)",
            (
                _batch("analysis"),
                _PLATE,
                Param(
                    "compartment",
                    "CellProfiler object table",
                    default="Cells",
                    allowed=lambda v, b: COMPARTMENTS,
                ),
            ),
            _select_analysis,
            partitioning=_ANALYSIS_GROUP,
            cli_path=("batch", "plate"),
            metadata=_plate_metadata("analysis"),
        ),
        _plate_table_row("backend", "well-level backend tables"),
        EntryRow(
            "platemaps",
            ("barcode_platemap", "platemap"),
            "plate maps and barcode-to-platemap tables",
            (
                Param(
                    "batch",
                    _BATCH_HELP,
                    default=lambda v, b: next(iter(_platemap_batches(v, b)), ALL),
                    allowed=lambda v, b: [*_platemap_batches(v, b), ALL],
                    glob=True,
                ),
                Param(
                    "platemap",
                    "'barcode_platemap' or the name of a platemap file",
                    default="barcode_platemap",
                ),
            ),
            _select_platemaps,
            cli_path=("batch",),
            metadata=_platemap_metadata,
        ),
        EntryRow(
            "dl_profiles",
            ("dl_profiles",),
            "deep-learning per-plate profiles (list-typed embedding columns)",
            (_model("dl_profiles"), _batch("dl_profiles", True), _PLATE),
            _select_per_plate("dl_profiles", _given_variant),
            cli_path=("model", "batch", "plate"),
            metadata=_plate_metadata("dl_profiles", True),
        ),
        EntryRow(
            "embeddings",
            ("embeddings",),
            "deep-learning per-site embeddings",
            (_model("embeddings"), _batch("embeddings"), _PLATE),
            _select_embeddings,
            cli_path=("model", "batch", "plate"),
            metadata=_plate_metadata("embeddings"),
        ),
        EntryRow(
            "profiles_assembled",
            ("profiles_assembled",),
            "assembled, processed profiles: one entry per subset",
            (
                Param(
                    "subset", "assembled-profile subset", allowed=lambda v, b: list(_assembled(v))
                ),
                Param(
                    "version",
                    "assembly version (default: the newest)",
                    default=lambda v, b: newest_version(_subset_versions(v, b)),
                    allowed=_subset_versions,
                ),
                Param("variant", "processing pipeline", allowed=_subset_variants),
                Param(
                    "verify",
                    "check the object's ETag against the manifest before loading",
                    kind="bool",
                    default=False,
                ),
            ),
            _select_assembled,
            cli_path=("subset", "version", "variant"),
            output="catalog",
        ),
        EntryRow(
            "images",
            ("images",),
            "raw microscope images of the chosen plates, one row per file (URL, key, size, "
            "ETag, plate, well, site, channel); present wherever the source has an images/ folder",
            (
                Param(
                    "batch",
                    _BATCH_HELP,
                    default=ALL,
                    allowed=lambda v, b: [*_image_batches(v, b), ALL],
                    glob=True,
                ),
                Param(
                    "plate",
                    "plate (with or without the microscope's measurement suffix), a glob, or '*'",
                    default=ALL,
                    glob=True,
                ),
                Param("well", "well (e.g. 'A01'), a glob, or '*'", default=ALL, glob=True),
                Param("site", "site (e.g. '1'), a glob, or '*'", default=ALL, glob=True),
                Param(
                    "channel", "channel number (e.g. '1'), a glob, or '*'", default=ALL, glob=True
                ),
                Param(
                    "all_files",
                    "also list files of no known image name scheme (Index.idx.xml, ...)",
                    kind="bool",
                    default=False,
                ),
            ),
            _select_images,
            cli_path=("batch", "plate"),
            metadata=_images_metadata,
            driver="intake_cpg.images.ImagesSource",
        ),
        # -- project level: next to the sources, spanning them
        EntryRow(
            "project_profiles",
            ("profiles",),
            "per-plate profiles of every source, chosen by source, batch, plate, plate type or "
            "plates= (a DataFrame of source/plate pairs)",
            _PROJECT_PARAMS,
            _select_across_sources("project_profiles"),
            cli_path=("source", "batch", "plate"),
            level="project",
            metadata=_project_metadata,
            entry="profiles",
        ),
        EntryRow(
            "project_plates",
            ("profiles",),
            "one row per plate: source, batch, plate, plate type (where the metadata has it) "
            "and the variants present",
            (),
            _select_across_sources("project_plates"),
            cli_path=("source",),
            level="project",
            metadata=_project_metadata,
            entry="plates",
            driver="intake_cpg.project.ProjectPlatesSource",
        ),
        EntryRow(
            "project_metadata",
            (),
            "the project's external metadata tables (the pinned JUMP datasets release), one "
            "entry each",
            (Param("table", "metadata table", allowed=_metadata_tables),),
            None,
            cli_path=("table",),
            level="project",
            output="catalog",
            entry="metadata",
            applies=_has_metadata,
            driver="intake_cpg.project.ProjectMetadataCatalog",
        ),
    ]
)


# =============================================================================================
# what the adapters call
# =============================================================================================
def describe_row(
    row: EntryRow, view: SourceView, bound: Bound | None = None
) -> tuple[list[ResolvedParam], dict[str, Any]]:
    """The parameters (allowed values listed) and metadata of ``row``, parameters in ``bound``
    (already fixed, e.g. a sub-catalog's ``subset``) left out."""
    bound = dict(bound or {})
    params = [
        r
        for p in row.params
        if p.name not in bound
        for r in [p.resolve(view, bound)]
        if r.allowed or not p.hide_if_empty
    ]
    md = row.metadata(view, bound) if row.metadata is not None else {}
    return params, md


def validate_params(params: Mapping[str, object], row: EntryRow | None = None) -> None:
    """Reject parameter values that are not plain names (or globs, for glob parameters) before
    any request is made. ``None`` means "not given"; ``variant=""`` is the bare file. Lists of
    names are accepted for the ``many`` parameters of ``row`` (the project-level entries).

    >>> validate_params({"batch": "2021_*", "plate": "BR00117037", "verify": True})
    >>> validate_params({"plate": "../x"})
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: invalid plate '../x': contains '/'; expected a single folder or file name such as 'BR00117037' or '2021_04_26_Batch1'
    >>> validate_params({"source": ["source_4", "source_1*"]}, ENTRY_TABLE["project_profiles"])
    >>> validate_params({"batch": ["B1"]}, ENTRY_TABLE["profiles"])
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: parameter 'batch' must be a string, got list ['B1']
    """
    globs = ENTRY_TABLE.glob_names()
    many = {p.name for p in row.params if p.many} if row is not None else set()
    kinds = {p.name: p.kind for r in ENTRY_TABLE.values() for p in r.params}
    for k, v in params.items():
        if v is None or (k == "variant" and v == "") or kinds.get(k) == "bool":
            continue
        if k in many and isinstance(v, (list, tuple)) and v:
            for item in v:
                if not isinstance(item, str):
                    raise ParameterError(
                        f"parameter {k!r} takes names or globs, got {type(item).__name__} {item!r}"
                    )
                layout.validate_name(item, k, allow_glob=k in globs)
            continue
        if not isinstance(v, str):
            raise ParameterError(f"parameter {k!r} must be a string, got {type(v).__name__} {v!r}")
        layout.validate_name(v, k, allow_glob=k in globs)


def partition_refs(
    refs: Sequence[FileRef], files_per_partition: int | None = None
) -> list[tuple[FileRef, ...]]:
    """Group files into partitions by their rows' :class:`Partitioning` (from ``ref.path``).

    Adjacent files with the same row and group key share a partition, up to the row's
    ``files_per_partition`` (or the one given); files of no row are one per partition.

    >>> from intake_cpg.layout import parse_key
    >>> base = "p/s/workspace/analysis/B1/P1/analysis/P1-A01-{}/Cells.csv"
    >>> refs = [FileRef(k, k, path=parse_key(k)) for k in (base.format(i) for i in (1, 2))]
    >>> [len(p) for p in partition_refs(refs)], [len(p) for p in partition_refs(refs, 1)]
    ([2], [1, 1])
    """
    parts: list[tuple[FileRef, ...]] = []
    run: list[FileRef] = []
    run_key: Any = object()
    for ref in refs:
        row = ENTRY_TABLE.for_product(ref.path.product) if ref.path is not None else None
        strategy = row.partitioning if row is not None else _ONE_PER_FILE
        key = (row.name if row is not None else None, strategy.key(ref))
        size = files_per_partition or strategy.files_per_partition
        if run and (key != run_key or len(run) >= size):
            parts.append(tuple(run))
            run = []
        run.append(ref)
        run_key = key
    if run:
        parts.append(tuple(run))
    return parts


_ONE_PER_FILE = Partitioning()
