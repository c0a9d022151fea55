"""The template compiler and matcher: :func:`parse_key` and :func:`format_key`.

Both are derived from :data:`~intake_cpg.layout.table.PRODUCT_TABLE`: every layout template is
compiled once, at import, into a :class:`Layout` (literal folders, bound fields, composite
segments, the file name), and the layouts are indexed by their literal folders so that parsing
a key costs two dict lookups and one match.

>>> parse_key("cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/"
...           "BR00117037.parquet").plate
'BR00117037'
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GalleryPathError, ParameterError
from .names import has_glob, split_ext, split_url, validate_name
from .table import FIELD_PATTERNS, FIELDS, PARSED_FIELDS, PRODUCT_TABLE

__all__ = ["PRODUCT_SPECS", "GalleryPath", "Layout", "ProductSpec", "format_key", "parse_key"]

_FIELD_RES = {name: re.compile(pat) for name, pat in FIELD_PATTERNS.items()}


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryPath:
    """A gallery key, parsed: which product it is and the parameters its folders carry.

    Fields that do not apply to the product are None.

    >>> p = parse_key("cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/"
    ...               "BR00117037/BR00117037_normalized.csv.gz")
    >>> p.product, p.plate, p.variant, p.extension, p.stem
    ('profiles', 'BR00117037', 'normalized', 'csv.gz', 'BR00117037_normalized')
    """

    project: str | None = None
    source: str | None = None
    product: str
    batch: str | None = None
    plate: str | None = None
    well: str | None = None
    site: str | None = None
    subset: str | None = None
    version: str | None = None
    variant: str | None = None
    model: str | None = None
    filename: str | None = None
    extension: str | None = None
    key: str = field(default="", compare=False)
    #: Raw images: the plate folder as named (``plate`` is the plate without the microscope's
    #: ``__<timestamp>-Measurement<N>`` suffix) and the channel from the file name.
    plate_folder: str | None = None
    channel: str | None = None

    @property
    def stem(self) -> str | None:
        """The file name without its extension (``BR00117037`` for ``BR00117037.parquet``)."""
        if self.filename is None or self.extension is None:
            return self.filename
        return self.filename[: -len(self.extension) - 1]

    def fields(self) -> dict[str, str]:
        """The fields that are set, as a dict (``product`` included, ``key`` excluded).

        >>> parse_key("cpg0016-jump/source_4/workspace/metadata/platemaps/"
        ...           "2021_04_26_Batch1/barcode_platemap.csv").fields()["batch"]
        '2021_04_26_Batch1'
        """
        out = {"product": self.product}
        for name in (*FIELDS, *PARSED_FIELDS):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _slot_setter(name: str) -> Any:
    return getattr(GalleryPath, name).__set__


# Building a GalleryPath through its frozen-dataclass __init__ costs about as much as parsing
# the key; parse_key fills the slots directly (same result, validated by the tests).
_S_PROJECT, _S_SOURCE, _S_PRODUCT, _S_KEY = (
    _slot_setter(n) for n in ("project", "source", "product", "key")
)
_S_BATCH, _S_PLATE, _S_WELL, _S_SITE, _S_SUBSET = (
    _slot_setter(n) for n in ("batch", "plate", "well", "site", "subset")
)
_S_VERSION, _S_VARIANT, _S_MODEL, _S_FILENAME, _S_EXTENSION = (
    _slot_setter(n) for n in ("version", "variant", "model", "filename", "extension")
)
_S_PLATE_FOLDER, _S_CHANNEL = (_slot_setter(n) for n in ("plate_folder", "channel"))
_new_object = object.__new__


def _make_path(product: str, key: str, project: str, source: str, r: dict) -> GalleryPath:
    p = _new_object(GalleryPath)
    g = r.get
    _S_PROJECT(p, project or None)
    _S_SOURCE(p, source or None)
    _S_PRODUCT(p, product)
    _S_KEY(p, key)
    _S_BATCH(p, g("batch"))
    _S_PLATE(p, g("plate"))
    _S_WELL(p, g("well"))
    _S_SITE(p, g("site"))
    _S_SUBSET(p, g("subset"))
    _S_VERSION(p, g("version"))
    _S_VARIANT(p, g("variant"))
    _S_MODEL(p, g("model"))
    _S_FILENAME(p, g("filename"))
    _S_EXTENSION(p, g("extension"))
    _S_PLATE_FOLDER(p, g("plate_folder"))
    _S_CHANNEL(p, g("channel"))
    return p


@dataclass(frozen=True, slots=True)
class Layout:
    """One path template of a product, compiled for matching and formatting.

    ``fields`` are the GalleryPath fields the template names (in order), ``optional`` the ones
    inside ``[...]``; ``fixed`` are fields a literal folder implies; ``legacy`` layouts are only
    parsed, never formatted.
    """

    product: str
    template: str
    fields: tuple[str, ...]
    optional: frozenset[str]
    fixed: Mapping[str, str]
    legacy: bool
    # compiled matching data
    _segments: tuple[str, ...] = field(repr=False)
    _nfolders: int = field(repr=False)
    _deep: bool = field(repr=False)
    _lits: tuple[tuple[int, str], ...] = field(repr=False)
    _binds: tuple[tuple[int, str, re.Pattern | None], ...] = field(repr=False)
    _anys: tuple[int, ...] = field(repr=False)
    _eqs: tuple[tuple[int, str], ...] = field(repr=False)
    _composites: tuple[tuple[int, str | None, re.Pattern], ...] = field(repr=False)
    _leaf: tuple[str, Any, Any] = field(repr=False)
    #: Fields read from the matched ones (raw images: plate, well, site, channel from the
    #: plate folder and the file name), the layout row's ``refine`` option.
    refine: Any = field(default=None, repr=False)

    def match(self, segs: list[str]) -> dict[str, str | None] | tuple[int, str]:
        """Match the split key ``segs`` (project and source included).

        Returns the bound fields, or ``(segment index, reason)`` where matching failed.
        """
        n = len(segs) - 3  # folders after <project>/<source>/, the file name excluded
        if n != self._nfolders and (not self._deep or n < self._nfolders):
            least = "at least " if self._deep else ""
            where = min(len(segs), self._nfolders + 3) - 1
            return where, (
                f"ends a key of {n + 1} segments after <project>/<source>/ where this layout "
                f"has {least}{self._nfolders + 1}"
            )
        for pos, text in self._lits:
            if segs[pos] != text:
                return pos, f"is not {text!r}"
        out: dict[str, str | None] = dict(self.fixed) if self.fixed else {}
        for pos, name, rx in self._binds:
            value = segs[pos]
            if not value:
                return pos, "is empty"
            if rx is not None and rx.fullmatch(value) is None:
                return pos, f"is not a valid {name} ({rx.pattern})"
            out[name] = value
        for pos in self._anys:
            if not segs[pos]:
                return pos, "is empty"
        for pos, name in self._eqs:
            if segs[pos] != out[name]:
                return pos, f"should repeat the {name} folder {out[name]!r}"
        for pos, prefix, rx in self._composites:
            value = segs[pos]
            if prefix is not None:
                head = out[prefix]
                if not value.startswith(head):  # type: ignore[arg-type]
                    return pos, f"does not start with the {prefix} {head!r}"
                value = value[len(head) :]  # type: ignore[arg-type]
            m = rx.fullmatch(value)
            if m is None:
                return pos, f"does not fit {self._segments[pos - 2]!r}"
            out.update(m.groupdict())
        filename = segs[-1]
        if not filename:
            return len(segs) - 1, "is empty (a folder, not a file)"
        out["filename"] = filename
        kind, prefix, rx = self._leaf
        if kind == "filename":
            out["extension"] = split_ext(filename)[1]
            return out
        stem, ext = split_ext(filename)
        if ext is None:
            return len(segs) - 1, "has no file extension"
        out["extension"] = ext
        if prefix is not None:
            head = out[prefix]
            if not stem.startswith(head):  # type: ignore[arg-type]
                return len(segs) - 1, f"does not start with the {prefix} {head!r}"
            stem = stem[len(head) :]  # type: ignore[arg-type]
        if kind == "affix":  # <a>{name} or <a>[<b>{name}] or <a>: string operations only
            a, b, name, optional = rx
            if a:
                if not stem.startswith(a):
                    return len(segs) - 1, f"does not fit {self._segments[-1]!r}"
                stem = stem[len(a) :]
            if name is None:
                if stem:
                    return len(segs) - 1, f"does not fit {self._segments[-1]!r}"
            elif not optional:
                if not stem:
                    return len(segs) - 1, f"has an empty {name}"
                out[name] = stem
            elif not stem:
                out[name] = None
            elif stem.startswith(b) and len(stem) > len(b):
                out[name] = stem[len(b) :]
            else:
                return len(segs) - 1, f"does not fit {self._segments[-1]!r}"
            return out
        m = rx.fullmatch(stem)
        if m is None:
            return len(segs) - 1, f"does not fit {self._segments[-1]!r}"
        out.update(m.groupdict())
        return out


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """A product of the gallery: one row of :data:`PRODUCT_TABLE`.

    ``base`` are the literal folders between ``<project>/<source>/`` and the first parameter
    folder, ``levels`` the GalleryPath fields named by the folders of the canonical layout, in
    order (literal folders may sit between them: use :meth:`prefix` to build listing prefixes).

    >>> spec = PRODUCT_SPECS["profiles"]
    >>> spec.base, spec.levels
    (('workspace', 'profiles'), ('batch', 'plate'))
    >>> PRODUCT_SPECS["illum"].prefix(project="cpg0016-jump", source="source_4",
    ...                               batch="2021_04_26_Batch1")
    'cpg0016-jump/source_4/images/2021_04_26_Batch1/illum/'
    """

    name: str
    tier: int
    base: tuple[str, ...]
    levels: tuple[str, ...]
    template: str
    description: str
    layouts: tuple[Layout, ...] = field(repr=False)

    def prefix(self, *, project: str, source: str, **fields: str | None) -> str:
        """The listing prefix of the canonical layout, down to the first level not given.

        Values are checked with :func:`validate_name`.
        """
        parts = [validate_name(project, "project"), validate_name(source, "source")]
        for seg in self.layouts[0]._segments[:-1]:
            names = _field_names(seg)
            if seg == "**":
                break
            if not names:
                parts.append(seg)
                continue
            if seg != "{" + names[0] + "}" or fields.get(names[0]) is None:
                break
            parts.append(validate_name(fields[names[0]], names[0]))  # type: ignore[arg-type]
        return "/".join(parts) + "/"


# --------------------------------------------------------------------------------------------
# Compiling the table
# --------------------------------------------------------------------------------------------

_AFFIX = re.compile(r"([^{}\[\]]*)(?:\{(\w+)\}|\[([^{}\[\]]*)\{(\w+)\}\])?")
_FIELD_TOKEN = re.compile(r"\{(\w+)\}")
_TOKEN = re.compile(r"\{\w+\}|\[|\]|[^{}\[\]]+")


def _field_names(template: str) -> list[str]:
    return _FIELD_TOKEN.findall(template)


def _segment_regex(template: str, patterns: Mapping[str, str]) -> re.Pattern:
    out = []
    for tok in _TOKEN.findall(template):
        if tok == "[":
            out.append("(?:")
        elif tok == "]":
            out.append(")?")
        elif tok.startswith("{"):
            name = tok[1:-1]
            out.append(f"(?P<{name}>{patterns.get(name, '.+')})")
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _optional_fields(template: str) -> set[str]:
    depth, names = 0, set()
    for tok in _TOKEN.findall(template):
        if tok == "[":
            depth += 1
        elif tok == "]":
            depth -= 1
        elif tok.startswith("{") and depth:
            names.add(tok[1:-1])
    return names


def _compile_layout(product: str, template: str, opts: Mapping[str, Any]) -> Layout:
    patterns = {**FIELD_PATTERNS, **opts.get("patterns", {})}
    segments = tuple(template.split("/"))
    folders, leaf_t = segments[:-1], segments[-1]
    deep = "**" in folders
    if deep and folders.index("**") != len(folders) - 1:
        raise ValueError(f"{template}: '**' may only come just before the file name")
    folders = tuple(s for s in folders if s != "**")
    bound: set[str] = set()
    lits, binds, eqs, comps, anys = [], [], [], [], []
    for i, seg in enumerate(folders):
        pos = i + 2
        names = _field_names(seg)
        if not names:
            lits.append((pos, seg))
        elif seg == "{" + names[0] + "}":
            name = names[0]
            if name.startswith("_"):  # a folder that must exist but carries no field
                anys.append(pos)
            elif name in bound:
                eqs.append((pos, name))
            else:
                rx = re.compile(patterns[name]) if name in patterns else None
                binds.append((pos, name, rx))
                bound.add(name)
        else:
            prefix, rest = _split_bound_prefix(seg, bound, template)
            comps.append((pos, prefix, _segment_regex(rest, patterns)))
            bound.update(n for n in names if n != prefix)
    if leaf_t == "{filename}":
        leaf: tuple[str, Any, Any] = ("filename", None, None)
    elif leaf_t.endswith(".{extension}"):
        stem_t = leaf_t[: -len(".{extension}")]
        prefix, rest = _split_bound_prefix(stem_t, bound, template)
        m = _AFFIX.fullmatch(rest)
        name = m and (m.group(2) or m.group(4))
        if m and name not in patterns:
            optional = m.group(4) is not None
            leaf = ("affix", prefix, (m.group(1), m.group(3) or "", name, optional))
        else:
            leaf = ("regex", prefix, _segment_regex(rest, patterns))
    else:
        raise ValueError(
            f"{template}: the file name must be '{{filename}}' or end in '.{{extension}}'"
        )
    all_names: list[str] = []
    for seg in segments:
        for name in _field_names(seg):
            if name not in all_names and not name.startswith("_"):
                all_names.append(name)
    if leaf_t == "{filename}":
        all_names.append("extension")  # derived, never formatted
    return Layout(
        product=product,
        template=template,
        fields=tuple(all_names),
        optional=frozenset(_optional_fields(template)),
        fixed=types.MappingProxyType(dict(opts.get("fixed", {}))),
        legacy=bool(opts.get("legacy", False)),
        _segments=segments,
        _nfolders=len(folders),
        _deep=deep,
        _lits=tuple(lits),
        _binds=tuple(binds),
        _anys=tuple(anys),
        _eqs=tuple(eqs),
        _composites=tuple(comps),
        _leaf=leaf,
        refine=opts.get("refine"),
    )


def _split_bound_prefix(seg: str, bound: set[str], template: str) -> tuple[str | None, str]:
    m = re.match(r"\{(\w+)\}", seg)
    if m and m.group(1) in bound:
        rest = seg[m.end() :]
        if any(n in bound for n in _field_names(rest)):
            raise ValueError(f"{template}: a bound field may only repeat at the start of {seg!r}")
        return m.group(1), rest
    if any(n in bound for n in _field_names(seg)):
        raise ValueError(f"{template}: a bound field may only repeat at the start of {seg!r}")
    return None, seg


def _build_specs() -> dict[str, ProductSpec]:
    specs = {}
    for row in PRODUCT_TABLE:
        layouts = tuple(_compile_layout(row.name, t, o) for t, o in row.layouts)
        canon = layouts[0]
        base = []
        for seg in canon._segments:
            if _field_names(seg) or seg == "**":
                break
            base.append(seg)
        levels = []
        for seg in canon._segments[:-1]:
            for name in _field_names(seg):
                if name not in levels and not name.startswith("_"):
                    levels.append(name)
        specs[row.name] = ProductSpec(
            name=row.name,
            tier=row.tier,
            base=tuple(base),
            levels=tuple(levels),
            template="{project}/{source}/" + canon.template,
            description=row.description,
            layouts=layouts,
        )
    return specs


#: Every product of the table by name (``other`` is not a product of the table).
PRODUCT_SPECS: Mapping[str, ProductSpec] = types.MappingProxyType(_build_specs())


def _build_dispatch() -> dict[str, tuple[int, dict[str, tuple[Layout, ...]]]]:
    """Group layouts by their top folder, then by the first folder position where every
    layout of the group has a literal: parsing needs two dict lookups to find candidates."""
    groups: dict[str, list[Layout]] = {}
    for spec in PRODUCT_SPECS.values():
        for lay in spec.layouts:
            groups.setdefault(lay._segments[0], []).append(lay)
    dispatch = {}
    for top, lays in groups.items():
        lit_at = [dict(lay._lits) for lay in lays]
        pos = next(
            p
            for p in range(3, 3 + min(lay._nfolders for lay in lays))
            if all(p in d for d in lit_at)
        )
        table: dict[str, list[Layout]] = {}
        for lay, d in zip(lays, lit_at, strict=True):
            table.setdefault(d[pos], []).append(lay)
        dispatch[top] = (pos, {k: tuple(v) for k, v in table.items()})
    return dispatch


_DISPATCH = _build_dispatch()


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse_key(key: str, strict: bool = False) -> GalleryPath:
    """Parse a gallery key or URL into a :class:`GalleryPath`.

    ``key`` is bucket-relative, ``s3://<bucket>/<key>`` or
    ``https://<bucket>.s3.amazonaws.com/<key>``. A key that fits no layout of
    :data:`PRODUCT_TABLE` gives ``product="other"`` with only what can be read without
    guessing (project, source, file name); with ``strict=True`` it raises
    :class:`~intake_cpg.errors.GalleryPathError` naming the key and the segment where matching
    failed.

    >>> p = parse_key("https://cellpainting-gallery.s3.amazonaws.com/cpg0016-jump-assembled/"
    ...               "source_all/workspace/profiles_assembled/COMPOUND/v1.0/"
    ...               "profiles_var_mad_int_featselect_harmony.parquet")
    >>> p.product, p.subset, p.version, p.variant
    ('profiles_assembled', 'COMPOUND', 'v1.0', 'profiles_var_mad_int_featselect_harmony')
    >>> parse_key("index.html").product
    'other'
    >>> parse_key("cpg0016-jump/source_4/workspace/profilez/b/p/p.parquet", strict=True)
    Traceback (most recent call last):
    ...
    intake_cpg.errors.GalleryPathError: cannot parse gallery key 'cpg0016-jump/source_4/workspace/profilez/b/p/p.parquet': segment 4 'profilez' is not a known folder under 'workspace/' (expected one of: analysis, backend, load_data_csv, load_data_csv_orig, metadata, pipelines, profiles, profiles_assembled, quality_control, segmentation)
    """
    if "://" in key:
        try:
            key = split_url(key)[1]
        except GalleryPathError:
            if strict:
                raise
            return GalleryPath(product="other", key=key)  # tolerant: never guess from a bad URL
    elif key[:1] == "/":
        key = key.lstrip("/")
    segs = key.split("/")
    entry = _DISPATCH.get(segs[2]) if len(segs) > 3 else None
    if entry is not None:
        pos, table = entry
        cands = table.get(segs[pos]) if len(segs) > pos + 1 else None
        if cands is not None:
            failures = None
            for lay in cands:
                r = lay.match(segs)
                if type(r) is dict:
                    if lay.refine is not None:
                        r = lay.refine(r)
                    return _make_path(lay.product, key, segs[0], segs[1], r)
                if strict:
                    failures = failures or []
                    failures.append((r, lay))
            if strict:
                (where, why), lay = max(failures, key=_failure_rank)  # type: ignore[arg-type]
                _fail(key, segs, where, f"{why} (as {lay.product}: {lay.template})")
        elif strict:
            where = min(pos, len(segs) - 1)
            known = ", ".join(sorted(table))
            above = "/".join(segs[2:where]) + "/"
            _fail(
                key,
                segs,
                where,
                f"is not a known folder under {above!r} (expected one of: {known})",
            )
    elif strict:
        if len(segs) <= 3:
            _fail(
                key,
                segs,
                len(segs) - 1,
                "ends the key too early: expected <project>/<source>/<stage>/... "
                "with at least 4 segments",
            )
        _fail(
            key, segs, 2, f"is not a stage folder (expected one of: {', '.join(sorted(_DISPATCH))})"
        )
    return _other(key, segs)


def _failure_rank(failure: tuple[tuple[int, str], Layout]) -> tuple[bool, int]:
    """Rank failed layouts: one of the right length that failed deepest explains best."""
    (where, why), _ = failure
    return not why.startswith("ends a key"), where


def _other(key: str, segs: list[str]) -> GalleryPath:
    n = len(segs)
    filename = segs[-1] or None
    return GalleryPath(
        project=(segs[0] or None) if n > 1 else None,
        source=(segs[1] or None) if n > 2 else None,
        product="other",
        filename=filename,
        extension=split_ext(filename)[1] if filename else None,
        key=key,
    )


def _fail(key: str, segs: list[str], where: int, why: str) -> None:
    raise GalleryPathError(
        f"cannot parse gallery key {key!r}: segment {where + 1} {segs[where]!r} {why}"
    )


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _render(template: str, values: Mapping[str, str], used: set[str]) -> str | None:
    """Render one segment template; ``[...]`` groups render only when their fields are set."""
    toks = _TOKEN.findall(template)

    def group(i: int) -> tuple[str | None, int]:
        out: list[str] = []
        missing = False
        while i < len(toks):
            tok = toks[i]
            if tok == "[":
                inner, i = group(i + 1)
                if inner is not None:
                    out.append(inner)
                continue
            if tok == "]":
                return (None if missing else "".join(out)), i + 1
            if tok.startswith("{"):
                name = tok[1:-1]
                if values.get(name) is None:
                    missing = True
                else:
                    out.append(values[name])
            else:
                out.append(tok)
            i += 1
        return (None if missing else "".join(out)), i

    text, _ = group(0)
    if text is not None:
        used.update(n for n in _field_names(template) if values.get(n) is not None)
    return text


def _choose_layout(spec: ProductSpec, given: set[str], values: Mapping[str, str]) -> Layout:
    for lay in spec.layouts:
        if lay.legacy:
            continue
        allowed = set(lay.fields) | set(lay.fixed) | {"project", "source"}
        if lay._leaf[0] == "filename":
            allowed.discard("extension")
        required = allowed - lay.optional
        fixed_ok = all(values.get(k) == v for k, v in lay.fixed.items())
        if given <= allowed and required <= given and fixed_ok:
            return lay
    forms = []
    for lay in spec.layouts:
        if lay.legacy:
            continue
        req = [f for f in lay.fields if f not in lay.optional and f != "extension"] + (
            ["extension"] if lay._leaf[0] != "filename" else []
        )
        fixed = ", ".join(f"{k}={v!r}" for k, v in lay.fixed.items())
        opt = f" (optional: {', '.join(sorted(lay.optional))})" if lay.optional else ""
        forms.append(f"project, source, {', '.join(req)}{opt}{' with ' + fixed if fixed else ''}")
    raise ParameterError(
        f"format_key({spec.name!r}) cannot be built from the fields {sorted(given)}; "
        f"it needs one of: " + "; or ".join(forms)
    )


def format_key(product: str, *, allow_glob: bool = False, **fields: str | None) -> str:
    """Build the bucket-relative key of ``product`` from its fields (the inverse of parse).

    Fields set to None count as not given. Every value is checked with :func:`validate_name`;
    with ``allow_glob=True`` values may hold ``* ? [ ]`` to build a glob pattern.

    >>> format_key("profiles", project="cpg0016-jump", source="source_4",
    ...            batch="2021_04_26_Batch1", plate="BR00117037", variant="normalized",
    ...            extension="csv.gz")
    'cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037_normalized.csv.gz'
    >>> format_key("profiles", project="cpg0016-jump", source="source_4",
    ...            batch="2021_04_26_Batch1", plate="*", extension="parquet", allow_glob=True)
    'cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/*/*.parquet'
    """
    spec = PRODUCT_SPECS.get(product)
    if spec is None:
        from ..errors import close_matches

        hint = close_matches(product, PRODUCT_SPECS)
        did = f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
        raise ParameterError(
            f"unknown product {product!r}{did} Products: {', '.join(PRODUCT_SPECS)}."
        )
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ParameterError(
            f"format_key({product!r}) got unknown fields {sorted(unknown)}; "
            f"fields are: {', '.join(FIELDS)}"
        )
    values: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name == "extension" and isinstance(value, str):
            value = value.lstrip(".")
        validate_name(value, name, allow_glob=allow_glob)
        rx = _FIELD_RES.get(name)
        if rx is not None and not (allow_glob and has_glob(value)) and not rx.fullmatch(value):
            raise ParameterError(
                f"invalid {name} {value!r}: expected a value matching {rx.pattern} "
                f"(e.g. {'A01' if name == 'well' else '1'})"
            )
        values[name] = value
    if "extension" in values and values["extension"].count(".") > 1:
        raise ParameterError(
            f"invalid extension {values['extension']!r}: expected e.g. 'parquet' or 'csv.gz'"
        )
    lay = _choose_layout(spec, set(values), values)
    used: set[str] = set(lay.fixed) & set(values)
    parts = [values["project"], values["source"]]
    used.update(("project", "source"))
    for seg in lay._segments:
        if seg == "**":
            continue
        text = _render(seg, values, used)
        if text is None:  # pragma: no cover - _choose_layout guarantees the required fields
            raise ParameterError(f"format_key({product!r}): cannot fill {seg!r} from {values}")
        parts.append(text)
    unused = set(values) - used
    if unused:
        raise ParameterError(
            f"format_key({product!r}): field(s) {sorted(unused)} cannot be used with "
            f"{lay.template!r} (an optional part needs the parts before it)"
        )
    key = "/".join(parts)
    if not (allow_glob and has_glob(key)):
        parsed = parse_key(key)
        got = {n: getattr(parsed, n) for n in values}
        if parsed.product != product or got != values:
            diff = {n: got[n] for n in values if got[n] != values[n]}
            raise ParameterError(
                f"format_key({product!r}) fields {values} give the key {key!r}, which reads back "
                f"as {parsed.product} with {diff}: the values are ambiguous (e.g. a name ending "
                "in a compression suffix, or a plate name that looks like a well)"
            )
    return key
