"""The gallery as nested Intake catalogs: root -> project -> source -> product entries.

``intake.open_cpg()`` (driver ``cpg``) opens :class:`GalleryCatalog` on the public bucket,
anonymously. Each level lists only itself, lazily and once (see :mod:`intake_cpg.resolve` for
the cost model); table entries resolve their files only when loaded.

>>> import intake, intake_cpg, tempfile
>>> root = intake_cpg.build_demo(tempfile.mkdtemp()).root
>>> cat = intake.open_cpg(root)
>>> "cpg0016-jump" in list(cat)
True
>>> src = cat["cpg0016.source_4.profiles"](batch="2021_04_26_Batch1", plate="BR00117037")
>>> len(src.to_dask().compute())
384
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd
from intake.catalog import Catalog
from intake.catalog.local import UserParameter

from . import __version__, layout
from .entries import (
    ENTRY_TABLE,
    PLATE_CRITERIA,
    EntryRow,
    ProjectView,
    ResolvedParam,
    SourceView,
    describe_row,
    plate_queries,
    plates_of,
    validate_params,
    validate_plate_query,
)
from .errors import ParameterError, ProductNotFoundError, not_found
from .gallery_source import GallerySource
from .intake_entry import CPGEntry, plain_parameters
from .manifest import parse_manifest, read_manifest
from .resolve import Gallery, choose_assembled_variant, match_names
from .storage import DEFAULT_ROOT, get_storage, redact

log = logging.getLogger(__name__)

__all__ = [
    "AssembledCatalog",
    "GlobParameter",
    "GalleryCatalog",
    "ProjectCatalog",
    "SourceCatalog",
    "open_gallery",
]


#: Entry parameters (validated by :func:`entries.validate_params` before any listing).
_NAME_PARAMETERS = ENTRY_TABLE.parameter_names()


class LazyEntry(CPGEntry):
    """A catalog entry whose parameters and metadata are computed on first use.

    Listing the allowed batches and variants costs requests; a source catalog shows its products
    without paying that until an entry is described, opened or saved.
    """

    def __init__(
        self,
        name: str,
        description: str,
        driver: Any,
        args: dict[str, Any],
        resolve: Callable[[], tuple[list[UserParameter], dict[str, Any]]],
        metadata: dict[str, Any],
        row: EntryRow | None = None,
    ) -> None:
        self._row = row
        self._resolver = resolve
        self._resolved: tuple[list[UserParameter], dict[str, Any]] | None = None
        self._base_metadata = metadata
        self._extra_parameters: list[UserParameter] = []
        super().__init__(name, description, driver, args=args, parameters=[], metadata={})

    def get(self, **user_parameters: Any) -> Any:
        """Open the source; name parameters are checked before any listing is made."""
        names = {k: v for k, v in user_parameters.items() if k in _NAME_PARAMETERS}
        validate_params(names, self._row)
        return super().get(**user_parameters)

    def _create_open_args(self, user_parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # a parameter the gallery does not have here (a source without models, a project
        # without plate types) is left out, with its template, unless it is given
        templated = self._open_args
        self._open_args = self._present_args(templated, set(user_parameters))
        try:
            return super()._create_open_args(user_parameters)
        finally:
            self._open_args = templated

    def _present_args(self, args: dict[str, Any], given: set[str]) -> dict[str, Any]:
        names = {p.name for p in self._user_parameters} | given
        return {k: v for k, v in args.items() if v != "{{ " + k + " }}" or k in names}

    def _resolve(self) -> tuple[list[UserParameter], dict[str, Any]]:
        if self._resolved is None:
            params, md = self._resolver()
            self._resolved = (params, {**self._base_metadata, **md})
        return self._resolved

    @property
    def _user_parameters(self) -> list[UserParameter]:  # type: ignore[override]
        if not hasattr(self, "_resolver"):
            return []
        own = self._resolve()[0]
        names = {p.name for p in own}
        return [p for p in self._extra_parameters if p.name not in names] + own

    @_user_parameters.setter
    def _user_parameters(self, value: list[Any]) -> None:
        # Intake sets this in __init__ and when merging catalog-level parameters; keep the
        # given ones without resolving (the getter merges them with the resolved ones).
        self._extra_parameters = [p for p in value or [] if isinstance(p, UserParameter)]

    @property
    def _metadata(self) -> dict[str, Any]:  # type: ignore[override]
        if not hasattr(self, "_resolver"):
            return {}
        return self._resolve()[1]

    @_metadata.setter
    def _metadata(self, value: dict[str, Any]) -> None:
        pass

    def frozen(self) -> dict[str, Any]:
        """The entry as plain YAML-able data (for ``Catalog.save``)."""
        params, md = self._resolve()
        out = super().frozen()
        out["args"] = self._present_args(out["args"], set())
        return {**out, "parameters": plain_parameters(params), "metadata": md}


class GlobParameter(UserParameter):
    """A name parameter that takes one of its allowed names or a glob matching some of them.

    >>> p = GlobParameter(name="batch", type="str", default="*", allowed=["2021_04_26_Batch1", "*"])
    >>> p.validate("2021_*")
    '2021_*'
    """

    def validate(self, value: Any) -> Any:
        if isinstance(value, str) and self.allowed and match_names(value, map(str, self.allowed)):
            return value
        return super().validate(value)


class NamesParameter(GlobParameter):
    """A :class:`GlobParameter` that also takes a list of names and globs (each matching some
    allowed name), as the project-level entries' ``source``, ``batch``, ``plate`` do.

    >>> p = NamesParameter(name="source", type="str", default="*",
    ...                    allowed=["source_2", "source_4", "*"])
    >>> p.validate(["source_4", "source_?"])
    ['source_4', 'source_?']
    """

    def validate(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return [super(NamesParameter, self).validate(v) for v in value]
        return super().validate(value)


def _user_parameter(p: ResolvedParam) -> UserParameter:
    """An Intake parameter from a row's parameter (keyword arguments, so ``save`` keeps types)."""
    kwargs: dict[str, Any] = {
        "name": p.name,
        "description": p.description,
        "type": p.kind,
        "default": p.default,
    }
    if p.allowed is not None:
        kwargs["allowed"] = list(p.allowed)
    cls: type[UserParameter] = UserParameter
    if p.glob and p.allowed is not None:
        cls = NamesParameter if p.many else GlobParameter
    return cls(**kwargs)


def _lazy_entry(
    row: EntryRow,
    name: str,
    args: dict[str, Any],
    resolve: Callable[[], tuple[list[UserParameter], dict[str, Any]]],
    metadata: dict[str, Any],
) -> LazyEntry:
    """The entry of a table row: its parameters templated into the driver's arguments."""
    args = {**args, **{p.name: "{{ " + p.name + " }}" for p in row.params}}
    return LazyEntry(
        name, row.description, _driver(row), args=args, resolve=resolve, metadata=metadata, row=row
    )


def _driver(row: EntryRow) -> Any:
    """The Intake class of a row's entries: the one the row names, else the level's own."""
    if row.driver:
        module, _, name = row.driver.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return AssembledCatalog if row.output == "catalog" else GallerySource


class _Level(Catalog):
    """What every level of the gallery shares: storage, lookup, ``.df``, ``search``, freezing."""

    version = __version__
    kind = "level"
    child_kind = "entry"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        storage_options: dict[str, Any] | None = None,
        *,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        manifests: list[str] | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        metadata_root: str | None = None,
        metadata_verify: bool = True,
        metadata_release: str | None = None,
        **kwargs: Any,
    ) -> None:
        cache_dir = cache_dir or None  # YAML catalogs pass "" for "no disk cache"
        storage_options = dict(storage_options or {}) or None
        self.urlpath = urlpath
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir
        )
        self.gallery = Gallery(self.storage)
        self.manifests = list(manifests or [])
        self._child_args = {
            "urlpath": urlpath,
            "storage_options": storage_options,
            "cache_dir": cache_dir,
            "listing_ttl": listing_ttl,
        }
        # where annotate= finds the JUMP metadata (intake_cpg.metadata); passed on only when set
        jump = {
            "metadata_root": metadata_root or None,
            "metadata_verify": bool(metadata_verify),
            "metadata_release": metadata_release or None,
        }
        if jump != {"metadata_root": None, "metadata_verify": True, "metadata_release": None}:
            self._child_args.update(jump)
        self._source_args = dict(self._child_args)  # what a GallerySource takes
        if self.manifests:
            self._child_args["manifests"] = self.manifests
        md = {"root": self.storage.root, "level": self.kind, **(metadata or {})}
        super().__init__(name=name or self._default_name(), metadata=md, **kwargs)

    def _default_name(self) -> str:
        return self.kind

    # -- lazy listing: nothing is listed until the entries are needed ------------------------
    def _load(self) -> None:
        # Intake calls this from __init__, on reload (every ``ttl`` seconds) and on
        # unpickling; listing waits until the entries are asked for, so that
        # ``cat.gallery(root=...)`` in a YAML catalog never lists the default root first.
        self._loaded = False

    def _get_entries(self) -> dict[str, Any]:
        self.reload()
        if not getattr(self, "_loaded", False):
            self._entries = self._list_entries()
            self._loaded = True
        return self._entries

    def _list_entries(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- pickling: carry the listings so that a worker does not list again -------------------
    def __getstate__(self) -> Any:
        state = super().__getstate__()
        state["listings"] = self.storage.memory_listings()
        return state

    def __setstate__(self, state: Any) -> None:
        listings = state.pop("listings", {})
        kw = state["kwargs"]
        st = get_storage(
            kw.get("urlpath", DEFAULT_ROOT),
            kw.get("storage_options"),
            listing_ttl=kw.get("listing_ttl", 3600.0),
            cache_dir=kw.get("cache_dir"),
        )
        st.memory_listings(adopt=listings)
        super().__setstate__(state)

    # -- lookup -----------------------------------------------------------------------------
    def _aliases(self) -> dict[str, str]:
        return {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            out: Any = self
            for part in key:
                out = out[part]
            return out
        if not isinstance(key, str):
            raise ProductNotFoundError(f"entry names are strings, got {key!r}")
        try:  # a name that could leave the root is refused before any listing
            layout.validate_name(key, "entry name")
        except ParameterError as exc:
            raise ProductNotFoundError(str(exc), name=key) from None
        entries = self._get_entries()
        if key in entries:
            return super().__getitem__(key)
        alias = self._aliases().get(key)
        if alias is not None:
            return super().__getitem__(alias)
        if "." in key:
            parts = key.split(".")
            for i in range(1, len(parts)):
                head, rest = ".".join(parts[:i]), ".".join(parts[i:])
                if head in entries or head in self._aliases():
                    return self[head][rest]
        raise not_found(self.child_kind, key, list(entries), self.name or self.kind)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_") or item in ("storage", "gallery", "urlpath"):
            raise AttributeError(item)
        return super().__getattr__(item)

    def describe(self) -> dict[str, Any]:
        """What this level is (no listing): its kind, root, options (secrets hidden), metadata."""
        return {
            "name": self.name,
            "container": "catalog",
            "level": self.kind,
            "root": self.storage.root,
            "storage_options": redact(self.storage.storage_options),
            "metadata": self.metadata,
        }

    # -- tables and search ------------------------------------------------------------------
    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, entry in self._get_entries().items():
            md = entry._base_metadata if isinstance(entry, LazyEntry) else entry._metadata
            rows.append(
                {
                    "name": name,
                    "kind": self.child_kind,
                    **{k: v for k, v in md.items() if not isinstance(v, (list, dict))},
                }
            )
        return rows

    @property
    def df(self) -> pd.DataFrame:
        """The entries of this level as a table (no listing beyond this level)."""
        return pd.DataFrame(self._rows())

    def search(self, text: str | None = None, depth: int = 1, **fields: str) -> Catalog:
        """Entries of this level whose name contains ``text`` and whose fields match ``fields``.

        Only this level is searched (``depth`` is accepted for Intake compatibility and must be
        1): Intake's recursive search would list the whole bucket.
        """
        if depth != 1:
            raise ParameterError(
                "the gallery catalog searches one level at a time (depth=1); "
                "open a deeper level and search there"
            )
        keep = {}
        for row, (name, entry) in zip(self._rows(), self._get_entries().items(), strict=True):
            if text and text.lower() not in name.lower():
                continue
            if any(str(row.get(k)) != str(v) for k, v in fields.items()):
                continue
            keep[name] = entry
        cat = Catalog.from_dict(keep, name=f"{self.name}_search", metadata=dict(self.metadata))
        return cat

    def walk(self, sofar: Any = None, prefix: Any = None, depth: int = 1) -> dict[str, Any]:
        """Entries of this level (``depth`` > 1 descends and lists, level by level)."""
        self._get_entries()
        return super().walk(sofar=sofar, prefix=prefix, depth=depth)

    def to_intake2(self, output: str = "dask") -> Any:
        """This level as an Intake 2 catalog (``intake.readers.entry.Catalog``).

        See :func:`intake_cpg.intake2.to_catalog`; ``output`` is the tables' reader output
        (``"pandas"``, ``"dask"``, ``"polars"``, ``"polars_lazy"`` or ``"arrow"``).
        """
        from .intake2 import to_catalog

        return to_catalog(self, output)

    def refresh(self) -> None:
        """Forget cached listings and list this level again."""
        self.storage.refresh()
        self.force_reload()

    # -- freezing ---------------------------------------------------------------------------
    def save(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        """Write this level as a YAML catalog (:meth:`serialize`) to ``url``, whole or not at all.

        The YAML is made first (which lists what it must); only then is it written, to a
        temporary file renamed over ``url``: a failed listing, a full disk or an interrupt
        leaves the old file as it was. (Intake's own ``save`` empties the file first.)
        """
        from .storage import write_atomic

        write_atomic(url, self.serialize().encode("utf-8"), storage_options)

    def serialize(self) -> str:
        """YAML of this level with every entry's parameters resolved (``save`` writes it).

        Secrets in ``storage_options`` are never written.
        """
        import yaml

        sources: dict[str, Any] = {}
        for name, entry in self._get_entries().items():
            kw = entry.frozen()
            args = kw["args"]
            if "urlpath" in args:  # absolute, so the YAML opens from any folder
                args["urlpath"] = self.storage.root
            if args.get("storage_options"):
                args["storage_options"] = {
                    k: v for k, v in redact(args["storage_options"]).items() if v != "***"
                }
            sources[name] = kw
        doc = {
            "metadata": {**self.metadata, "frozen_from": self.storage.root},
            "name": self.name,
            "description": self.description,
            "sources": sources,
        }
        return yaml.safe_dump(doc, sort_keys=False)


class GalleryCatalog(_Level):
    """A whole gallery: one entry per project (``cpgNNNN-...`` folder at the root).

    Parameters
    ----------
    urlpath:
        Gallery root: ``s3://cellpainting-gallery`` (default, read anonymously), a local mirror,
        another bucket, or an S3-compatible endpoint given in ``storage_options``.
    storage_options:
        fsspec options, e.g. ``{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}``.
    cache_dir:
        Keep listings on disk there, shared between processes (``None``: memory only).
    listing_ttl:
        Seconds a listing stays valid.

    Projects can also be reached by accession (``cat["cpg0016"]``) and by dotted path
    (``cat["cpg0016-jump.source_4.profiles"]``).
    """

    name = "cpg"
    kind = "gallery"
    child_kind = "project"

    def _default_name(self) -> str:
        return "cellpainting-gallery"

    def _aliases(self) -> dict[str, str]:
        return Gallery.aliases(self._get_entries())

    def _list_entries(self) -> dict[str, Any]:
        return {
            p: CPGEntry(
                p,
                f"project {p}",
                ProjectCatalog,
                args={**self._child_args, "project": p},
                metadata={"project": p, "accession": p[:7]},
            )
            for p in self.gallery.projects()
        }


class ProjectCatalog(_Level):
    """One project: one entry per source (``source_4``, ``broad``, ``source_all``, ...), then
    the project-level rows of the entry table that apply to it (``profiles`` and ``plates``
    spanning the sources; ``metadata`` for the JUMP projects).

    :meth:`search` with plate criteria (``source``, ``batch``, ``plate``, ``plate_type``) gives
    the project narrowed to the plates that match, and :meth:`unique` summarises the plates
    table, as intake-esm's catalogs do with their asset table. A source named like a
    project-level entry keeps its name (the project-level entry is then not listed).
    """

    name = "cpg_project"
    kind = "project"
    child_kind = "source"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        storage_options: dict[str, Any] | None = None,
        *,
        project: str,
        plate_query: Any = None,
        **kwargs: Any,
    ) -> None:
        layout.validate_name(project, "project")
        self.project = project
        self.plate_query = plate_queries(plate_query)
        self._view: ProjectView | None = None
        super().__init__(urlpath, storage_options, **kwargs)
        self.metadata["project"] = project
        if self.plate_query:
            self.metadata["plate_query"] = self.plate_query

    def _default_name(self) -> str:
        return self.project

    def _load(self) -> None:
        self._view = None  # a reload learns the plates again
        super()._load()

    def view(self) -> ProjectView:
        """What the project-level rows see (the plates table is learnt once per view)."""
        if self._view is None:
            from .project import project_view

            self._view = project_view(
                self.gallery, self.project, self._source_args, query=self.plate_query
            )
        return self._view

    def _list_entries(self) -> dict[str, Any]:
        entries: dict[str, Any] = {
            s: CPGEntry(
                s,
                f"{self.project}/{s}",
                SourceCatalog,
                args={**self._child_args, "project": self.project, "source": s},
                metadata={"project": self.project, "source": s},
            )
            for s in self.gallery.sources(self.project)
        }
        for row in ENTRY_TABLE.at_level("project"):
            if not row.applies_to(self.view()):
                continue
            if row.entry_name in entries:
                log.warning(
                    "%s: the source %r hides the project-level entry of the same name",
                    self.project,
                    row.entry_name,
                )
                continue
            entries[row.entry_name] = self._project_entry(row)
        return entries

    def _project_entry(self, row: EntryRow) -> Any:
        args = {**self._source_args, "project": self.project, "product": row.name}
        if self.plate_query:
            args["plate_query"] = self.plate_query
        md = {"project": self.project, "product": row.name, "kind": "entry"}
        if row.output == "catalog":
            return CPGEntry(row.entry_name, row.description, _driver(row), args=args, metadata=md)
        return _lazy_entry(row, row.entry_name, args, self._resolver(row), md)

    def _resolver(self, row: EntryRow) -> Callable[[], tuple[list[UserParameter], dict[str, Any]]]:
        def resolve() -> tuple[list[UserParameter], dict[str, Any]]:
            params, md = describe_row(row, self.view())
            return [_user_parameter(p) for p in params], md

        return resolve

    # -- the plates table, intake-esm style ----------------------------------------------------
    def plates(self) -> pd.DataFrame:
        """The project's plates table (one row per plate; see :mod:`intake_cpg.plates`)."""
        return plates_of(self.view()).copy()

    def unique(self) -> dict[str, list[Any]]:
        """The distinct values of each plates-table column (as intake-esm's ``unique``)."""
        from .project import unique

        return unique(plates_of(self.view()))

    def search(self, text: str | None = None, depth: int = 1, **query: Any) -> Catalog:
        """With plate criteria (``source``, ``batch``, ``plate``, ``plate_type``: names, globs
        or lists), this project narrowed to the matching plates: its ``profiles`` load them,
        its ``plates`` table lists them, searches chain. Otherwise, entries of this level by
        name and fields, as at every level.
        """
        criteria = {k: v for k, v in query.items() if k in PLATE_CRITERIA}
        if not criteria:
            return super().search(text, depth, **query)
        if text is not None or len(criteria) != len(query):
            raise ParameterError(
                f"search() on a project takes either plate criteria ({', '.join(PLATE_CRITERIA)}) "
                f"or an entry name and fields, not both; got text={text!r} and "
                f"{', '.join(sorted(query))}"
            )
        validate_plate_query(criteria)
        found = ProjectCatalog(
            **self._child_args,
            project=self.project,
            plate_query=[*self.plate_query, criteria],  # chained searches narrow in turn
            name=f"{self.name}_search",
        )
        plates_of(found.view())  # criteria that match nothing fail here, naming what exists
        return found


class _SourceLevel(_Level):
    """A level below one source of one project."""

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        storage_options: dict[str, Any] | None = None,
        *,
        project: str,
        source: str,
        **kwargs: Any,
    ) -> None:
        layout.validate_name(project, "project")
        layout.validate_name(source, "source")
        self.project, self.source = project, source
        super().__init__(urlpath, storage_options, **kwargs)
        self.metadata.update(project=project, source=source)


class SourceCatalog(_SourceLevel):
    """One source of a project: one entry per product present (``profiles``, ``load_data``, ...)."""

    name = "cpg_source"
    kind = "source"
    child_kind = "product"

    def _default_name(self) -> str:
        return f"{self.project}.{self.source}"

    def _list_entries(self) -> dict[str, Any]:
        rows = ENTRY_TABLE.at_level("source")
        present = self.gallery.present(self.project, self.source, {r.product for r in rows})
        entries: dict[str, Any] = {}
        for row in rows:
            if row.product not in present:
                continue
            spec = layout.PRODUCT_SPECS[row.product]
            md = {
                "project": self.project,
                "source": self.source,
                "product": row.name,
                "template": spec.template,
                "url_pattern": self.storage.url(
                    f"{self.project}/{self.source}/{spec.layouts[0].template}"
                ),
            }
            ids = {"project": self.project, "source": self.source}
            if row.output == "catalog":
                entries[row.name] = CPGEntry(
                    row.name,
                    row.description,
                    AssembledCatalog,
                    args={**self._child_args, **ids},
                    metadata=md,
                )
                continue
            args = {**self._source_args, **ids, "product": row.name}
            entries[row.name] = _lazy_entry(row, row.name, args, self._resolver(row), md)
        return entries

    def _resolver(self, row: EntryRow) -> Callable[[], tuple[list[UserParameter], dict[str, Any]]]:
        def resolve() -> tuple[list[UserParameter], dict[str, Any]]:
            view = SourceView(self.gallery, self.project, self.source)
            params, md = describe_row(row, view)
            return [_user_parameter(p) for p in params], md

        return resolve


#: The source-level row whose entry is a catalog of child entries (assembled profiles).
_CATALOG_ROW = ENTRY_TABLE.only("catalog", "source")


class AssembledCatalog(_SourceLevel):
    """``profiles_assembled`` of one source: one entry per subset, with ``version`` and ``variant``.

    ``version`` defaults to the newest (``v1.0`` < ``v1.0a`` < ``v1.0b`` < ``v1.1``);
    ``variant`` defaults to the one a known manifest points to (the JUMP manifest is bundled),
    else to the most processed pipeline (most ``_``-separated steps).
    """

    name = "cpg_assembled"
    kind = _CATALOG_ROW.name
    child_kind = _CATALOG_ROW.params[0].name

    def _default_name(self) -> str:
        return f"{self.project}.{self.source}.{self.kind}"

    def _known_records(self) -> dict[str, Any]:
        """Manifest records by bucket-relative key: the bundled JUMP manifest, then ``manifests``."""
        records = dict(_bundled_records())
        for urlpath in self.manifests:
            same_store = urlpath.startswith(self.storage.protocol + "://")
            options = self.storage.storage_options if same_store else None
            records.update({r.key: r for r in read_manifest(urlpath, options)})
        return records

    def _list_entries(self) -> dict[str, Any]:
        row = _CATALOG_ROW
        view = SourceView(self.gallery, self.project, self.source)
        tree = self.gallery.assembled(self.project, self.source, row.product)
        records = self._known_records()
        entries: dict[str, Any] = {}
        for child in row.params[0].resolve(view, {}).allowed or ():
            bound = {self.child_kind: child}
            params, _ = describe_row(row, view, bound)
            by_name = {p.name: p for p in params}
            files = {v: ref.key for v, ref in tree[child][by_name["version"].default].items()}
            by_variant = {v: records.get(k) for v, k in files.items()}
            pointed = [v for v, r in by_variant.items() if r is not None]
            default_variant = choose_assembled_variant(
                files, pointed[0] if len(pointed) == 1 else _main_record(by_variant)
            )
            rec = records.get(files.get(default_variant, ""))
            md: dict[str, Any] = {
                "project": self.project,
                "source": self.source,
                "product": row.name,
                self.child_kind: child,
                "versions": list(by_name["version"].allowed or ()),
                "variants": list(by_name["variant"].allowed or ()),
                "template": layout.PRODUCT_SPECS[row.product].template,
                "url": self.storage.url(files[default_variant]),
            }
            if rec is not None:
                md["provenance"] = {k: v for k, v in rec.to_metadata().items() if v is not None}
            params = [
                replace(p, default=default_variant) if p.name == "variant" else p for p in params
            ]
            entries[child] = CPGEntry(
                child,
                f"{self.project}/{self.source} assembled profiles: {child}",
                GallerySource,
                args={
                    **self._source_args,
                    "project": self.project,
                    "source": self.source,
                    "product": row.name,
                    **bound,
                    **{p.name: "{{ " + p.name + " }}" for p in params},
                    "etag": rec.etag if rec is not None else None,
                },
                parameters=[_user_parameter(p) for p in params],
                metadata=md,
            )
        return entries


@functools.lru_cache(maxsize=1)
def _bundled_records() -> dict[str, Any]:
    """Records of the JUMP manifest shipped in ``intake_cpg/data`` (by bucket-relative key)."""
    name = "jump_profile_index_v0.13.json"
    text = importlib.resources.files("intake_cpg.data").joinpath(name).read_text(encoding="utf-8")
    return {r.key: r for r in parse_manifest(text, name)}


def _main_record(by_variant: dict[str, Any]) -> str | None:
    """Among variants that manifests name, the one a non-``_interpretable`` subset names."""
    for variant, rec in sorted(by_variant.items()):
        if rec is not None and not rec.subset.endswith("_interpretable"):
            return variant
    return None


def open_gallery(
    urlpath: str = DEFAULT_ROOT, storage_options: dict[str, Any] | None = None, **kwargs: Any
) -> GalleryCatalog:
    """Open a gallery root as a catalog (same as ``intake.open_cpg``)."""
    return GalleryCatalog(urlpath, storage_options, **kwargs)
