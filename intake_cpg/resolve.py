"""What exists in a gallery, and which files a product with given parameters means.

This is the model behind the catalog: it turns a :class:`~intake_cpg.storage.Storage` and the
layout table (:mod:`intake_cpg.layout`) into the names a user browses (projects, sources,
products, batches, plates, variants, subsets, versions) and into the list of keys one
parameterised entry loads. It knows no Intake; the catalog classes are thin adapters over it.

Cost model (each listing is one request, cached by :class:`Storage`):

* projects: one listing of the root;
* sources of a project: one listing;
* products of a source: one listing of the source plus, concurrently, ``workspace/`` and
  ``workspace_dl/``;
* parameters of a per-plate product: its base folder, then every batch folder concurrently,
  then one plate folder per batch concurrently (to learn the variants and file names);
* files of a selection: no more listings for per-plate products (the file names follow the
  convention learnt from the sample plate); per-site products (analysis, embeddings) list the
  selected plates' subtrees, concurrently.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import layout
from .errors import ParameterError, not_found
from .storage import Entry, Storage

log = logging.getLogger(__name__)

__all__ = [
    "ALL",
    "ENTRY_PRODUCTS",
    "TABLE_ENTRIES",
    "Gallery",
    "PlateProduct",
    "choose_assembled_variant",
    "choose_variant",
    "is_table",
    "match_names",
    "validate_params",
]

#: The value that means "every batch / every plate".
ALL = "*"

#: Catalog entry name -> layout product whose base folder tells that the entry exists.
ENTRY_PRODUCTS: dict[str, str] = {
    "profiles": "profiles",
    "load_data": "load_data",
    "analysis": "analysis",
    "backend": "backend",
    "platemaps": "barcode_platemap",
    "dl_profiles": "dl_profiles",
    "embeddings": "embeddings",
    "profiles_assembled": "profiles_assembled",
}

#: The entries that load as tables (``profiles_assembled`` is a catalog of subsets).
TABLE_ENTRIES = tuple(n for n in ENTRY_PRODUCTS if n != "profiles_assembled")

_PROJECT_RE = re.compile(r"^cpg\d{4}(-[A-Za-z0-9_.-]+)?$")
_ACCESSION_RE = re.compile(r"^cpg\d{4}$")

#: Per-plate profile variants in order of preference when there is no bare ``<plate>.<ext>``.
_VARIANT_PREFERENCE = (
    "normalized_feature_select_negcon_batch",
    "normalized_feature_select_batch",
    "normalized_feature_select_negcon_plate",
    "normalized_feature_select_plate",
    "normalized_negcon",
    "normalized",
    "augmented",
)

#: Loadable file extensions, best first.
_TABLE_EXTENSIONS = ("parquet", "csv.gz", "csv", "txt", "tsv")


def match_names(pattern: str, names: Iterable[str]) -> list[str]:
    """Names matching ``pattern`` (a name or a shell glob), in sorted order.

    >>> match_names("BR0011703*", ["BR00117037", "BR00117038", "BR00121328"])
    ['BR00117037', 'BR00117038']
    >>> match_names("*", ["b", "a"])
    ['a', 'b']
    """
    names = sorted(names)
    if not any(c in pattern for c in "*?["):
        return [pattern] if pattern in names else []
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def choose_variant(variants: Iterable[str]) -> str:
    """The default per-plate variant: the bare file (``""``) if present, else a documented order.

    >>> choose_variant(["augmented", "normalized", ""])
    ''
    >>> choose_variant(["augmented", "normalized", "normalized_feature_select_negcon_batch"])
    'normalized_feature_select_negcon_batch'
    >>> choose_variant(["spherized_x"])
    'spherized_x'
    """
    vs = set(variants)
    if "" in vs:
        return ""
    for v in _VARIANT_PREFERENCE:
        if v in vs:
            return v
    return sorted(vs)[0] if vs else ""


def choose_assembled_variant(variants: Iterable[str], manifest_variant: str | None = None) -> str:
    """Default variant of an assembled subset.

    The variant a known manifest points to wins; otherwise the most processed pipeline, i.e.
    the variant with the most ``_``-separated steps (ties: alphabetical), which is what the
    JUMP manifests choose for their main subsets.

    >>> choose_assembled_variant(["profiles_wellpos_cc_var_mad_outlier",
    ...                           "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony"])
    'profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony'
    >>> choose_assembled_variant(["a_b_c", "a"], manifest_variant="a")
    'a'
    """
    vs = sorted(set(variants))
    if manifest_variant and manifest_variant in vs:
        return manifest_variant
    if not vs:
        return ""
    return max(vs, key=lambda v: (v.count("_"), [-ord(c) for c in v]))


@dataclass(frozen=True)
class PlateProduct:
    """What one per-plate product of one source holds (from its listings).

    ``files`` maps a variant (``""`` for the bare file) to its file-name pattern, with
    ``{plate}`` standing for the plate name, learnt from sample plate folders.
    """

    product: str
    prefix: str
    batches: tuple[str, ...]
    plates: Mapping[str, tuple[str, ...]]
    files: Mapping[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    fixed: Mapping[str, str] = field(default_factory=dict)

    def folder(self, batch: str, plate: str | None = None) -> str:
        """The folder of a batch, or of one plate in it (through the layout table)."""
        spec = layout.PRODUCT_SPECS[self.product]
        return spec.prefix(**self.fixed, batch=batch, plate=plate).rstrip("/")

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(sorted(self.files))

    def all_plates(self) -> list[str]:
        return sorted({p for ps in self.plates.values() for p in ps})

    def select(self, batch: str, plate: str, where: str) -> list[tuple[str, str]]:
        """``(batch, plate)`` pairs for a batch and a plate (each a name or a glob).

        Raises :class:`ProductNotFoundError` naming what exists when nothing matches.
        """
        layout.validate_name(batch, "batch", allow_glob=True)
        layout.validate_name(plate, "plate", allow_glob=True)
        batches = match_names(batch, self.batches)
        if not batches:
            raise not_found("batch", batch, self.batches, where)
        pairs = [(b, p) for b in batches for p in match_names(plate, self.plates.get(b, ()))]
        if not pairs:
            scope = batches[0] if len(batches) == 1 else f"{len(batches)} batches"
            cands = self.plates.get(batches[0], ()) if len(batches) == 1 else self.all_plates()
            raise not_found("plate", plate, cands, f"{where} ({scope})")
        return pairs


def is_table(filename: str) -> bool:
    """Whether a file name has a loadable table extension (``parquet``, ``csv.gz``, ...)."""
    return layout.split_ext(filename)[1] in _TABLE_EXTENSIONS


def _rank(filename: str) -> int:
    return _TABLE_EXTENSIONS.index(layout.split_ext(filename)[1] or "")


class Gallery:
    """The browsable model of one gallery root.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "cpg0016-jump" / "source_4" / "workspace" / "profiles").mkdir(parents=True)
    >>> (d / "dev-scratch").mkdir()
    >>> g = Gallery(Storage(str(d)))
    >>> g.projects()
    ['cpg0016-jump']
    >>> g.products("cpg0016-jump", "source_4")
    ['profiles']
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- names ----------------------------------------------------------------------------
    def _dirs(self, prefix: str) -> list[str]:
        return [e.name for e in self.storage.ls(prefix) if e.is_dir]

    def projects(self) -> list[str]:
        """Project folders at the root (``cpgNNNN-...``); other top-level items are skipped."""
        names = []
        for e in self.storage.ls(""):
            if e.is_dir and _PROJECT_RE.match(e.name):
                names.append(e.name)
            else:
                log.debug("skipping top-level item %r: not a cpgNNNN project", e.name)
        return sorted(names)

    @staticmethod
    def aliases(projects: Iterable[str]) -> dict[str, str]:
        """Accession -> project: ``cpg0016`` -> ``cpg0016-jump`` (the shortest name wins).

        >>> Gallery.aliases(["cpg0016-jump", "cpg0016-jump-assembled", "cpg0004-lincs"])
        {'cpg0004': 'cpg0004-lincs', 'cpg0016': 'cpg0016-jump'}
        """
        out: dict[str, str] = {}
        for p in sorted(projects, key=lambda n: (len(n), n)):
            acc = p[:7]
            if _ACCESSION_RE.match(acc) and acc != p:
                out.setdefault(acc, p)
        return dict(sorted(out.items()))

    def sources(self, project: str) -> list[str]:
        layout.validate_name(project, "project")
        return sorted(self._dirs(project))

    def products(self, project: str, source: str) -> list[str]:
        """Catalog entry names present in a source, in the order of :data:`ENTRY_PRODUCTS`."""
        top = f"{layout.validate_name(project, 'project')}/{layout.validate_name(source, 'source')}"
        stages = set(self._dirs(top))
        bases = {e: layout.PRODUCT_SPECS[p].base for e, p in ENTRY_PRODUCTS.items()}
        listing = self.storage.ls_many(
            f"{top}/{b[0]}" for b in sorted(set(bases.values())) if len(b) > 1 and b[0] in stages
        )
        second = {
            p.rsplit("/", 1)[-1]: {e.name for e in es if e.is_dir} for p, es in listing.items()
        }
        return [
            entry
            for entry, base in bases.items()
            if base and base[0] in stages and (len(base) == 1 or base[1] in second.get(base[0], ()))
        ]

    def base_prefix(self, project: str, source: str, product: str, **fields: str | None) -> str:
        """The listing folder of a product (down to the first field not given)."""
        spec = layout.PRODUCT_SPECS[product]
        return spec.prefix(project=project, source=source, **fields).rstrip("/")

    # -- per-plate products -----------------------------------------------------------------
    def plate_product(
        self, project: str, source: str, entry: str, model: str | None = None
    ) -> PlateProduct:
        """Batches, plates and file patterns of a per-plate product (see module cost model)."""
        product = ENTRY_PRODUCTS[entry]
        fixed = {"project": project, "source": source}
        models: tuple[str, ...] = ()
        if "model" in layout.PRODUCT_SPECS[product].levels:
            models = tuple(self._dirs(self.base_prefix(project, source, product)))
            if model is None:
                if not models:
                    return PlateProduct(
                        product, self.base_prefix(project, source, product), (), {}, {}, (), fixed
                    )
                model = models[0]
            layout.validate_name(model, "model")
            if model not in models:
                raise not_found("model", model, models, self.base_prefix(project, source, product))
            fixed["model"] = model
        prefix = self.base_prefix(product=product, **fixed)
        batches = tuple(self._dirs(prefix))
        pp = PlateProduct(product, prefix, batches, {}, {}, models, fixed)
        listing = self.storage.ls_many(pp.folder(b) for b in batches)
        plates = {b: tuple(e.name for e in listing[pp.folder(b)] if e.is_dir) for b in batches}
        files: dict[str, str] = {}
        if entry in ("profiles", "load_data", "backend", "dl_profiles"):
            samples = {pp.folder(b, ps[0]): ps[0] for b, ps in plates.items() if ps}
            for folder, entries in self.storage.ls_many(samples).items():
                plate = samples[folder]
                for e in entries:
                    if e.is_dir or not is_table(e.name):
                        continue
                    parsed = layout.parse_key(e.key)
                    if parsed.product != product or parsed.plate not in (plate, None):
                        continue
                    variant = parsed.variant or ""
                    pattern = e.name.replace(plate, "{plate}")
                    if variant not in files or _rank(e.name) < _rank(files[variant]):
                        files[variant] = pattern
        return PlateProduct(product, prefix, batches, plates, files, models, fixed)

    def plate_keys(
        self, pp: PlateProduct, pairs: list[tuple[str, str]], variant: str, where: str
    ) -> list[str]:
        """Keys of one file per selected plate, following the learnt file-name pattern."""
        if variant not in pp.files:
            raise not_found(
                "variant", variant or "(bare file)", [v or "(bare file)" for v in pp.files], where
            )
        pattern = pp.files[variant]
        return [f"{pp.folder(b, p)}/{pattern.replace('{plate}', p)}" for b, p in pairs]

    def subtree_keys(
        self, pp: PlateProduct, pairs: list[tuple[str, str]], keep: Callable[[Entry], bool]
    ) -> list[str]:
        """Keys below each selected plate folder for which ``keep(entry)`` is true (listed)."""
        found = self.storage.find_many(pp.folder(b, p) for b, p in pairs)
        keys = [e.key for entries in found.values() for e in entries if keep(e)]
        return sorted(keys)

    # -- platemaps --------------------------------------------------------------------------
    def platemap_batches(self, project: str, source: str) -> tuple[str, ...]:
        return tuple(self._dirs(self.base_prefix(project, source, "barcode_platemap")))

    def platemap_keys(self, project: str, source: str, batch: str) -> dict[str, str]:
        """``{name: key}`` of a batch's platemap tables: ``barcode_platemap`` and each platemap."""
        ids = {"project": project, "source": source, "batch": batch}
        keys = {}
        for e in self.storage.ls(
            self.base_prefix(project, source, "barcode_platemap", batch=batch)
        ):
            if not e.is_dir and layout.parse_key(e.key).product == "barcode_platemap":
                keys["barcode_platemap"] = e.key
        for e in self.storage.ls(self.base_prefix(product="platemap", **ids)):
            parsed = layout.parse_key(e.key)
            if not e.is_dir and parsed.product == "platemap" and parsed.variant:
                keys[parsed.variant] = e.key
        return keys

    # -- assembled profiles -----------------------------------------------------------------
    def assembled(self, project: str, source: str) -> dict[str, dict[str, dict[str, str]]]:
        """``{subset: {version: {variant: key}}}`` of ``profiles_assembled`` (concurrent listings)."""
        product = "profiles_assembled"
        subsets = self._dirs(self.base_prefix(project, source, product))
        folders = {s: self.base_prefix(project, source, product, subset=s) for s in subsets}
        versions = self.storage.ls_many(folders.values())
        files = self.storage.ls_many(e.key for es in versions.values() for e in es if e.is_dir)
        out: dict[str, dict[str, dict[str, str]]] = {}
        for s in subsets:
            found: dict[str, dict[str, str]] = {}
            for v in (e for e in versions[folders[s]] if e.is_dir):
                variants = {}
                for f in files[v.key]:
                    parsed = layout.parse_key(f.key)
                    if not f.is_dir and is_table(f.name) and parsed.product == product:
                        variants[parsed.variant or ""] = f.key
                if variants:
                    found[v.name] = variants
            if found:
                out[s] = found
        return out


def validate_params(params: Mapping[str, object]) -> None:
    """Reject parameter values that are not plain names or globs before any request is made."""
    for k, v in params.items():
        if v is None or k in ("variant",) and v == "":
            continue
        if not isinstance(v, str):
            raise ParameterError(f"parameter {k!r} must be a string, got {type(v).__name__} {v!r}")
        layout.validate_name(v, k, allow_glob=k in ("batch", "plate"))
