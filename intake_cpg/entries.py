"""The entry table: what every catalog entry is, written down once as plain data.

One :class:`EntryRow` per catalog entry (``profiles``, ``load_data``, ``analysis``, ...): its
layout product(s), description, parameters (name, kind, default, how the allowed values are
listed), a selector ``select(view, params) -> [FileRef]``, how its files group into partitions,
and the order in which command-line PATH parts fill its parameters. The catalog levels
(:mod:`intake_cpg.catalog`), :class:`~intake_cpg.gallery_source.GallerySource` and the command
line read this table and decide nothing per product; this module imports no Intake.

A row says at which catalog ``level`` it appears (``"source"`` today; project-level entries that
span sources are rows with ``level="project"``), what it gives (``output``: a ``"table"``, a
``"catalog"`` of child entries named by the allowed values of its first parameter, or a
``"listing"``) and how files become partitions (:class:`Partitioning`, a callable strategy).

>>> sorted(ENTRY_TABLE)[:3]
['analysis', 'backend', 'dl_profiles']
>>> row = ENTRY_TABLE["profiles"]
>>> row.products, row.cli_path, [p.name for p in row.params]
(('profiles',), ('batch', 'plate'), ['batch', 'plate', 'variant'])
>>> ENTRY_TABLE["profile"]
Traceback (most recent call last):
...
intake_cpg.errors.ProductNotFoundError: no entry named 'profile' in the entry table; did you mean 'profiles' or 'dl_profiles'? Available: analysis, backend, dl_profiles, embeddings, load_data, platemaps, profiles, profiles_assembled.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import layout
from .errors import ParameterError, not_found
from .refs import FileRef
from .resolve import ALL, Gallery, PlateProduct, choose_variant, match_names, newest_version

__all__ = [
    "ANALYSIS_FILES_PER_PARTITION",
    "COMPARTMENTS",
    "ENTRY_TABLE",
    "EntryRow",
    "EntryTable",
    "Param",
    "Partitioning",
    "ResolvedParam",
    "SourceView",
    "describe_row",
    "partition_refs",
    "validate_params",
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


# =============================================================================================
# rows
# =============================================================================================
Bound = Mapping[str, Any]
ValuesOf = Callable[["SourceView", Bound], Any]


@dataclass(frozen=True)
class Param:
    """One parameter of an entry: ``default`` and ``allowed`` are values or ``f(view, bound)``.

    ``bound`` holds the values of the parameters already fixed (e.g. a sub-catalog's
    ``subset``). ``glob`` parameters take a name or a shell glob of allowed names;
    ``hide_if_empty`` ones are left out where no value is allowed (a source without models).
    """

    name: str
    description: str
    kind: Literal["str", "bool"] = "str"
    default: Any = None
    allowed: ValuesOf | None = None
    glob: bool = False
    hide_if_empty: bool = False

    def resolve(self, view: SourceView, bound: Bound) -> ResolvedParam:
        allowed = None if self.allowed is None else tuple(self.allowed(view, bound))
        default = self.default(view, bound) if callable(self.default) else self.default
        return ResolvedParam(self.name, self.description, self.kind, default, allowed, self.glob)


@dataclass(frozen=True)
class ResolvedParam:
    """A :class:`Param` with its default and allowed values listed from the gallery."""

    name: str
    description: str
    kind: str
    default: Any
    allowed: tuple[Any, ...] | None
    glob: bool = False


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
    select: Callable[[SourceView, Bound], list[FileRef]] | None
    partitioning: Partitioning = field(default_factory=Partitioning)
    cli_path: tuple[str, ...] = ()
    level: Level = "source"
    output: Output = "table"
    metadata: Callable[[SourceView, Bound], dict[str, Any]] | None = None

    @property
    def product(self) -> str:
        """The layout product whose base folder tells that the entry exists."""
        return self.products[0]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise not_found("parameter", name, [p.name for p in self.params], f"entry {self.name!r}")


class EntryTable(Mapping[str, EntryRow]):
    """The rows by name, read-only; a missing name is a clear error naming the rows that exist."""

    def __init__(self, rows: Iterable[EntryRow]) -> None:
        self._rows = types.MappingProxyType({r.name: r for r in rows})

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
        """The row that loads a layout product (``None`` for products no entry loads)."""
        return next((r for r in self._rows.values() if product in r.products), None)

    def only(self, output: Output) -> EntryRow:
        """The one row of an output kind (e.g. the one ``"catalog"`` row)."""
        (row,) = (r for r in self._rows.values() if r.output == output)
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


def _subset_versions(view: SourceView, bound: Bound) -> list[str]:
    return sorted(_assembled(view).get(bound.get("subset") or "", {}), key=layout.version_key)


def _subset_variants(view: SourceView, bound: Bound) -> list[str]:
    versions = _assembled(view).get(bound.get("subset") or "", {})
    return sorted({v for vs in versions.values() for v in vs})


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


def validate_params(params: Mapping[str, object]) -> None:
    """Reject parameter values that are not plain names (or globs, for glob parameters) before
    any request is made. ``None`` means "not given"; ``variant=""`` is the bare file.

    >>> validate_params({"batch": "2021_*", "plate": "BR00117037", "verify": True})
    >>> validate_params({"plate": "../x"})
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: invalid plate '../x': contains '/'; expected a single folder or file name such as 'BR00117037' or '2021_04_26_Batch1'
    """
    globs = ENTRY_TABLE.glob_names()
    kinds = {p.name: p.kind for r in ENTRY_TABLE.values() for p in r.params}
    for k, v in params.items():
        if v is None or (k == "variant" and v == "") or kinds.get(k) == "bool":
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
