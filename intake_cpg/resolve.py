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
* parameters of a per-plate product: its base folder, then every batch folder concurrently
  (a recursive listing where the product's files are learnt: the plates, a sample plate's
  variants and file names, and the sizes and ETags the selected files are checked against);
* files of a selection: no more listings for per-plate profile-like products; per-site
  products (analysis, embeddings) list the selected plates' subtrees, concurrently.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import layout
from .errors import not_found
from .refs import FileRef
from .storage import Entry, Storage

log = logging.getLogger(__name__)

__all__ = [
    "ALL",
    "Gallery",
    "PlateProduct",
    "choose_assembled_variant",
    "choose_variant",
    "match_names",
    "newest_version",
]

#: The value that means "every batch / every plate".
ALL = "*"

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


def newest_version(versions: Iterable[str]) -> str | None:
    """The newest of some version folder names (the one rule; see :func:`layout.version_key`).

    >>> newest_version(["v1.0", "v1.0b", "v1.0a"]), newest_version([])
    ('v1.0b', None)
    """
    return max(versions, key=layout.version_key, default=None)


@dataclass(frozen=True)
class PlateProduct:
    """What one per-plate product of one source holds (from its listings).

    ``files`` maps a variant (``""`` for the bare file) to its file-name pattern, with
    ``{plate}`` standing for the plate name, learnt from sample plate folders (shown in the
    catalog's metadata); ``extensions`` maps it to the file extension keys are built with.
    """

    product: str
    prefix: str
    batches: tuple[str, ...]
    plates: Mapping[str, tuple[str, ...]]
    files: Mapping[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    fixed: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, str] = field(default_factory=dict)

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
        """``(batch, plate)`` pairs for a batch and a plate (each a name or a glob, already
        validated by the caller).

        Raises :class:`ProductNotFoundError` naming what exists when nothing matches.
        """
        batches = match_names(batch, self.batches)
        if not batches:
            raise not_found("batch", batch, self.batches, where)
        pairs = [(b, p) for b in batches for p in match_names(plate, self.plates.get(b, ()))]
        if not pairs:
            scope = batches[0] if len(batches) == 1 else f"{len(batches)} batches"
            cands = self.plates.get(batches[0], ()) if len(batches) == 1 else self.all_plates()
            raise not_found("plate", plate, cands, f"{where} ({scope})")
        return pairs


def _rank(filename: str) -> int:
    return _TABLE_EXTENSIONS.index(layout.split_ext(filename)[1] or "")


def _files_by_plate(folder: str, entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """The files directly in each plate folder of a batch, from the batch's recursive listing
    (a plate is a folder holding at least one file, at any depth)."""
    out: dict[str, list[Entry]] = {}
    base = folder.rstrip("/") + "/"
    for e in entries:
        if not e.key.startswith(base):
            continue
        plate, sep, rest = e.key[len(base) :].partition("/")
        if not sep:
            continue
        own = out.setdefault(plate, [])
        if "/" not in rest:
            own.append(e)
    return out


class Gallery:
    """The browsable model of one gallery root.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "cpg0016-jump" / "source_4" / "workspace" / "profiles").mkdir(parents=True)
    >>> (d / "dev-scratch").mkdir()
    >>> g = Gallery(Storage(str(d)))
    >>> g.projects()
    ['cpg0016-jump']
    >>> sorted(g.present("cpg0016-jump", "source_4", ["profiles", "analysis"]))
    ['profiles']
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- names ----------------------------------------------------------------------------
    def _dirs(self, prefix: str) -> list[str]:
        return [e.name for e in self.storage.ls(prefix) if e.is_dir]

    @staticmethod
    def is_table(filename: str | None) -> bool:
        """Whether a file name has a loadable table extension (``parquet``, ``csv.gz``, ...)."""
        return filename is not None and layout.split_ext(filename)[1] in _TABLE_EXTENSIONS

    def ref(self, key: str, entry: Entry | None = None) -> FileRef:
        """The :class:`FileRef` of a key (size and ETag from its listing entry, when listed)."""
        return FileRef(
            key=key,
            url=self.storage.url(key),
            size=entry.size if entry is not None else None,
            etag=entry.etag if entry is not None else None,
            path=layout.parse_key(key),
        )

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

    def present(self, project: str, source: str, products: Iterable[str]) -> set[str]:
        """Which of the layout ``products`` have their base folder in a source: one round trip
        of at most three concurrent listings (the source, ``workspace/`` and
        ``workspace_dl/``; a stage folder the source lacks lists as empty)."""
        top = f"{layout.validate_name(project, 'project')}/{layout.validate_name(source, 'source')}"
        bases = {p: layout.PRODUCT_SPECS[p].base for p in products}
        stage_dirs = sorted({b[0] for b in bases.values() if len(b) > 1})
        listing = self.storage.ls_many([top, *(f"{top}/{d}" for d in stage_dirs)])
        stages = {e.name for e in listing[top] if e.is_dir}
        second = {
            p.rsplit("/", 1)[-1]: {e.name for e in es if e.is_dir}
            for p, es in listing.items()
            if p != top
        }
        return {
            product
            for product, base in bases.items()
            if base and base[0] in stages and (len(base) == 1 or base[1] in second.get(base[0], ()))
        }

    def base_prefix(self, project: str, source: str, product: str, **fields: str | None) -> str:
        """The listing folder of a product (down to the first field not given)."""
        spec = layout.PRODUCT_SPECS[product]
        return spec.prefix(project=project, source=source, **fields).rstrip("/")

    def batches(self, project: str, source: str, product: str) -> tuple[str, ...]:
        """The batch folders of a product whose first level is the batch."""
        return tuple(self._dirs(self.base_prefix(project, source, product)))

    # -- per-plate products -----------------------------------------------------------------
    def plate_product(
        self,
        project: str,
        source: str,
        product: str,
        model: str | None = None,
        *,
        learn_files: bool = False,
    ) -> PlateProduct:
        """Batches, plates and (with ``learn_files``) file patterns of a per-plate product
        (see the module's cost model)."""
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
            if model not in models:
                raise not_found("model", model, models, self.base_prefix(project, source, product))
            fixed["model"] = model
        prefix = self.base_prefix(product=product, **fixed)
        batches = tuple(self._dirs(prefix))
        pp = PlateProduct(product, prefix, batches, {}, {}, models, fixed)
        files: dict[str, str] = {}
        extensions: dict[str, str] = {}
        if not learn_files:
            listing = self.storage.ls_many(pp.folder(b) for b in batches)
            plates = {b: tuple(e.name for e in listing[pp.folder(b)] if e.is_dir) for b in batches}
        else:
            # One recursive listing per batch gives its plates and a sample plate's files, and
            # is the listing plate_files() checks the selected files against (cached).
            found = self.storage.find_many(pp.folder(b) for b in batches)
            plates, samples = {}, []
            for b in batches:
                by_plate = _files_by_plate(pp.folder(b), found[pp.folder(b)])
                plates[b] = tuple(sorted(by_plate))
                if plates[b]:
                    samples.append((plates[b][0], by_plate[plates[b][0]]))
            for plate, entries in samples:
                for e in entries:
                    if e.is_dir or not self.is_table(e.name):
                        continue
                    parsed = layout.parse_key(e.key)
                    if parsed.product != product or parsed.plate not in (plate, None):
                        continue
                    variant = parsed.variant or ""
                    if variant not in files or _rank(e.name) < _rank(files[variant]):
                        files[variant] = e.name.replace(plate, "{plate}")  # shown, not used
                        extensions[variant] = parsed.extension or ""
        return PlateProduct(product, prefix, batches, plates, files, models, fixed, extensions)

    def plate_file(self, pp: PlateProduct, batch: str, plate: str, variant: str) -> FileRef:
        """The file of one plate and variant, following the convention learnt from a sample
        plate (no listing of the plate folder)."""
        key = layout.format_key(
            pp.product,
            **pp.fixed,
            batch=batch,
            plate=plate,
            variant=variant or None,
            extension=pp.extensions[variant],
        )
        return self.ref(key)

    def plate_files(
        self,
        pp: PlateProduct,
        pairs: list[tuple[str, str]],
        variant: str,
        where: str,
        *,
        strict: bool = False,
    ) -> list[FileRef]:
        """One file per selected plate, checked against one recursive listing per batch.

        A plate's file is where the batch's sample plate says (:meth:`plate_file`); a plate
        stored under another name or format is read from where it is (its best table of the
        variant); a plate with no such table is skipped with a logged WARNING naming it, or
        refused with ``strict``. The refs carry the size and ETag of their listing.
        """
        found = self.storage.find_many(sorted({pp.folder(b) for b, _ in pairs}))
        listed = {e.key: e for entries in found.values() for e in entries}
        out, skipped = [], []
        for b, p in pairs:
            expected = self.plate_file(pp, b, p, variant).key
            if expected in listed:
                out.append(self.ref(expected, listed[expected]))
                continue
            folder = pp.folder(b, p) + "/"
            own = [
                self.ref(k, e)
                for k, e in listed.items()
                if k.startswith(folder) and self.is_table(e.name)
            ]
            own = [
                r
                for r in own
                if r.path.product == pp.product
                and r.path.plate in (p, None)
                and (r.path.variant or "") == variant
            ]
            if own:
                best = min(own, key=lambda r: (_rank(r.path.filename), r.key))
                log.info("%s: %s is not at %s; reading %s", where, p, expected, best.key)
                out.append(best)
                continue
            if strict:
                raise not_found(
                    "table file", expected.rsplit("/", 1)[-1], [], f"{where} (plate {b}/{p})"
                )
            skipped.append(f"{b}/{p}")
        if skipped:
            log.warning(
                "%s: skipped %d plate(s) without a %s table: %s (strict=True refuses them)",
                where, len(skipped), variant or "bare-file", ", ".join(skipped[:20]),
            )  # fmt: skip
        if not out:
            raise not_found("plate with a table", ", ".join(skipped[:5]), [], where)
        return out

    def plate_tables(self, pp: PlateProduct, pairs: list[tuple[str, str]]) -> list[list[FileRef]]:
        """The table files of each selected plate folder, best extension first (one listing per
        plate, concurrent): for products whose file names vary from plate to plate."""
        listing = self.storage.ls_many(pp.folder(b, p) for b, p in pairs)
        out = []
        for b, p in pairs:
            refs = [
                self.ref(e.key, e)
                for e in listing[pp.folder(b, p)]
                if not e.is_dir and self.is_table(e.name)
            ]
            refs = [r for r in refs if r.path.product == pp.product]
            out.append(sorted(refs, key=lambda r: (_rank(r.path.filename), r.key)))
        return out

    def subtree_files(
        self, pp: PlateProduct, pairs: list[tuple[str, str]], keep: Callable[[FileRef], bool]
    ) -> list[FileRef]:
        """Files below each selected plate folder for which ``keep(ref)`` is true (listed)."""
        found = self.storage.find_many(pp.folder(b, p) for b, p in pairs)
        refs = [self.ref(e.key, e) for entries in found.values() for e in entries]
        return sorted((r for r in refs if keep(r)), key=lambda r: r.key)

    # -- platemaps --------------------------------------------------------------------------
    def platemap_files(
        self, project: str, source: str, batch: str, products: tuple[str, str]
    ) -> dict[str, FileRef]:
        """``{name: ref}`` of a batch's platemap tables: the barcode table under its product
        name (``products[0]``), each platemap (``products[1]``) under its own name."""
        barcode, platemap = products
        keys = {}
        for e in self.storage.ls(self.base_prefix(project, source, barcode, batch=batch)):
            if not e.is_dir and layout.parse_key(e.key).product == barcode:
                keys[barcode] = self.ref(e.key, e)
        for e in self.storage.ls(self.base_prefix(project, source, platemap, batch=batch)):
            ref = self.ref(e.key, e)
            if not e.is_dir and ref.path.product == platemap and ref.path.variant:
                keys[ref.path.variant] = ref
        return keys

    # -- assembled profiles -----------------------------------------------------------------
    def assembled(
        self, project: str, source: str, product: str
    ) -> dict[str, dict[str, dict[str, FileRef]]]:
        """``{subset: {version: {variant: ref}}}`` of an assembled product (concurrent listings)."""
        subsets = self._dirs(self.base_prefix(project, source, product))
        folders = {s: self.base_prefix(project, source, product, subset=s) for s in subsets}
        versions = self.storage.ls_many(folders.values())
        files = self.storage.ls_many(e.key for es in versions.values() for e in es if e.is_dir)
        out: dict[str, dict[str, dict[str, FileRef]]] = {}
        for s in subsets:
            found: dict[str, dict[str, FileRef]] = {}
            for v in (e for e in versions[folders[s]] if e.is_dir):
                variants = {}
                for f in files[v.key]:
                    if f.is_dir or not self.is_table(f.name):
                        continue
                    ref = self.ref(f.key, f)
                    if ref.path.product == product:
                        variants[ref.path.variant or ""] = ref
                if variants:
                    found[v.name] = variants
            if found:
                out[s] = found
        return out
