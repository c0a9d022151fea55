"""A manifest as an Intake catalog: one entry per record, named by its subset.

This module is a thin adapter: parsing lives in :mod:`intake_cpg.manifest`, ETag checks in
:mod:`intake_cpg.etag`, loading in :class:`intake_cpg.sources.ProfilesSource`.

``intake.open_cpg_manifest(urlpath, root=None, verify=False, storage_options=None)``
opens a manifest (local path, ``s3://`` or ``https://`` URL); with ``root`` every entry loads
the same key from a mirror instead of the recorded bucket. With ``verify=True`` (also a user
parameter of each entry) an entry checks the object's ETag before loading and raises
:class:`~intake_cpg.errors.EtagMismatchError` when it changed.

>>> import os, tempfile
>>> fn = os.path.join(tempfile.mkdtemp(), "index.json")
>>> _ = open(fn, "w").write('[{"subset": "orf", "url": "https://cellpainting-gallery.s3.amazonaws.com/'
...     'cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/x.parquet"}]')
>>> cat = ManifestCatalog(fn, root="/mirror")
>>> list(cat)
['orf']
>>> cat["orf"].metadata["version"], cat["orf"].metadata["resolved_url"]
('v1.0a', '/mirror/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/x.parquet')
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from intake.catalog import Catalog
from intake.catalog.local import UserParameter

from .errors import GalleryPathError, ParameterError, not_found
from .etag import verify_files
from .intake_entry import CPGEntry, silence_shell_warning
from .manifest import ManifestRecord, read_manifest
from .sources import ProfilesSource
from .storage import effective_options, protocol_of

__all__ = ["ManifestCatalog", "ManifestProfilesSource"]

log = logging.getLogger(__name__)

# YAML catalogs (catalogs/jump.yaml) build intake's own entries, which warn for every string
# parameter (intake issue 887); importing their driver module filters just that warning.
silence_shell_warning()


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise ParameterError(f"{name} must be True or False, got {value!r}")


class ManifestProfilesSource(ProfilesSource):
    """A :class:`~intake_cpg.sources.ProfilesSource` for one manifest record.

    Give either ``urlpath`` (and the recorded ``etag``), or ``manifest`` and ``subset`` to
    look the record up (optionally under a mirror ``root``): the latter is how YAML
    catalogs such as ``catalogs/jump.yaml`` point at a manifest file. With ``verify`` the
    object's ETag is checked (one HEAD request) before the first load; a mismatch raises
    :class:`~intake_cpg.errors.EtagMismatchError`.
    """

    name = "cpg_manifest_profiles"

    def __init__(
        self,
        urlpath: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        etag: str | None = None,
        verify: bool = False,
        subset: str | None = None,
        manifest: str | None = None,
        root: str | None = None,
        refused: str | None = None,
        **kwargs: Any,
    ) -> None:
        silence_shell_warning()  # keep the filter in place for the next YAML entry
        if refused:  # the record's key would leave the root: nothing is read
            raise GalleryPathError(f"subset {subset!r}: {refused}")
        meta = dict(metadata or {})
        if manifest:
            record = _find(read_manifest(manifest, storage_options), subset, manifest)
            urlpath = record.resolve(root or None)
            etag = record.etag
            meta = {**record.to_metadata(), "resolved_url": urlpath, **meta}
        if not urlpath:
            raise ParameterError(
                "ManifestProfilesSource needs urlpath=<file URL> or manifest=<path> and subset=<name>"
            )
        self._etag = etag or None
        self._verify = _as_bool(verify, "verify")
        self._subset = subset
        self._etag_checked = False
        super().__init__(
            urlpath,
            storage_options=effective_options(protocol_of(urlpath), storage_options),
            metadata=meta,
            **kwargs,
        )
        self._record_url = urlpath
        self._record_options = storage_options

    def check_etag(self) -> str | None:
        """Compare the object's current ETag with the recorded one (one HEAD request).

        Returns the ETag found; raises :class:`~intake_cpg.errors.EtagMismatchError` on a
        mismatch. Without a recorded ETag nothing is checked and None is returned.
        """
        parent, _, key = self._record_url.rstrip("/").rpartition("/")
        found = verify_files(
            parent or "/",
            [key],
            self._etag,
            subset=self._subset,
            storage_options=self._record_options,
        )
        self._etag_checked = found is not None
        if found is not None:  # every later read, on any worker, is pinned to this ETag
            self._refs = [dataclasses.replace(r, etag=found) for r in self._expand()]
            self.pin_etags = True
        return found

    def _load_metadata(self) -> None:
        # every load path of ProfilesSource (discover, to_dask, read, partitions) starts here
        if self._verify and not self._etag_checked:
            self.check_etag()
        super()._load_metadata()


def _find(records: tuple[ManifestRecord, ...], subset: str | None, manifest: str) -> ManifestRecord:
    names = [r.subset for r in records]
    for rec in records:
        if rec.subset == subset:
            return rec
    raise not_found("subset", str(subset), names, where=f"manifest {manifest}")


class ManifestCatalog(Catalog):
    """One entry per manifest record, named by its subset.

    Parameters
    ----------
    urlpath:
        The manifest: local path, ``s3://`` URL or ``https://<bucket>.s3.amazonaws.com/...``
        (read through S3, anonymously unless ``storage_options`` bring credentials).
    root:
        Load every record's key from this root instead of its bucket (a local folder,
        ``s3://other-bucket/prefix``, a loopback endpoint given by ``storage_options``).
    verify:
        Default of each entry's ``verify`` parameter: check the ETag before loading.
    storage_options:
        fsspec options for the data (and for the manifest when it is remote).
    """

    name = "cpg_manifest"
    version = "0.1.0"
    container = "catalog"
    partition_access = None

    def __init__(
        self,
        urlpath: str,
        root: str | None = None,
        verify: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.urlpath = urlpath
        self.root = root or None
        self.verify = _as_bool(verify, "verify")
        self._data_storage_options = dict(storage_options or {}) or None
        self.records: tuple[ManifestRecord, ...] = ()
        stem = os.path.basename(str(urlpath).rstrip("/")).split(".", 1)[0]
        kwargs.setdefault("name", stem or "manifest")
        super().__init__(storage_options=self._data_storage_options, **kwargs)

    def _entry(self, rec: ManifestRecord) -> CPGEntry:
        refused = None
        try:
            url: str | None = rec.resolve(self.root)
        except GalleryPathError as exc:  # the entry is listed; opening it raises this
            url, refused = None, str(exc)
        verify = UserParameter(
            name="verify",
            description="check the object's ETag (HEAD) before loading",
            type="bool",
            default=self.verify,
        )
        metadata = {**rec.to_metadata(), "resolved_url": url, "manifest": self.urlpath}
        return CPGEntry(
            name=rec.subset,
            description=f"{rec.subset} from manifest {self.urlpath}",
            driver=ManifestProfilesSource,
            direct_access="allow",
            args={
                "urlpath": url,
                "storage_options": self._data_storage_options,
                "etag": rec.etag,
                "subset": rec.subset,
                "verify": "{{ verify }}",
                **({"refused": refused} if refused else {}),
            },
            parameters=[verify],
            metadata=metadata,
            catalog=self,
        )

    def _load(self) -> None:
        self.records = read_manifest(self.urlpath, self._data_storage_options)
        self._entries = {rec.subset: self._entry(rec) for rec in self.records}
        log.debug("manifest catalog %s: %d entries", self.name, len(self._entries))

    def __getitem__(self, key: str) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            if isinstance(key, str) and key not in self._entries:
                raise not_found(
                    "subset", key, list(self._entries), where=f"manifest {self.urlpath}"
                ) from None
            raise

    def verify_all(self, deep: bool = False, max_workers: int = 8) -> Any:
        """Check every record (see :func:`intake_cpg.etag.verify_manifest`); a DataFrame."""
        from .etag import verify_manifest

        return verify_manifest(
            self.records,
            root=self.root,
            storage_options=self._data_storage_options,
            deep=deep,
            max_workers=max_workers,
        )
