"""Files written whole or not at all, and a folder of checksummed cache entries built on them.

:func:`atomic_write` is how the package writes a file: the bytes go to a temporary file in the
target's own folder, which then replaces the target with :func:`os.replace` (atomic on POSIX
and Windows), so a reader sees the old file or the new one, never half of one. The temporary
file is removed on any failure, including an interrupt.

:class:`DiskCache` keeps ``key -> value`` entries in one folder, shared by processes (dask
workers, a later session). The listing cache (:mod:`intake_cpg.storage`) and the footer cache
(:mod:`intake_cpg.footer_cache`) are two of them. An entry records the key it belongs to and
a signature of key and payload: an HMAC-SHA256 with a key private to the user
(:func:`signing_key`, kept outside every cache folder, mode 0600). One that cannot be read,
fails its signature or names another key is logged, deleted and reported as a miss, so the
caller rebuilds it from the data: a cache is never trusted over the data, and whoever can write
a shared cache folder but cannot read your key file cannot forge an entry you accept (a plain
checksum they could recompute). Values are bytes (:meth:`DiskCache.get` / :meth:`DiskCache.put`)
or JSON documents (:meth:`DiskCache.get_json` / :meth:`DiskCache.put_json`, stored as a JSON
file). With ``max_bytes`` the folder is bounded: the least recently used entries go first.

>>> import tempfile
>>> cache = DiskCache(tempfile.mkdtemp(), what="demo cache")
>>> cache.put(("s3://b/k", "etag-1"), b"payload")
True
>>> cache.get(("s3://b/k", "etag-1"))
b'payload'
>>> cache.get(("s3://b/k", "etag-2")) is None  # another key never sees this entry
True
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from .errors import ParameterError, StorageError

log = logging.getLogger(__name__)

__all__ = ["DiskCache", "atomic_write", "key_file", "signing_key"]

#: Prefix of temporary files (a crashed writer's leftovers are recognisable and ignored).
TMP_PREFIX = ".tmp-"
_MAGIC = b"CPGDISK1"
_FORMAT = 1  # entries of older releases (a plain SHA-256, no "hmac") fail their signature


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], Any], *, fsync: bool = False
) -> None:
    """Write ``data`` (bytes, or a function writing into a binary file) to ``path`` atomically.

    The folder is created when missing. Errors are raised after the temporary file is removed;
    ``path`` is then untouched. With ``fsync`` the bytes reach the disk before the rename.

    >>> import os, tempfile
    >>> fn = os.path.join(tempfile.mkdtemp(), "sub", "x.txt")
    >>> atomic_write(fn, b"hello"); open(fn, "rb").read()
    b'hello'
    >>> def broken(f):
    ...     f.write(b"half")
    ...     raise RuntimeError("disk full")
    >>> atomic_write(fn, broken)
    Traceback (most recent call last):
    ...
    RuntimeError: disk full
    >>> open(fn, "rb").read(), sorted(os.listdir(os.path.dirname(fn)))  # old file, no leftovers
    (b'hello', ['x.txt'])
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix="-" + base[-40:])
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- signing: entries are bound to this user's key, kept outside every cache folder ---------------
#: Environment variable naming the signing key file (default: under the user's config folder).
KEY_FILE_ENV = "INTAKE_CPG_CACHE_KEY_FILE"
_KEY_BYTES = 32
_KEYS: dict[str, bytes] = {}
_KEYS_LOCK = threading.Lock()


def key_file() -> str:
    """Where this user's cache signing key is kept: ``$INTAKE_CPG_CACHE_KEY_FILE``, else
    ``$XDG_CONFIG_HOME/intake-cpg/cache-signing.key`` (``~/.config`` by default)."""
    given = os.environ.get(KEY_FILE_ENV)
    if given:
        return os.path.abspath(os.path.expanduser(given))
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(os.path.abspath(config), "intake-cpg", "cache-signing.key")


def signing_key() -> bytes:
    """This user's secret key for cache entries: created (random, mode 0600) on first use.

    A key file that others can read or write is refused (``StorageError``): a key anyone can
    read lets anyone forge entries.
    """
    fn = key_file()
    with _KEYS_LOCK:
        if fn in _KEYS:
            return _KEYS[fn]
        if not os.path.exists(fn):
            os.makedirs(os.path.dirname(fn), mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(fn), prefix=TMP_PREFIX)  # 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(_KEY_BYTES))
                try:
                    os.link(tmp, fn)  # atomic, and never replaces a key another process made
                except FileExistsError:
                    pass
            finally:
                os.remove(tmp)
        st = os.stat(fn)
        if st.st_mode & 0o077 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            raise StorageError(
                f"the cache signing key {fn} must be private to you (owner only, mode 0600); "
                f"fix it with `chmod 600 {fn}`, or remove it to make a new one"
            )
        with open(fn, "rb") as f:
            key = f.read()
        if len(key) < _KEY_BYTES:
            raise StorageError(
                f"the cache signing key {fn} is too short; remove it to make a new one"
            )
        _KEYS[fn] = key
        return key


def _sign(key: str, data: bytes) -> str:
    """The entry's signature: an HMAC-SHA256, with this user's key, of its key and payload."""
    return hmac.new(signing_key(), key.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _check_signed(key: Any, header: dict[str, Any], payload: bytes) -> None:
    """Raise ``ValueError`` unless ``header`` names ``key`` and signs ``payload`` with it."""
    if header.get("key") != _canonical(key):
        raise ValueError("entry is for another key")
    if not hmac.compare_digest(str(header.get("hmac")), _sign(header["key"], payload)):
        raise ValueError("signature mismatch (not written by you, or changed since)")


class DiskCache:
    """Checksummed ``key -> bytes`` (or JSON) entries in one folder; corrupt entries are misses.

    Parameters
    ----------
    directory:
        The folder (created on the first write).
    what:
        What the entries are, for log messages (``"listing cache"``).
    then:
        What the caller does on a miss, for log messages (``"listing again"``).
    suffix:
        File name suffix of the entries (``".json"`` entries are JSON documents).
    fanout:
        Spread entries over 256 sub-folders (for caches of many thousands of entries).
    max_bytes:
        Bound on the entries' total size: after a write, the least recently used entries are
        removed until the rest fit. ``None`` (the default) is unbounded.
    stats:
        A counter that receives ``corrupt`` (entries found unreadable) and ``evicted``.
    logger:
        Where warnings go (the caller's module logger, so they carry its name); default this
        module's.

    Keys are any JSON-serialisable value (strings, tuples of strings and numbers); the file name
    is the SHA-256 of the key, and the key itself is stored in the entry and compared on read.
    A cache that cannot be written is not an error: :meth:`put` logs and returns ``False``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        what: str = "cache entry",
        then: str = "rebuilding it",
        suffix: str = ".bin",
        fanout: bool = False,
        max_bytes: int | None = None,
        stats: collections.Counter[str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.what = what
        self.then = then
        self.suffix = suffix
        self.fanout = fanout
        if max_bytes is not None and max_bytes < 0:
            raise ParameterError(
                f"max_bytes={max_bytes!r} is not valid: expected a number of bytes >= 0, or None "
                "for an unbounded cache"
            )
        self.max_bytes = max_bytes
        self._total: int | None = None
        self.stats: collections.Counter[str] = stats if stats is not None else collections.Counter()
        self.log = logger or log

    def __repr__(self) -> str:
        return f"DiskCache({self.directory!r}, what={self.what!r})"

    # -- files ----------------------------------------------------------------------------------
    def path(self, key: Any) -> str:
        """The file of ``key``'s entry (it may not exist)."""
        digest = _digest(_canonical(key).encode())
        if self.fanout:
            return os.path.join(self.directory, digest[:2], digest + self.suffix)
        return os.path.join(self.directory, digest + self.suffix)

    def __contains__(self, key: Any) -> bool:
        return os.path.exists(self.path(key))

    def _read_file(self, key: Any) -> tuple[str, bytes] | None:
        fn = self.path(key)
        try:
            with open(fn, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._corrupt(fn, exc)
            return None
        return fn, blob

    def reject(self, key: Any, why: BaseException | str) -> None:
        """Log ``key``'s entry as unreadable and remove it (the caller found it unusable)."""
        self._corrupt(self.path(key), why)

    def _corrupt(self, fn: str, why: BaseException | str) -> None:
        self.stats["corrupt"] += 1
        self.log.warning("ignoring unreadable %s %s (%s); %s", self.what, fn, why, self.then)
        try:
            os.remove(fn)
        except OSError:
            pass

    def _touch(self, fn: str) -> None:
        if self.max_bytes is not None:  # the modification time orders eviction
            try:
                os.utime(fn)
            except OSError:
                pass

    def _write(self, key: Any, blob: bytes) -> bool:
        fn = self.path(key)
        try:
            atomic_write(fn, blob)
        except OSError as exc:  # a cache that cannot be written is not an error
            self.log.warning("could not write %s %s: %s", self.what, fn, exc)
            return False
        if self.max_bytes is not None:
            # the folder is walked on the first write and whenever the running total (which
            # over-counts replaced entries) passes the bound, not on every write
            self._total = self.size() if self._total is None else self._total + len(blob)
            if self._total > self.max_bytes:
                self._evict(keep=fn)
        return True

    # -- bytes ----------------------------------------------------------------------------------
    def get(self, key: Any) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` (missing, or found corrupt and removed)."""
        hit = self._read_file(key)
        if hit is None:
            return None
        fn, blob = hit
        try:
            if blob[: len(_MAGIC)] != _MAGIC:
                raise ValueError("not a cache entry")
            start = len(_MAGIC) + 4
            (hlen,) = struct.unpack("<I", blob[len(_MAGIC) : start])
            header = json.loads(blob[start : start + hlen])
            payload = blob[start + hlen :]
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise ValueError("unknown entry format")
            if header.get("size") != len(payload):
                raise ValueError("size mismatch")
            _check_signed(key, header, payload)
        except (ValueError, struct.error) as exc:
            self._corrupt(fn, exc)
            return None
        except StorageError as exc:  # no usable signing key: no cache, never a crash
            self.log.warning("%s not used: %s", self.what, exc)
            return None
        self._touch(fn)
        return payload

    def put(self, key: Any, data: bytes) -> bool:
        """Store ``data`` under ``key`` (atomically); ``False`` when it could not be written."""
        canon = _canonical(key)
        try:
            signature = _sign(canon, data)
        except StorageError as exc:
            self.log.warning("%s not written: %s", self.what, exc)
            return False
        header = json.dumps(
            {"format": _FORMAT, "key": canon, "size": len(data), "hmac": signature}
        ).encode()
        return self._write(key, _MAGIC + struct.pack("<I", len(header)) + header + bytes(data))

    # -- JSON -----------------------------------------------------------------------------------
    def get_json(self, key: Any) -> Any:
        """The JSON value stored under ``key`` with :meth:`put_json`, or ``None``."""
        hit = self._read_file(key)
        if hit is None:
            return None
        fn, blob = hit
        try:
            doc = json.loads(blob.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ValueError("not a cache document of this format")
            if "value" not in doc:
                raise ValueError("no value")
            _check_signed(key, doc, _canonical(doc["value"]).encode())
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            self._corrupt(fn, exc)
            return None
        except StorageError as exc:  # no usable signing key: no cache, never a crash
            self.log.warning("%s not used: %s", self.what, exc)
            return None
        self._touch(fn)
        return doc["value"]

    def put_json(self, key: Any, value: Any) -> bool:
        """Store the JSON-serialisable ``value`` under ``key`` as a readable JSON document."""
        canon = _canonical(key)
        try:
            signature = _sign(canon, _canonical(value).encode())
        except StorageError as exc:
            self.log.warning("%s not written: %s", self.what, exc)
            return False
        doc = {"format": _FORMAT, "key": canon, "hmac": signature, "value": value}
        return self._write(key, json.dumps(doc).encode())

    # -- housekeeping ---------------------------------------------------------------------------
    def delete(self, key: Any) -> None:
        """Remove ``key``'s entry, if any."""
        try:
            os.remove(self.path(key))
        except FileNotFoundError:
            pass

    def clear(self) -> None:
        """Remove every entry (the whole folder, so entries other processes wrote go too)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self._total = None

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        for folder, _, names in os.walk(self.directory):
            for name in names:
                if not name.endswith(self.suffix) or name.startswith(TMP_PREFIX):
                    continue
                fn = os.path.join(folder, name)
                try:
                    st = os.stat(fn)
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, fn))
        return out

    def size(self) -> int:
        """Total bytes of the entries on disk."""
        return sum(size for _, size, _ in self._entries())

    def _evict(self, keep: str) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, fn in entries:
            if total <= self.max_bytes:  # type: ignore[operator]
                break
            if fn == keep:
                continue
            try:
                os.remove(fn)
            except OSError:
                continue
            total -= size
            self.stats["evicted"] += 1
        self._total = total
