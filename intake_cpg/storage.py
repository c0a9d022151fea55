"""The one I/O seam: every filesystem the package opens comes from here.

* :func:`filesystem` and :func:`open_url` give a filesystem for a URL, or an open file, with
  one rule for storage options (:func:`effective_options`): S3 is read anonymously unless
  credentials are given, so ambient AWS credentials (environment, ``~/.aws``) are never
  picked up by accident; local paths and HTTP(S) URLs get no storage options (those are for
  the gallery's S3 store, and an HTTP client refuses them); secret values are kept out of the
  client libraries' logs (:func:`guard_secrets`) and out of everything shown (:func:`redact`,
  :func:`scrub`).
* :class:`Storage` wraps one gallery root (``s3://cellpainting-gallery``, a local mirror, a
  bucket on an S3-compatible endpoint) and gives the catalog what it needs and nothing more:

  - :meth:`Storage.ls`: one level of the tree, cached in memory with a TTL and, when a
    ``cache_dir`` is given, on disk (a :class:`~intake_cpg.diskcache.DiskCache`) so that a
    second process does not list again;
  - :meth:`Storage.ls_many`: many levels at once, concurrently;
  - :meth:`Storage.info`: one HEAD request (size and ETag);
  - :meth:`Storage.url`: the fsspec URL of a key, for the readers that run on dask workers.

  Every request it makes is counted in :attr:`Storage.requests`, so tests and benchmarks can
  hold the catalog to its cost bounds. Every key passes one containment rule
  (:meth:`Storage.path`).

>>> import tempfile, os
>>> fn = os.path.join(tempfile.mkdtemp(), "x.txt"); _ = open(fn, "w").write("hello")
>>> with open_url(fn) as f:
...     f.read()
b'hello'
>>> fs, path = filesystem("s3://cellpainting-gallery/cpg0016-jump", {"key": "AKIA...", "secret": "x"})
>>> path, fs.anon
('cellpainting-gallery/cpg0016-jump', False)
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import fsspec
from fsspec.core import split_protocol, url_to_fs

from .diskcache import DiskCache
from .errors import GalleryPathError, ParameterError, StorageError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ROOT",
    "GALLERY_BUCKET",
    "SECRET_KEYS",
    "Entry",
    "SecretFilter",
    "Storage",
    "contained_key",
    "listing_identity",
    "effective_options",
    "filesystem",
    "get_storage",
    "guard_secrets",
    "is_transport_failure",
    "open_url",
    "protocol_of",
    "redact",
    "scrub",
    "secret_values",
    "transport_error",
    "transport_errors",
    "write_atomic",
]

#: The public bucket of the Cell Painting Gallery.
GALLERY_BUCKET = "cellpainting-gallery"
#: The gallery root every catalog, source and command opens by default.
DEFAULT_ROOT = f"s3://{GALLERY_BUCKET}"
_CACHE_FORMAT = 1

#: storage_options keys whose values are secrets (never logged, shown or frozen).
SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "secret_access_key",
        "access_key_id",
    }
)
#: storage_options keys that mean "the caller brings credentials".
_CREDENTIAL_KEYS = frozenset({"key", "secret", "token", "profile", "session", "anon"})
#: Shorter secret values are not scrubbed from text (they would mangle every message).
_MIN_SECRET_LENGTH = 3
_S3 = ("s3", "s3a")
#: Protocols that take no storage options: local files, and public web pages.
_NO_OPTIONS = ("file", "local", "http", "https")


def redact(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``options`` with secret values replaced by ``'***'`` (recursively).

    >>> redact({"anon": False, "key": "AKIA...", "client_kwargs": {"aws_secret_access_key": "x"}})
    {'anon': False, 'key': '***', 'client_kwargs': {'aws_secret_access_key': '***'}}
    """
    out: dict[str, Any] = {}
    for k, v in (options or {}).items():
        if k.lower() in SECRET_KEYS and v is not None:
            out[k] = "***"
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def secret_values(options: Mapping[str, Any] | None) -> set[str]:
    """The secret values in ``options`` (recursively), as :func:`scrub` removes them from text.

    >>> sorted(secret_values({"key": "AKIAEXAMPLE", "anon": False, "client_kwargs": {"token": "t0k"}}))
    ['AKIAEXAMPLE', 't0k']
    """
    out: set[str] = set()
    for k, v in (options or {}).items():
        if isinstance(v, Mapping):
            out |= secret_values(v)
        elif k.lower() in SECRET_KEYS and isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH:
            out.add(v)
    return out


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first).

    >>> scrub("GET ?X-Amz-Security-Token=abcdef&k=abc", ["abc", "abcdef"])
    'GET ?X-Amz-Security-Token=***&k=***'
    """
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


class SecretFilter(logging.Filter):
    """A logging filter that replaces known secret values by ``***`` in every record it sees.

    botocore logs every request's headers at DEBUG, including ``X-Amz-Security-Token``.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            clean = scrub(msg, self.secrets)
            if clean != msg:
                record.msg, record.args = clean, None
        return True


_SECRET_FILTER = SecretFilter()
#: Loggers of the libraries below fsspec that may print request headers or arguments.
_CLIENT_LOGGERS = (
    "botocore.endpoint",
    "botocore.auth",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.credentials",
    "aiobotocore.endpoint",
    "s3fs",
    "fsspec",
)


def guard_secrets(options: Mapping[str, Any] | None) -> None:
    """Keep the secret values of ``options`` out of the client libraries' log records."""
    values = secret_values(options) - _SECRET_FILTER.secrets
    if not values:
        return
    _SECRET_FILTER.secrets |= values
    for name in _CLIENT_LOGGERS:
        lg = logging.getLogger(name)
        if _SECRET_FILTER not in lg.filters:
            lg.addFilter(_SECRET_FILTER)


def protocol_of(url: str) -> str:
    """The fsspec protocol of ``url`` (``"file"`` for a plain path).

    >>> protocol_of("s3://cellpainting-gallery/x"), protocol_of("/data/mirror")
    ('s3', 'file')
    """
    return split_protocol(url)[0] or "file"


def effective_options(protocol: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The storage options a filesystem of ``protocol`` gets: the package's one rule.

    S3 without explicit credentials is anonymous; local files and HTTP(S) get none (the
    options are the gallery store's: an endpoint, S3 credentials); other protocols get them
    as given. Secret values are guarded from the client libraries' logs either way.

    >>> effective_options("s3", None)
    {'anon': True}
    >>> effective_options("s3", {"anon": False})
    {'anon': False}
    >>> effective_options("https", {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}})
    {}
    >>> effective_options("file", {"anon": True})
    {}
    """
    opts = dict(storage_options or {})
    guard_secrets(opts)
    if protocol in _NO_OPTIONS:
        return {}
    if protocol in _S3 and not (_CREDENTIAL_KEYS & set(opts)):
        opts["anon"] = True
    return opts


def filesystem(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path of ``url`` on it.

    Options follow :func:`effective_options`. fsspec reuses one filesystem instance per
    protocol and options, so calling this for every file costs nothing after the first.

    >>> fs, path = filesystem("s3://cellpainting-gallery/cpg0016-jump/index.html")
    >>> path, fs.anon
    ('cellpainting-gallery/cpg0016-jump/index.html', True)
    >>> filesystem("nosuchproto://b/k")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: cannot open 'nosuchproto://b/k': Protocol not known: nosuchproto. Expected a local path or a URL of an fsspec protocol (s3://, https://, file://, ...)
    """
    if not isinstance(url, str) or not url.strip():
        raise ParameterError(f"expected a non-empty path or URL, got {url!r}")
    try:
        if "::" in url:  # a chained URL: the options are its target's (the last layer)
            target = protocol_of(url.rsplit("::", 1)[-1])
            return url_to_fs(url, **{target: effective_options(target, storage_options)})
        options = effective_options(protocol_of(url), storage_options)
        if protocol_of(url) in _S3 and "?versionId=" in url:  # a pinned object version
            options["version_aware"] = True
        return url_to_fs(url, **options)
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise ParameterError(
            f"cannot open {url!r}: {exc}. Expected a local path or a URL of an fsspec protocol "
            "(s3://, https://, file://, ...)"
        ) from exc


def open_url(
    url: str, storage_options: Mapping[str, Any] | None = None, mode: str = "rb", **kwargs: Any
) -> Any:
    """Open ``url`` (a file-like object, to be used as a context manager).

    ``kwargs`` go to the filesystem's ``open`` (``compression=``, ``cache_type=``,
    ``block_size=``, ...); options follow :func:`effective_options`.
    """
    fs, path = filesystem(url, storage_options)
    return fs.open(path, mode, **kwargs)


@functools.cache
def transport_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a request can end with once fsspec's and botocore's retries are spent.

    ``OSError`` first, then the client libraries' own (botocore's connection errors, aiohttp's
    truncated-payload errors), which do not derive from ``OSError``.
    """
    out: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from botocore.exceptions import BotoCoreError

        out.append(BotoCoreError)
    except ImportError:  # pragma: no cover - s3fs not installed
        pass
    try:
        from aiohttp import ClientError

        out.append(ClientError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


def is_transport_failure(exc: BaseException) -> bool:
    """True when ``exc`` means the request failed (not that the bytes were bad).

    >>> is_transport_failure(OSError(121, "Internal Server Error")), is_transport_failure(EOFError())
    (True, False)
    """
    if isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, transport_errors()[1:]):
        return True
    return isinstance(exc, OSError) and exc.errno is not None


def _is_connect_failure(exc: BaseException) -> bool:
    """No connection was made: botocore's ``EndpointConnectionError``, aiohttp's
    ``ClientConnectorError`` (DNS failures included), a refused connection."""
    return isinstance(exc, ConnectionRefusedError) or any(
        c.__name__ in ("EndpointConnectionError", "ClientConnectorError") for c in type(exc).__mro__
    )


def transport_error(url: str, exc: BaseException, doing: str = "read") -> StorageError:
    """A :class:`StorageError` naming ``url`` and the cause of a failed request.

    >>> from s3fs.utils import FileExpired
    >>> str(transport_error("s3://b/k", FileExpired("b/k", "abc")))[:41]
    's3://b/k changed while it was being read:'
    """
    if type(exc).__name__ == "FileExpired":  # s3fs: an If-Match range read found a new ETag
        return StorageError(
            f"{url} changed while it was being read: {exc}. Nothing of it was returned "
            "(every range read asks for the version the listing or the first answer named); "
            "refresh the listing (cat.refresh(), or intake-cpg --refresh) and load again to "
            "read the new version."
        )
    cause = f"{type(exc).__name__}: {exc}"
    if _is_connect_failure(exc):  # botocore and aiohttp word it differently: say it once
        cause = f"Could not connect to the endpoint ({cause})"
    return StorageError(
        f"could not {doing} {url}: {cause}. The request failed after "
        "retries; try again later, or raise the retry budget, e.g. storage_options="
        "{'config_kwargs': {'retries': {'max_attempts': 10, 'mode': 'adaptive'}}}."
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a listing: ``name`` is the last path segment, ``key`` is root-relative."""

    name: str
    key: str
    is_dir: bool
    size: int | None = None
    etag: str | None = None

    def to_json(self) -> list[Any]:
        return [self.name, self.key, self.is_dir, self.size, self.etag]

    @classmethod
    def from_json(cls, row: list[Any]) -> Entry:
        name, key, is_dir, size, etag = row
        if not (isinstance(name, str) and isinstance(key, str) and isinstance(is_dir, bool)):
            raise ValueError("bad cache row")
        return cls(name, key, is_dir, size, etag)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _seconds(value: Any, name: str) -> float:
    """A non-negative number of seconds (YAML catalogs may pass it as text).

    >>> _seconds("60", "listing_ttl"), _seconds(1.5, "listing_ttl")
    (60.0, 1.5)
    >>> _seconds("an hour", "listing_ttl")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: listing_ttl must be a number of seconds (e.g. 3600), got 'an hour'
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not seconds >= 0:
        raise ParameterError(f"{name} must be a number of seconds (e.g. 3600), got {value!r}")
    return seconds


def s3_endpoint(options: Mapping[str, Any]) -> str | None:
    """The S3 endpoint the client of these storage options uses: ``client_kwargs`` or
    ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` from the environment
    (as botocore does); ``None`` for AWS itself.

    >>> s3_endpoint({"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}})
    'http://127.0.0.1:9000'
    """
    client = options.get("client_kwargs") or {}
    endpoint = (
        client.get("endpoint_url")
        or options.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    return str(endpoint) if endpoint else None


def listing_identity(protocol: str, options: Mapping[str, Any]) -> tuple[str, str]:
    """``(endpoint, identity)`` that a listing's content depends on, beyond the root.

    The endpoint is the one the client will use: ``storage_options`` (``client_kwargs`` or
    ``endpoint_url``), else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` from the
    environment, else AWS itself. The identity is ``anonymous``, or a hash of the access key
    (or profile) the requests are signed with: never the secret. Listings made under another
    endpoint or identity are never served.

    >>> listing_identity("s3", {"anon": True})[1]
    'anonymous'
    >>> listing_identity("s3", {"key": "AKIAEXAMPLE", "secret": "s"})[1].startswith("key:")
    True
    >>> listing_identity("file", {})
    ('', 'local')
    """
    if protocol not in _S3:
        return "", "local"
    client = options.get("client_kwargs") or {}
    endpoint = s3_endpoint(options) or "aws"
    if options.get("anon"):
        return str(endpoint), "anonymous"
    key = options.get("key") or client.get("aws_access_key_id")
    if key:
        return str(endpoint), "key:" + _digest(str(key))[:24]
    profile = options.get("profile") or os.environ.get("AWS_PROFILE")
    ambient = os.environ.get("AWS_ACCESS_KEY_ID")
    who = f"profile:{profile}" if profile else f"key:{ambient}" if ambient else "default-chain"
    return str(endpoint), "ambient:" + _digest(who)[:24]


def contained_key(key: str, root: str) -> str:
    """``key`` without its outer slashes, if it names something inside ``root``; else refused.

    The one containment rule for every key that reaches storage, whatever produced it (a
    listing, a parameter, a manifest record joined under ``root=``): no ``..`` or ``.``
    segment, no backslash, no NUL, also once percent-decoded (an HTTP(S) root would decode
    ``%2e%2e`` into ``..``).

    >>> contained_key("/cpg0016-jump/source_4/", "/data/mirror")
    'cpg0016-jump/source_4'
    >>> contained_key("cpg0016-jump/%2e%2e/%2E%2E/etc", "/data/mirror")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.GalleryPathError: key 'cpg0016-jump/%2e%2e/%2E%2E/etc' would leave the gallery root /data/mirror: it has a '..' segment (once percent-decoded); keys are relative, '/'-separated names inside the root
    """
    key = key.strip("/")
    for form, note in ((key, ""), (unquote(key), " (once percent-decoded)")):
        segments = form.split("/")
        bad = next(
            (
                reason
                for reason, hit in (
                    ("a '..' segment", ".." in segments),
                    ("a '.' segment", "." in segments),
                    ("a backslash", "\\" in form),
                    ("a NUL character", "\x00" in form),
                )
                if hit
            ),
            None,
        )
        if bad:
            raise GalleryPathError(
                f"key {key!r} would leave the gallery root {root}: it has {bad}{note}; keys "
                "are relative, '/'-separated names inside the root"
            )
    return key


def _clean_etag(value: Any) -> str | None:
    if not value:
        return None
    return str(value).strip('"')


class Storage:
    """One gallery root on any fsspec filesystem.

    Parameters
    ----------
    urlpath:
        The root, e.g. ``"s3://cellpainting-gallery"``, ``"/data/mirror"``,
        ``"s3://my-bucket/prefix"``.
    storage_options:
        Passed to fsspec. For S3 without credentials, ``anon=True`` is added.
    listing_ttl:
        Seconds a listing stays valid in memory and on disk.
    cache_dir:
        Folder for the on-disk listing cache (shared between processes); ``None`` keeps
        listings in memory only.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "cpg0016-jump" / "source_4").mkdir(parents=True)
    >>> st = Storage(str(d))
    >>> [e.name for e in st.ls("")]
    ['cpg0016-jump']
    >>> st.requests["ls"]
    1
    >>> [e.name for e in st.ls("")]  # served from the cache
    ['cpg0016-jump']
    >>> st.requests["ls"]
    1
    """

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        storage_options: Mapping[str, Any] | None = None,
        *,
        listing_ttl: float = 3600.0,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(urlpath, str) or not urlpath.strip():
            raise StorageError(f"gallery root must be a non-empty URL or path, got {urlpath!r}")
        if "::" in urlpath:
            raise StorageError(
                f"chained fsspec URLs are not supported as a gallery root: {urlpath!r}. "
                "Pass the target URL itself (e.g. 's3://cellpainting-gallery'); listings are "
                "cached with cache_dir=, and parquet footers with the footer cache."
            )
        protocol, path = split_protocol(urlpath.rstrip("/") or "/")
        self.protocol: str = protocol or "file"
        if self.protocol == "file":
            path = os.path.abspath(os.path.expanduser(path))
        self.root_path: str = path.rstrip("/") if path != "/" else path
        self.storage_options: dict[str, Any] = effective_options(self.protocol, storage_options)
        self.listing_ttl = _seconds(listing_ttl, "listing_ttl")
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.requests: collections.Counter[str] = collections.Counter()
        self._memory: dict[str, tuple[float, tuple[Entry, ...]]] = {}
        self._lock = threading.Lock()
        self._fs: fsspec.AbstractFileSystem | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """The root as a URL (``s3://bucket/prefix`` or ``file:///abs/path``)."""
        return f"{self.protocol}://{self.root_path}"

    def __repr__(self) -> str:
        return f"Storage({self.root!r}, storage_options={redact(self.storage_options)!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem (created on first use; not pickled)."""
        if self._fs is None:
            self._fs = fsspec.filesystem(self.protocol, **self.storage_options)
        return self._fs

    def path(self, key: str) -> str:
        """Filesystem path of a root-relative ``key``; a key that would leave the root is refused.

        >>> Storage("/data/mirror").path("../etc")
        Traceback (most recent call last):
        ...
        intake_cpg.errors.GalleryPathError: key '../etc' would leave the gallery root /data/mirror: it has a '..' segment; keys are relative, '/'-separated names inside the root
        """
        key = contained_key(key, self.root_path)
        if not key:
            return self.root_path
        return f"{self.root_path.rstrip('/')}/{key}"

    def url(self, key: str) -> str:
        """Full URL of a root-relative ``key`` (what readers on dask workers open)."""
        return f"{self.protocol}://{self.path(key)}"

    def key_of(self, path: str) -> str:
        """Root-relative key of a filesystem path returned by fsspec."""
        _, p = split_protocol(path)
        base = self.root_path.rstrip("/") + "/"
        if p.startswith(base):
            return p[len(base) :]
        if p.rstrip("/") == self.root_path.rstrip("/"):
            return ""
        return p.lstrip("/")

    # -- listing --------------------------------------------------------------------------
    def _cache_root(self) -> str | None:
        """This root's folder of the on-disk listing cache: one per root, endpoint and identity.

        Listings made with other credentials (another account, or anonymous) may see other
        objects, so they are kept apart; the folder name is a hash, no secret is written.
        """
        if self.cache_dir is None:
            return None
        ident = json.dumps(
            [self.root, *listing_identity(self.protocol, self.storage_options)],
            sort_keys=True,
            default=str,
        )
        return os.path.join(self.cache_dir, "listings", _digest(ident)[:32])

    def _disk(self) -> DiskCache | None:
        folder = self._cache_root()
        if folder is None:
            return None
        return DiskCache(
            folder, what="listing cache", then="listing again", suffix=".json", logger=log
        )

    def _disk_key(self, prefix: str) -> list[Any]:
        return ["listing", _CACHE_FORMAT, self.root, prefix]

    def _cache_file(self, prefix: str) -> str | None:
        disk = self._disk()
        return None if disk is None else disk.path(self._disk_key(prefix))

    def _read_disk(self, prefix: str) -> tuple[float, tuple[Entry, ...]] | None:
        disk = self._disk()
        if disk is None:
            return None
        doc = disk.get_json(self._disk_key(prefix))
        if doc is None:
            return None
        try:
            return float(doc["time"]), tuple(Entry.from_json(r) for r in doc["entries"])
        except (ValueError, KeyError, TypeError) as exc:
            disk.reject(self._disk_key(prefix), exc)
            return None

    def _write_disk(self, prefix: str, stamp: float, entries: tuple[Entry, ...]) -> None:
        disk = self._disk()
        if disk is not None:
            rows = [e.to_json() for e in entries]
            disk.put_json(self._disk_key(prefix), {"time": stamp, "entries": rows})

    def _cached(self, prefix: str) -> tuple[Entry, ...] | None:
        now = time.time()
        hit = self._memory.get(prefix)
        if hit is not None and now - hit[0] < self.listing_ttl:
            return hit[1]
        disk = self._read_disk(prefix)
        if disk is not None and now - disk[0] < self.listing_ttl:
            self._memory[prefix] = disk
            return disk[1]
        return None

    def _store(self, prefix: str, entries: tuple[Entry, ...]) -> None:
        stamp = time.time()
        with self._lock:
            self._memory[prefix] = (stamp, entries)
        self._write_disk(prefix, stamp, entries)

    def _to_entries(self, raw: Iterable[Mapping[str, Any]]) -> tuple[Entry, ...]:
        out = []
        for info in raw:
            key = self.key_of(info["name"]).rstrip("/")
            name = key.rsplit("/", 1)[-1]
            if not name:
                continue
            is_dir = info.get("type") == "directory"
            etag = None if is_dir else _clean_etag(info.get("ETag") or info.get("etag"))
            size = None if is_dir else info.get("size")
            out.append(Entry(name, key, is_dir, size, etag))
        return tuple(sorted(set(out), key=lambda e: e.name))

    def _list_remote(self, prefix: str) -> tuple[Entry, ...]:
        self.requests["ls"] += 1
        path = self.path(prefix)
        log.debug("listing %s", self.url(prefix))
        try:
            raw = self._list_level(path)
        except StorageError:
            raise
        except FileNotFoundError as exc:
            if type(exc).__name__ == "NoSuchBucketError" or (
                type(exc.__cause__).__name__ == "NoSuchBucket"
            ):
                raise StorageError(
                    f"cannot list {self.url(prefix)}: the bucket does not exist ({exc}); check "
                    "the root (--root / urlpath) and the endpoint"
                ) from exc
            return ()
        except NotADirectoryError:
            return ()
        except PermissionError as exc:
            raise StorageError(
                f"permission denied listing {self.url(prefix)}: {exc}. "
                "For a private bucket pass credentials in storage_options."
            ) from exc
        except transport_errors() as exc:
            raise transport_error(self.url(prefix), exc, "list") from exc
        return self._to_entries(raw)

    def _list_level(self, path: str, *, recursive: bool = False) -> list[dict[str, Any]]:
        """One level below ``path`` (``recursive``: every file below it) as fsspec info
        dicts: over plain HTTP for an anonymous S3 root (no botocore client:
        :func:`~intake_cpg.fetch.plain_listing`), else through fsspec."""
        from . import fetch

        if not (self.protocol in ("s3", "s3a") and fetch.plain_listing(self.fs)):
            if recursive:
                return list(self.fs.find(path, detail=True).values())
            if self.protocol in ("s3", "s3a"):
                return self.fs.ls(path, detail=True, refresh=True)
            return self.fs.ls(path, detail=True)
        bucket, key, _ = self.fs.split_path(path)
        prefix = f"{key.strip('/')}/" if key.strip("/") else ""
        delimiter = "" if recursive else "/"
        return fetch.run(self.fs, fetch.list_prefix(self.fs, bucket, prefix, delimiter=delimiter))

    def _through_cache(
        self, cache_key: str, fetch: Callable[[], tuple[Entry, ...]], refresh: bool
    ) -> tuple[Entry, ...]:
        """The cached listing under ``cache_key``, or ``fetch()`` stored there."""
        if not refresh:
            hit = self._cached(cache_key)
            if hit is not None:
                return hit
        entries = fetch()
        self._store(cache_key, entries)
        return entries

    def ls(self, prefix: str = "", *, refresh: bool = False) -> tuple[Entry, ...]:
        """List one level below ``prefix`` (root-relative). A missing prefix lists as empty."""
        prefix = prefix.strip("/")
        return self._through_cache(prefix, lambda: self._list_remote(prefix), refresh)

    def ls_many(
        self, prefixes: Iterable[str], *, refresh: bool = False, max_workers: int = 16
    ) -> dict[str, tuple[Entry, ...]]:
        """List many prefixes, concurrently for those not in the cache."""
        wanted = list(dict.fromkeys(p.strip("/") for p in prefixes))
        out: dict[str, tuple[Entry, ...]] = {}
        todo = []
        for p in wanted:
            hit = None if refresh else self._cached(p)
            if hit is None:
                todo.append(p)
            else:
                out[p] = hit
        if todo:
            with ThreadPoolExecutor(max_workers=min(max_workers, len(todo))) as pool:
                for p, entries in zip(todo, pool.map(self._list_remote, todo), strict=True):
                    self._store(p, entries)
                    out[p] = entries
        return {p: out[p] for p in wanted}

    def _find_remote(self, prefix: str) -> tuple[Entry, ...]:
        self.requests["find"] += 1
        path = self.path(prefix)
        log.debug("finding all files under %s", self.url(prefix))
        try:
            raw = self._list_level(path, recursive=True)
        except StorageError:
            raise
        except FileNotFoundError:
            return ()
        except transport_errors() as exc:
            raise transport_error(self.url(prefix), exc, "list") from exc
        return self._to_entries(raw)

    def find(self, prefix: str, *, refresh: bool = False) -> tuple[Entry, ...]:
        """All files below ``prefix`` (recursive; one paginated request on S3), cached like ``ls``.

        Use it only for small subtrees (one plate's analysis or embedding files), never for a
        project: that is what the per-level listings are for.
        """
        prefix = prefix.strip("/")
        return self._through_cache("find:" + prefix, lambda: self._find_remote(prefix), refresh)

    def find_many(
        self, prefixes: Iterable[str], *, max_workers: int = 16
    ) -> dict[str, tuple[Entry, ...]]:
        """``find`` for many small subtrees, concurrently."""
        wanted = list(dict.fromkeys(p.strip("/") for p in prefixes))
        if len(wanted) <= 1:
            return {p: self.find(p) for p in wanted}
        with ThreadPoolExecutor(max_workers=min(max_workers, len(wanted))) as pool:
            return dict(zip(wanted, pool.map(self.find, wanted), strict=True))

    def refresh(self) -> None:
        """Forget every cached listing of this root, in memory and on disk.

        The on-disk cache of the root is removed as a whole, so listings that another process
        cached are forgotten too (``intake-cpg --refresh``).
        """
        with self._lock:
            self._memory.clear()
        disk = self._disk()
        if disk is not None:
            disk.clear()
        if self._fs is not None and hasattr(self._fs, "invalidate_cache"):
            self._fs.invalidate_cache()

    # -- objects --------------------------------------------------------------------------
    def info(self, key: str) -> dict[str, Any]:
        """HEAD one object: returns ``{"key", "url", "size", "etag"}``."""
        self.requests["head"] += 1
        try:
            if self.protocol in ("s3", "s3a"):
                raw = self.fs.info(self.path(key), refresh=True)
            else:
                raw = self.fs.info(self.path(key))
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {self.url(key)}") from exc
        except transport_errors() as exc:
            raise transport_error(self.url(key), exc, "read the metadata of") from exc
        return {
            "key": key,
            "url": self.url(key),
            "size": raw.get("size"),
            "etag": _clean_etag(raw.get("ETag") or raw.get("etag")),
        }

    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> Any:
        """Open one object (a file-like object, to be used as a context manager)."""
        self.requests["open"] += 1
        return self.fs.open(self.path(key), mode, **kwargs)

    def memory_listings(
        self, adopt: Mapping[str, tuple[float, tuple[Entry, ...]]] | None = None
    ) -> dict[str, tuple[float, tuple[Entry, ...]]]:
        """The listings cached in memory (``{prefix: (time, entries)}``), after taking those of
        ``adopt`` that this storage lacks: how a pickled catalog carries its listings along."""
        with self._lock:
            for prefix, hit in (adopt or {}).items():
                self._memory.setdefault(prefix, hit)
            return dict(self._memory)


def write_atomic(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` to ``url`` whole or not at all.

    A local file goes through :func:`~intake_cpg.diskcache.atomic_write` (a temporary file
    renamed over it: readers see the old file or the new one, never a part) and keeps its
    permissions; an object store replaces an object in one request anyway.

    >>> import os, tempfile
    >>> fn = os.path.join(tempfile.mkdtemp(), "c.yaml")
    >>> write_atomic(fn, b"sources: {}"); open(fn).read()
    'sources: {}'
    """
    from .diskcache import atomic_write

    protocol = protocol_of(url)
    if protocol != "file":
        fs, path = filesystem(url, storage_options)
        fs.pipe_file(path, data)
        return
    target = os.path.abspath(os.path.expanduser(split_protocol(url)[1]))
    if os.path.isdir(target):
        raise StorageError(f"cannot write {url!r}: it is a folder; name the file to write")
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    atomic_write(target, data, fsync=True)
    os.chmod(target, mode)


_SHARED: dict[str, Storage] = {}
_SHARED_LOCK = threading.Lock()


def get_storage(
    urlpath: str = DEFAULT_ROOT,
    storage_options: Mapping[str, Any] | None = None,
    *,
    listing_ttl: float = 3600.0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Storage:
    """The process-wide :class:`Storage` for a root and options.

    Catalog levels opened from one another share it, so a listing made while opening a
    project is not made again while opening one of its sources.
    """
    ident = json.dumps(
        [
            urlpath.rstrip("/"),
            dict(storage_options or {}),
            listing_ttl,
            os.fspath(cache_dir) if cache_dir is not None else None,
        ],
        sort_keys=True,
        default=repr,
    )
    with _SHARED_LOCK:
        st = _SHARED.get(ident)
        if st is None:
            st = Storage(urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir)
            _SHARED[ident] = st
        return st
