"""Intake faces of the JUMP metadata: one data source per table, a catalog of all of them.

:class:`MetadataTableSource` (container ``dataframe``) reads one table of the pinned release
through :class:`~intake_cpg.metadata.store.JumpMetadata`: ``read()`` is the pandas table,
``to_dask()`` the same table as one partition. :class:`MetadataCatalog` has one entry per table
of the release, named after the file without its extension (``plate``, ``well``, ...), each
described with its file, release, commit and how it is verified.

>>> import os, shutil, tempfile
>>> from intake_cpg.metadata.synthetic import packaged_file
>>> mirror = tempfile.mkdtemp()
>>> with open(os.path.join(mirror, "plate.csv.gz"), "wb") as f:
...     _ = f.write(packaged_file("plate"))
>>> cat = MetadataCatalog(metadata_root=mirror)
>>> "plate" in list(cat) and "well" in list(cat)
True
>>> plates = cat["plate"].read()
>>> plates.query("Metadata_Plate == '1053601756'").Metadata_PlateType.tolist()
['COMPOUND']
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from intake.catalog import Catalog
from intake.catalog.local import LocalCatalogEntry

from ..frame_source import FrameSource
from .pins import Release, read_pin_table
from .store import JumpMetadata

__all__ = ["MetadataTableSource", "MetadataCatalog", "open_store"]


def open_store(
    metadata_root: str | None = None,
    metadata_verify: bool = True,
    metadata_release: str | Release | None = None,
    metadata_cache: str | None = None,
) -> JumpMetadata:
    """A :class:`JumpMetadata` from catalog-style parameters (``""`` means "not given").

    ``metadata_release`` is a :class:`~intake_cpg.metadata.pins.Release` or the path of a pin
    table (a mirror of another release, e.g. the demo gallery's); default: the packaged pins.
    """
    release: Release | None
    if isinstance(metadata_release, Release) or metadata_release is None:
        release = metadata_release
    elif metadata_release == "":
        release = None
    else:
        with open(metadata_release, encoding="utf-8") as f:
            release = read_pin_table(f.read(), str(metadata_release))
    return JumpMetadata(
        metadata_root or None,
        verify=metadata_verify,
        release=release,
        cache_dir=metadata_cache or None,
    )


class MetadataTableSource(FrameSource):
    """One table of the pinned JUMP ``datasets`` release, every column a string."""

    name = "cpg_jump_metadata"

    def __init__(
        self,
        table: str,
        metadata_root: str | None = None,
        metadata_verify: bool = True,
        metadata_release: str | None = None,
        metadata_cache: str | None = None,
        metadata: dict[str, Any] | None = None,
        store: JumpMetadata | None = None,
    ) -> None:
        self.table = table
        self._store = store or open_store(
            metadata_root, metadata_verify, metadata_release, metadata_cache
        )
        pin = self._store.release.pin(table)  # an unknown name fails here, naming the tables
        info = {
            "table": table,
            "file": pin.file,
            "release": self._store.release.name,
            "repository": self._store.release.repository,
            "commit": self._store.release.commit,
            "check": pin.check,
            "expected": pin.expected,
            "url": self._store.source_url(table),
        }
        super().__init__(metadata={**info, **(metadata or {})})

    def _make_frame(self) -> pd.DataFrame:
        return self._store.read(self.table)


class MetadataCatalog(Catalog):
    """Every table of the pinned JUMP ``datasets`` release, one entry each."""

    name = "cpg_jump_metadata_catalog"
    version = "0.1.0"

    def __init__(
        self,
        metadata_root: str | None = None,
        metadata_verify: bool = True,
        metadata_release: str | None = None,
        metadata_cache: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._options = {
            "metadata_root": metadata_root or None,
            "metadata_verify": bool(metadata_verify),
            "metadata_release": metadata_release or None,
            "metadata_cache": metadata_cache or None,
        }
        self._store: JumpMetadata | None = None
        kwargs.setdefault("name", "metadata")
        super().__init__(**kwargs)

    @property
    def store(self) -> JumpMetadata:
        """The store this catalog describes the release with (opened on first use)."""
        if self._store is None:
            self._store = open_store(**self._options)
        return self._store

    def _load(self) -> None:
        # nothing is opened until the entries are asked for (intake instantiates catalogs
        # with their defaults before applying the caller's parameters)
        self._loaded = False

    def _get_entries(self) -> dict[str, Any]:
        if not getattr(self, "_loaded", False):
            self._list_entries()
            self._loaded = True
        return self._entries

    def _list_entries(self) -> None:
        release = self.store.release
        self._entries = {}
        for table in release.tables:
            pin = release.pin(table)
            self._entries[table] = LocalCatalogEntry(
                name=table,
                description=(
                    f"JUMP metadata table {pin.file} of {release.describe()}, "
                    f"verified by {pin.check}"
                ),
                driver=MetadataTableSource,
                args={"table": table, **self._options},
                catalog=self,
            )
