"""Fetching the pinned JUMP metadata files: once over HTTPS into a local cache, verified, offline after.

:class:`JumpMetadata` gives each table of the pinned release as a verified local file
(:meth:`~JumpMetadata.path`) or a dataframe (:meth:`~JumpMetadata.read`):

* **Origin** (default): the raw-file URL of the pinned commit
  (``https://raw.githubusercontent.com/jump-cellpainting/datasets/<commit>/metadata/<file>``),
  downloaded with :mod:`pooch` (atomic, with the pinned sha256 where known) into
  ``<cache_dir>/<repository>/<commit>/<file>``. The cache key is the commit and file name; the
  content is proven by its digest, so a verified copy is reused offline.
* **Mirror** (``root=``): a local folder or an ``http(s)://`` URL laid out like the repository's
  ``metadata/`` folder. A local file is verified where it lies (nothing is copied); a URL is
  downloaded and verified like the origin and cached under the same commit key (its bytes are
  the pinned bytes, or it is refused).
* ``verify=False``: contents that differ from the pins are accepted with a logged WARNING that
  names the file, the pinned and the actual digest. Such files are never cached (they are read
  in place, or downloaded afresh on each open of a store), so they cannot pass for the pinned
  release later.

**When files are checked.** Every :meth:`~JumpMetadata.path` call hashes the file (sha256, or
the git blob id where the release records no sha256), also for a cached copy: a tampered or
truncated cached file is caught on use, dropped with a WARNING and fetched again (or, offline,
refused with :class:`~intake_cpg.errors.MetadataUnavailableError`). Hashing is a single read at
disk speed, well under the cost of parsing the same CSV (see ``docs/howto/jump-metadata.md``);
:meth:`~JumpMetadata.read` keeps the parsed table per store, so one store hashes each file once.

Errors name the file, the release and what to do: :class:`~intake_cpg.errors.ChecksumError`
for content that does not match, :class:`~intake_cpg.errors.MetadataUnavailableError` for a
missing file or a failed download.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ChecksumError, MetadataUnavailableError, ParameterError
from .pins import Pin, Release, default_release, file_digests
from .tables import decode_table

log = logging.getLogger(__name__)

__all__ = ["JumpMetadata", "CACHE_ENV", "default_cache_dir"]

#: Environment variable naming the metadata cache folder (default: the OS cache folder).
CACHE_ENV = "INTAKE_CPG_METADATA_CACHE"
_DOWNLOAD_TIMEOUT = 60.0


def default_cache_dir() -> Path:
    """``$INTAKE_CPG_METADATA_CACHE``, else the OS user cache folder ``intake-cpg/jump-metadata``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("intake-cpg")) / "jump-metadata"


def _is_url(root: str) -> bool:
    return root.startswith(("http://", "https://"))


def _mismatch(pin: Pin, path: Path) -> tuple[bool, str]:
    """``(matches, actual digest)`` of the local file ``path`` against ``pin``."""
    sha256, blob, _ = file_digests(path)
    actual = f"sha256:{sha256}" if pin.sha256 else f"git-blob:{blob}"
    return actual == pin.expected, actual


class JumpMetadata:
    """The tables of one pinned ``jump-cellpainting/datasets`` release, fetched once and verified.

    Args:
        root: ``None`` (fetch from the pinned commit), or a folder / ``http(s)://`` URL laid out
            like the repository's ``metadata/`` folder (a mirror).
        verify: ``False`` accepts contents that differ from the pinned checksums (WARNING).
        release: the pinned release (default: the one packaged with intake-cpg).
        cache_dir: where downloaded files are kept (default :func:`default_cache_dir`).
        timeout: seconds per download.

    >>> import os, shutil, tempfile
    >>> from importlib import resources
    >>> mirror = tempfile.mkdtemp()
    >>> data = resources.files("intake_cpg").joinpath("data", "cpg0016_plate.csv.gz")
    >>> _ = shutil.copyfile(data, os.path.join(mirror, "plate.csv.gz"))  # the real v0.13 file
    >>> plates = JumpMetadata(mirror).read("plate")
    >>> len(plates), str(plates.Metadata_Plate.dtype)
    (2525, 'string')
    >>> JumpMetadata(mirror).path("well")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    intake_cpg.errors.MetadataUnavailableError: metadata file well.csv.gz of jump-cellpainting/datasets v0.13 ... is missing from ...
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        verify: bool = True,
        release: Release | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = _DOWNLOAD_TIMEOUT,
    ) -> None:
        if root is not None and not isinstance(root, str | os.PathLike):
            raise ParameterError(
                f"metadata_root={root!r} is not valid: expected a folder or an http(s):// URL "
                "laid out like the datasets repository's metadata/ folder"
            )
        text = os.fspath(root) if root is not None else None
        if text is not None and "://" in text and not _is_url(text):
            if not text.startswith("file://"):
                raise ParameterError(
                    f"metadata_root={text!r} is not valid: expected a local folder or an "
                    "http(s):// URL (other protocols: mirror the files to a folder first)"
                )
            text = text[len("file://") :]
        if text is not None and not _is_url(text):
            text = os.path.abspath(os.path.expanduser(text))
            if not os.path.isdir(text):
                raise MetadataUnavailableError(
                    f"metadata_root={text!r} is not a folder; expected a folder laid out like "
                    "the datasets repository's metadata/ folder (plate.csv.gz, well.csv.gz, ...)"
                )
        self.root = text
        self.verify = bool(verify)
        self.release = release or default_release()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.timeout = float(timeout)
        self._frames: dict[str, pd.DataFrame] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.root or self.release.raw_base
        return f"JumpMetadata({self.release.name} @ {self.release.commit[:7]}, from {where})"

    def __getstate__(self) -> dict[str, Any]:  # parsed frames and the lock stay behind
        state = self.__dict__.copy()
        state["_frames"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def tables(self) -> tuple[str, ...]:
        """The table names of the release."""
        return self.release.tables

    # -- locations -------------------------------------------------------------------------
    def _what(self, pin: Pin) -> str:
        return f"metadata file {pin.file} of {self.release.describe()}"

    def source_url(self, table: str) -> str:
        """Where ``table`` is read from: the mirror's file, or the pinned raw-file URL."""
        pin = self.release.pin(table)
        if self.root is None:
            return self.release.raw_url(table)
        if _is_url(self.root):
            return f"{self.root.rstrip('/')}/{pin.file}"
        return os.path.join(self.root, pin.file)

    def cached_path(self, table: str) -> Path:
        """Where the verified copy of ``table`` is cached (it may not exist yet)."""
        pin = self.release.pin(table)
        return self.cache_dir / self.release.repository / self.release.commit / pin.file

    # -- verified files --------------------------------------------------------------------
    def path(self, table: str) -> Path:
        """A local file holding ``table``'s bytes, verified against the pin now.

        Raises:
            ChecksumError: the file (mirror or download) does not match the pinned checksum.
            MetadataUnavailableError: it is missing, or cannot be downloaded and no verified
                copy is cached.
        """
        pin = self.release.pin(table)
        if not self.verify:
            return self._unverified(pin, table)
        if self.root is not None and not _is_url(self.root):
            local = Path(self.source_url(table))
            if not local.is_file():
                raise self._missing(pin, str(local))
            self._check(pin, local, str(local))
            return local
        cached = self.cached_path(table)
        if cached.is_file():
            ok, actual = _mismatch(pin, cached)
            if ok:
                return cached
            log.warning(
                "cached %s at %s does not match its pin (expected %s, found %s): it was "
                "changed or damaged after it was verified; fetching it again",
                self._what(pin),
                cached,
                pin.expected,
                actual,
            )
            cached.unlink(missing_ok=True)
        return self._download_verified(pin, table, cached)

    def _check(self, pin: Pin, path: Path, where: str) -> None:
        ok, actual = _mismatch(pin, path)
        if not ok:
            raise ChecksumError(
                f"{self._what(pin)} at {where} does not match the release: expected "
                f"{pin.expected}, found {actual}. Point metadata_root at an unmodified mirror of "
                f"{self.release.name} (or leave it unset to fetch the pinned files), or pass "
                "metadata_verify=False to use these contents anyway."
            )

    def _missing(self, pin: Pin, where: str, exc: BaseException | None = None) -> Exception:
        cause = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return MetadataUnavailableError(
            f"{self._what(pin)} is missing from {where}{cause}. "
            + (
                f"Add {pin.file} to the mirror (the pinned file is {self.release.raw_url(pin.table)}), "
                "or leave metadata_root unset to fetch it."
                if self.root is not None
                else f"Connect to the network once to fetch it into {self.cache_dir}, or pass "
                "metadata_root= a folder that holds the release's files."
            )
        )

    def _fetch(self, pin: Pin, url: str, folder: Path, known_hash: str | None) -> Path:
        """Download ``url`` into ``folder`` with pooch; errors name the file and release."""
        import pooch
        import requests

        folder.mkdir(parents=True, exist_ok=True)
        downloader = pooch.HTTPDownloader(progressbar=False, timeout=self.timeout)
        try:
            got = pooch.retrieve(
                url, known_hash=known_hash, fname=pin.file, path=folder, downloader=downloader
            )
        except ValueError as exc:  # pooch's hash mismatch
            raise ChecksumError(
                f"{self._what(pin)} downloaded from {url} does not match the release "
                f"(expected {pin.expected}): {exc}. Check that the source serves "
                f"{self.release.name}, or pass metadata_verify=False to use it anyway."
            ) from None
        except (requests.RequestException, OSError) as exc:
            raise self._missing(pin, url, exc) from exc
        return Path(got)

    def _download_verified(self, pin: Pin, table: str, cached: Path) -> Path:
        url = self.source_url(table)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cached.parent))
        try:
            got = self._fetch(pin, url, tmp, f"sha256:{pin.sha256}" if pin.sha256 else None)
            self._check(pin, got, url)  # the git-blob pins are checked here, sha256 again
            os.replace(got, cached)
            log.info("fetched %s from %s into %s", self._what(pin), url, cached)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cached

    def _unverified(self, pin: Pin, table: str) -> Path:
        where = self.source_url(table)
        if self.root is not None and not _is_url(self.root):
            local = Path(where)
            if not local.is_file():
                raise self._missing(pin, where)
        else:  # never cached: a fresh download per store, removed once parsed or at exit
            folder = Path(tempfile.mkdtemp(prefix="intake-cpg-unverified-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            local = self._fetch(pin, where, folder, None)
        ok, actual = _mismatch(pin, local)
        if not ok:
            log.warning(
                "metadata_verify=False: using %s from %s although it does not match the release "
                "(expected %s, found %s); results may differ from %s",
                self._what(pin),
                where,
                pin.expected,
                actual,
                self.release.name,
            )
        return local

    # -- tables ----------------------------------------------------------------------------
    def read(self, table: str) -> pd.DataFrame:
        """``table`` as a dataframe, every column a string (parsed once per store)."""
        with self._lock:
            if table not in self._frames:
                self._frames[table] = decode_table(self.path(table))
            return self._frames[table]

    def read_many(self, tables: list[str] | tuple[str, ...]) -> dict[str, pd.DataFrame]:
        """Several tables by name, in the order given."""
        return {t: self.read(t) for t in tables}
