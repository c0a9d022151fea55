"""S3-style ETags: compute them from bytes, infer multipart part sizes, verify objects.

An S3 ETag is the hex MD5 of the object when it was uploaded in one request, and
``<md5 of the concatenated binary MD5s of each part>-<number of parts>`` when it was
uploaded in parts. The part size is not recorded, so a deep check infers it from the
number of parts and the object size (:func:`etag_part_size`).

>>> compute_etag(b"hello")
'5d41402abc4b2a76b9719d911017c592'
>>> compute_etag(b"abcdefgh", part_size=4)
'cb93ad6c9c920e2602b79a11ded63ddb-2'
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import EtagMismatchError, ParameterError, StorageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from .manifest import ManifestRecord
    from .storage import Storage

__all__ = [
    "COMMON_PART_SIZES",
    "EtagHasher",
    "ObjectCheck",
    "check_object",
    "compute_etag",
    "verify_manifest",
    "verify_files",
    "verify_object",
    "etag_part_count",
    "etag_part_size",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Part sizes uploaders commonly use: S3 minimum, aws cli default, s3fs 50 MiB, and others.
COMMON_PART_SIZES: tuple[int, ...] = (5 * MiB, 8 * MiB, 16 * MiB, 50 * MiB, 64 * MiB, 100 * MiB)
#: Chunk size used when hashing a stream (bounded memory whatever the part size).
_READ_CHUNK = 1 * MiB


class EtagHasher:
    """Incremental S3 ETag of a byte stream for one part size (None: plain MD5).

    >>> h = EtagHasher(part_size=4); h.update(b"abcd"); h.update(b"efgh"); h.hexdigest()
    'cb93ad6c9c920e2602b79a11ded63ddb-2'
    """

    def __init__(self, part_size: int | None = None) -> None:
        if part_size is not None and part_size <= 0:
            raise ParameterError(
                f"part_size={part_size!r} is not valid: expected a positive number of bytes "
                "(e.g. 8388608 for 8 MiB), or None for a single-part ETag"
            )
        self.part_size = part_size
        self._whole = hashlib.md5(usedforsecurity=False)
        self._part = hashlib.md5(usedforsecurity=False)
        self._in_part = 0
        self._digests: list[bytes] = []

    def update(self, chunk: bytes) -> None:
        """Feed the next bytes of the object."""
        self._whole.update(chunk)
        if self.part_size is None:
            return
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.part_size - self._in_part)
            self._part.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self.part_size:
                self._digests.append(self._part.digest())
                self._part = hashlib.md5(usedforsecurity=False)
                self._in_part = 0

    def hexdigest(self) -> str:
        """The ETag of everything fed so far."""
        digests = list(self._digests)
        if self._in_part or not digests:
            digests.append(self._part.digest())
        if self.part_size is None or len(digests) == 1:
            return self._whole.hexdigest()
        joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(digests)}"


def hash_stream(stream: BinaryIO, hashers: Iterable[EtagHasher]) -> int:
    """Feed ``stream`` to its end into every hasher in one pass; return the byte count."""
    hashers = list(hashers)
    total = 0
    while chunk := stream.read(_READ_CHUNK):
        total += len(chunk)
        for h in hashers:
            h.update(chunk)
    return total


def compute_etag(
    data: bytes | bytearray | memoryview | BinaryIO, part_size: int | None = None
) -> str:
    """Return the S3 ETag of ``data`` (bytes or a binary file object read to its end).

    With ``part_size`` None, or when the data fits in a single part, the ETag is the
    plain MD5 hex digest. Otherwise the data is split in parts of ``part_size`` bytes
    (the last one shorter) and the ETag is ``<md5 of concatenated part digests>-<N>``.
    File objects are hashed in bounded chunks, so large objects do not load into memory.

    >>> compute_etag(b"")
    'd41d8cd98f00b204e9800998ecf8427e'
    >>> compute_etag(b"abcdefgh", part_size=8)  # one part: plain md5
    'e8dc4081b13434b45189a720b77b6818'
    >>> import hashlib
    >>> parts = hashlib.md5(b"abc").digest() + hashlib.md5(b"def").digest() + hashlib.md5(b"g").digest()
    >>> compute_etag(b"abcdefg", part_size=3) == hashlib.md5(parts).hexdigest() + "-3"
    True
    """
    hasher = EtagHasher(part_size)
    if isinstance(data, (bytes, bytearray, memoryview)):
        hasher.update(bytes(data))
    elif hasattr(data, "read"):
        hash_stream(data, [hasher])
    else:
        raise TypeError(
            f"compute_etag expects bytes or a binary file object, got {type(data).__name__}"
        )
    return hasher.hexdigest()


def etag_part_count(etag: str) -> int:
    """Return the number of parts an ETag encodes (1 for a plain MD5).

    >>> etag_part_count("cb93ad6c9c920e2602b79a11ded63ddb-2")
    2
    >>> etag_part_count('"5d41402abc4b2a76b9719d911017c592"')
    1
    """
    etag = etag.strip().strip('"')
    head, sep, tail = etag.rpartition("-")
    if not sep:
        return 1
    if not tail.isdigit() or int(tail) < 1 or len(head) != 32:
        raise ParameterError(
            f"not an S3 ETag: {etag!r} (expected 32 hex digits, optionally '-<parts>', e.g. "
            "'5d41402abc4b2a76b9719d911017c592-3'); check the manifest's etag value"
        )
    return int(tail)


def etag_part_size(etag: str, size: int) -> list[int]:
    """Return candidate part sizes consistent with the ETag's part count and ``size``.

    A part size ``p`` fits ``N`` parts when ``ceil(size / p) == N``. Candidates are the
    common uploader part sizes plus ``ceil(size / N)`` rounded up to a whole MiB and the
    exact ``ceil(size / N)``, most likely first. A plain MD5 gives ``[]`` (no parts).

    >>> etag_part_size("0" * 32 + "-3", 20 * MiB) == [8 * MiB, 7 * MiB, 6990507]
    True
    >>> etag_part_size("0" * 32, 123)
    []
    """
    n = etag_part_count(etag)
    if n == 1:
        return []
    if size < n:
        return []
    exact = -(-size // n)
    rounded = -(-exact // MiB) * MiB
    candidates: list[int] = []
    for p in (*COMMON_PART_SIZES, rounded, exact):
        if p > 0 and -(-size // p) == n and p not in candidates:
            candidates.append(p)
    return candidates


# -- verification -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectCheck:
    """Outcome of checking one object against its expected ETag.

    ``status`` is one of ``ok``, ``mismatch``, ``missing``, ``no-etag``, ``error``.
    """

    url: str
    expected: str | None
    found: str | None
    status: str
    message: str = ""


def _normalise(etag: str | None) -> str | None:
    return etag.strip().strip('"').lower() if etag else None


def deep_etag(storage: Storage, key: str, expected: str | None, size: int | None = None) -> str:
    """Recompute an object's ETag from its bytes, in one streaming pass.

    For a multipart ``expected`` ETag every part size consistent with its part count and
    the object size is tried at once (:func:`etag_part_size`); the matching one is returned,
    else the ETag for the most likely part size (a mismatch).
    """
    if size is None:
        size = storage.info(key)["size"]
    sizes = etag_part_size(expected, int(size)) if expected and size is not None else []
    hashers = [EtagHasher(p) for p in sizes] or [EtagHasher(None)]
    with storage.open(key) as f:
        hash_stream(f, hashers)
    found = [h.hexdigest() for h in hashers]
    want = _normalise(expected)
    return want if want in found else found[0]


def _storage_for(
    storage_or_url: Storage | str, storage_options: Mapping[str, Any] | None
) -> Storage:
    from .storage import Storage

    if isinstance(storage_or_url, Storage):
        return storage_or_url
    return Storage(storage_or_url, storage_options)


def check_object(
    storage_or_url: Storage | str,
    key: str,
    expected_etag: str | None,
    *,
    deep: bool | None = False,
    storage_options: Mapping[str, Any] | None = None,
) -> ObjectCheck:
    """Check one object against ``expected_etag`` and report, never raising for the object.

    ``storage_or_url`` is a :class:`~intake_cpg.storage.Storage` or a root URL, ``key`` is
    relative to it. Without ``deep`` the ETag the server reports (one HEAD request) is
    compared; with ``deep`` the ETag is recomputed from the bytes, which also works for
    local copies and mirrors that do not keep S3 ETags; ``deep=None`` compares the reported
    ETag and recomputes only where the store reports none (local files).
    """
    storage = _storage_for(storage_or_url, storage_options)
    url = storage.url(key)
    expected = _normalise(expected_etag)
    try:
        info = storage.info(key)
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return ObjectCheck(url, expected, None, "missing", f"no object at {url}")
        return ObjectCheck(url, expected, None, "error", str(exc))
    if expected is None:
        return ObjectCheck(url, None, info["etag"], "no-etag", "the manifest records no ETag")
    if deep is None:
        deep = info["etag"] is None
    try:
        found = (
            deep_etag(storage, key, expected, info["size"]) if deep else _normalise(info["etag"])
        )
    except (OSError, ValueError) as exc:
        return ObjectCheck(url, expected, None, "error", f"could not read {url}: {exc}")
    if found is None:
        return ObjectCheck(
            url,
            expected,
            None,
            "error",
            f"{url} has no ETag (local files and some mirrors do not keep one); "
            "use deep=True to recompute it from the bytes",
        )
    if found != expected:
        return ObjectCheck(
            url,
            expected,
            found,
            "mismatch",
            f"ETag of {url} is {found!r}, the manifest expects {expected!r}",
        )
    return ObjectCheck(url, expected, found, "ok")


def verify_object(
    storage_or_url: Storage | str,
    key: str,
    expected_etag: str,
    deep: bool | None = None,
    *,
    subset: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Return the object's ETag if it matches ``expected_etag``, else raise.

    Raises :class:`~intake_cpg.errors.EtagMismatchError` (naming subset, URL, expected and
    found) when the ETags differ, :class:`~intake_cpg.errors.StorageError` when the object
    cannot be reached. By default (``deep=None``) the ETag the store reports is compared, and
    where it reports none (a local copy) the ETag is recomputed from the bytes.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "x.bin"), "wb").write(b"hello")
    >>> verify_object(d, "x.bin", "5d41402abc4b2a76b9719d911017c592", deep=True)
    '5d41402abc4b2a76b9719d911017c592'
    >>> verify_object(d, "x.bin", "0" * 32, deep=True, subset="demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    intake_cpg.errors.EtagMismatchError: subset 'demo': ETag mismatch for file://.../x.bin: ...
    """
    check = check_object(
        storage_or_url, key, expected_etag, deep=deep, storage_options=storage_options
    )
    label = f"subset {subset!r}: " if subset else ""
    if check.status == "mismatch":
        raise EtagMismatchError(
            f"{label}ETag mismatch for {check.url}: expected {check.expected!r}, found "
            f"{check.found!r}. The object changed since the manifest was written; use a "
            "manifest that matches the data or pass verify=False to load it anyway"
        )
    if check.status in ("missing", "error"):
        raise StorageError(f"{label}cannot verify {check.url}: {check.message}")
    if check.status == "no-etag":
        raise ParameterError(
            f"{label}no expected ETag given for {check.url}: pass the ETag the manifest "
            "records, or use verify_files, which warns and loads unverified"
        )
    return check.found or ""


def verify_files(
    storage_or_url: Storage | str,
    keys: Sequence[str],
    expected_etag: str | None,
    *,
    subset: str | None = None,
    deep: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str | None:
    """The one verify policy of entries that load with ``verify=True``.

    Exactly one file with an expected ETag: :func:`verify_object` (its ETag is returned; a
    mismatch raises :class:`~intake_cpg.errors.EtagMismatchError`). No expected ETag, or not
    exactly one file (one ETag cannot vouch for several): a warning names what is not
    verified, and ``None`` is returned, so the entry loads unverified.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "x.bin"), "wb").write(b"hello")
    >>> verify_files(d, ["x.bin"], "5d41402abc4b2a76b9719d911017c592", deep=True)
    '5d41402abc4b2a76b9719d911017c592'
    >>> verify_files(d, ["x.bin"], None, subset="demo") is None  # logs a warning
    True
    """
    storage = _storage_for(storage_or_url, storage_options)
    label = f"subset {subset!r}" if subset else "verify=True"
    shown = ", ".join(storage.url(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
    if not expected_etag:
        log.warning("%s: no ETag recorded; %s not verified", label, shown or "nothing")
        return None
    if len(keys) != 1:
        log.warning(
            "%s: one ETag cannot verify %d files; %s loaded unverified", label, len(keys), shown
        )
        return None
    return verify_object(storage, keys[0], expected_etag, deep, subset=subset)


def object_location(rec: ManifestRecord, root: str | None = None) -> tuple[str, str]:
    """``(storage root, key)`` of the object a record loads from.

    Under ``root`` (a mirror) the record's key; a bucket URL in its bucket; a chained URL
    (``simplecache::s3://...``) at its last layer, the object itself; a ``file://`` URL or a
    path where it is (absolute paths, not under the current folder).

    >>> from intake_cpg.manifest import parse_manifest
    >>> recs = parse_manifest('[{"subset": "a", "url": "simplecache::s3://b/k/x.parquet"},'
    ...                       ' {"subset": "b", "url": "file:///data/x.parquet"}]', "m")
    >>> object_location(recs[0]), object_location(recs[1])
    (('s3://b', 'k/x.parquet'), ('/', 'data/x.parquet'))
    """
    import os

    from fsspec.core import split_protocol

    from .manifest import split_storage_url

    if root or rec.bucket is not None:
        return rec.storage_root(root), rec.key
    target = rec.storage_url.rsplit("::", 1)[-1]
    bucket, key, _ = split_storage_url(target)
    if bucket is not None:
        return f"s3://{bucket}", key
    protocol, path = split_protocol(target)
    if (protocol or "file") == "file":
        return "/", os.path.abspath(os.path.expanduser(path)).lstrip("/")
    return rec.storage_root(root), rec.key


def verify_manifest(
    urlpath_or_records: str | Sequence[ManifestRecord],
    root: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    deep: bool = False,
    max_workers: int = 8,
) -> pandas.DataFrame:
    """Check every record of a manifest against the objects it points at, concurrently.

    Returns one row per record with columns ``subset, url, expected, found, status,
    message``; ``status`` is one of ``ok``, ``mismatch``, ``missing``, ``no-etag``,
    ``error``. ``root`` checks a mirror instead of the recorded location (same keys), and
    ``deep`` recomputes ETags from the bytes (needed for local copies).
    """
    import pandas

    from .manifest import read_manifest

    if isinstance(urlpath_or_records, str):
        records = read_manifest(urlpath_or_records, storage_options)
    else:
        records = tuple(urlpath_or_records)
    storages: dict[str, Storage] = {}
    lock = threading.Lock()

    def one(rec: ManifestRecord) -> dict[str, Any]:
        try:  # every record gets its own status, whatever goes wrong with another
            base, key = object_location(rec, root)
            with lock:
                if base not in storages:
                    storages[base] = _storage_for(base, storage_options)
                storage = storages[base]
            check = check_object(storage, key, rec.etag, deep=deep)
        except Exception as exc:  # one bad record must not hide the others' results
            log.warning("checking %s failed: %s", rec.subset, exc)
            check = ObjectCheck(rec.url, rec.etag, None, "error", str(exc))
        return {
            "subset": rec.subset,
            "url": check.url,
            "expected": check.expected,
            "found": check.found,
            "status": check.status,
            "message": check.message,
        }

    workers = max(1, min(int(max_workers), len(records) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(one, records))
    columns = ["subset", "url", "expected", "found", "status", "message"]
    frame = pandas.DataFrame(rows, columns=columns)
    log.info("verified %d objects: %s", len(frame), frame["status"].value_counts().to_dict())
    return frame
