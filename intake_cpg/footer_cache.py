"""A cache of parquet footers, keyed by the object version they were read from.

A full-width cpg0016 plate has 4,765 columns, and its parquet footer (the schema plus the
offsets of every column chunk) is over a megabyte: reading ten columns of many plates costs
mostly footers. :class:`FooterCache` keeps each footer, as a :class:`pyarrow.parquet.FileMetaData`,
in memory (a process-wide LRU bounded in bytes) and, when given a folder, on disk, so a second
process reads only the column chunks it needs.

A footer is keyed by ``(URL, ETag, size)`` of the object it came from. The ETag and size come
from the HEAD request s3fs makes anyway when it opens a file, and s3fs then reads every byte
range with ``If-Match: <that ETag>``; so a footer served from the cache always belongs to the
bytes being read. A replaced object has a new ETag and simply misses. Objects without an ETag
(local files) are not cached.

Disk entries live in a :class:`~intake_cpg.diskcache.DiskCache`: written atomically (temporary
file + rename), signed with the user's key (HMAC-SHA256 of key and payload, see
:func:`~intake_cpg.diskcache.signing_key`). An entry that cannot be read, fails its
signature, or names another key is logged, deleted and rebuilt from the object: the cache is
never trusted over the data, and an entry forged by someone who can write the folder is one.

>>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
>>> d = tempfile.mkdtemp()
>>> pq.write_table(pa.table({"Metadata_Plate": ["P1"], "x": [1.0]}), d + "/p.parquet")
>>> md = pq.read_metadata(d + "/p.parquet")
>>> cache = FooterCache(d + "/footers")
>>> cache.put("s3://b/p.parquet", "abc123", 1234, md)
>>> FooterCache(d + "/footers").get("s3://b/p.parquet", "abc123", 1234).num_columns
2
>>> cache.get("s3://b/p.parquet", "changed", 1234) is None  # a new ETag never sees the old footer
True
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.caching import KnownPartsOfAFile

from .diskcache import DiskCache
from .errors import ParameterError

log = logging.getLogger(__name__)

__all__ = [
    "FooterCache",
    "MEMORY_BUDGET",
    "column_ranges",
    "object_identity",
    "read_columns",
    "resolve_footer_cache",
]

#: Bytes of serialized footers kept in memory per process (least recently used dropped first).
MEMORY_BUDGET = 512 * 2**20
_FORMAT = 1


class _Memory:
    """Process-wide LRU of footers, bounded by their serialized size."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: collections.OrderedDict[tuple[str, str, int], tuple[Any, int]] = (
            collections.OrderedDict()
        )
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str, int]) -> Any:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            self.items.move_to_end(key)
            return hit[0]

    def put(self, key: tuple[str, str, int], metadata: Any, nbytes: int) -> None:
        if nbytes > self.budget:
            return
        with self.lock:
            old = self.items.pop(key, None)
            if old is not None:
                self.used -= old[1]
            self.items[key] = (metadata, nbytes)
            self.used += nbytes
            while self.used > self.budget and self.items:
                _, (_, n) = self.items.popitem(last=False)
                self.used -= n

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.used = 0


_MEMORY = _Memory(MEMORY_BUDGET)


def object_identity(fh: Any) -> tuple[str, int] | None:
    """``(etag, size)`` of an open fsspec file, from the HEAD made when it was opened.

    ``None`` when the file system reports no ETag (local files, some HTTP servers).
    """
    details = getattr(fh, "details", None)
    if not isinstance(details, dict):
        return None
    etag = details.get("ETag") or details.get("etag")
    size = details.get("size", getattr(fh, "size", None))
    if not etag or size is None:
        return None
    return str(etag).strip('"'), int(size)


class FooterCache:
    """Parquet footers by ``(url, etag, size)``: in memory, and on disk under ``directory``.

    Parameters
    ----------
    directory:
        Folder for the on-disk cache, shared by processes (dask workers, a later session).
        ``None`` keeps footers in this process's memory only.

    Instances are cheap and picklable (only the folder travels to dask workers); every
    instance in a process shares one memory LRU of :data:`MEMORY_BUDGET` bytes.
    ``stats`` counts ``hit_memory``, ``hit_disk``, ``miss``, ``stored`` and ``corrupt``.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = os.path.abspath(os.fspath(directory)) if directory is not None else None
        self.stats: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"FooterCache({self.directory!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FooterCache) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash(("FooterCache", self.directory))

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory = state["directory"]
        self.stats = collections.Counter()

    def __dask_tokenize__(self) -> Any:
        return ("FooterCache", self.directory)

    # -- keys and files -----------------------------------------------------------------------
    @staticmethod
    def _key(url: str, etag: str, size: int) -> tuple[str, str, int]:
        return (str(url), str(etag).strip('"'), int(size))

    def _disk(self) -> DiskCache | None:
        if self.directory is None:
            return None
        return DiskCache(
            self.directory,
            what="footer cache entry",
            then="reading the file",
            suffix=".footer",
            fanout=True,
            stats=self.stats,
            logger=log,
        )

    def _disk_key(self, key: tuple[str, str, int]) -> list[Any]:
        return ["footer", _FORMAT, *key]

    def _path(self, key: tuple[str, str, int]) -> str | None:
        """The file of ``key``'s disk entry (``None`` without a folder)."""
        disk = self._disk()
        return None if disk is None else disk.path(self._disk_key(key))

    # -- public -------------------------------------------------------------------------------
    def get(self, url: str, etag: str, size: int) -> pq.FileMetaData | None:
        """The footer of this version of ``url``, or ``None``."""
        key = self._key(url, etag, size)
        md = _MEMORY.get(key)
        if md is not None:
            self.stats["hit_memory"] += 1
            disk = self._disk()
            if (
                disk is not None and self._disk_key(key) not in disk
            ):  # learnt through another folder
                disk.put(self._disk_key(key), _serialize(md))
            return md
        md, nbytes = self._read_disk(key)
        if md is not None:
            self.stats["hit_disk"] += 1
            _MEMORY.put(key, md, nbytes)
            return md
        self.stats["miss"] += 1
        return None

    def put(self, url: str, etag: str, size: int, metadata: pq.FileMetaData) -> None:
        """Remember ``metadata`` as the footer of this version of ``url``."""
        key = self._key(url, etag, size)
        payload = _serialize(metadata)
        _MEMORY.put(key, metadata, len(payload))
        disk = self._disk()
        if disk is not None:
            disk.put(self._disk_key(key), payload)
        self.stats["stored"] += 1

    def load(self, fh: Any, url: str) -> pq.FileMetaData:
        """The footer of the open parquet file ``fh`` (of ``url``): cached, or read and cached."""
        ident = object_identity(fh)
        if ident is not None:
            md = self.get(url, *ident)
            if md is not None:
                return md
        md = pq.read_metadata(fh)
        if ident is not None:
            self.put(url, *ident, md)
        return md

    @staticmethod
    def clear_memory() -> None:
        """Forget every footer held in this process's memory (disk entries stay)."""
        _MEMORY.clear()

    # -- disk -----------------------------------------------------------------------------------
    def _read_disk(self, key: tuple[str, str, int]) -> tuple[pq.FileMetaData | None, int]:
        disk = self._disk()
        payload = None if disk is None else disk.get(self._disk_key(key))
        if disk is None or payload is None:
            return None, 0
        try:
            return pq.read_metadata(pa.BufferReader(payload)), len(payload)
        except (OSError, ValueError, pa.ArrowException) as exc:  # checksummed, yet not a footer
            disk.reject(self._disk_key(key), exc)
            return None, 0


def _serialize(metadata: pq.FileMetaData) -> bytes:
    sink = pa.BufferOutputStream()
    metadata.write_metadata_file(sink)
    return sink.getvalue().to_pybytes()


def resolve_footer_cache(value: Any) -> FooterCache | None:
    """The cache a ``footer_cache=`` option means.

    ``None``/``False``: no cache; ``True``: memory only; a folder path: memory and disk;
    a :class:`FooterCache`: itself.

    >>> resolve_footer_cache(None) is None, resolve_footer_cache(True)
    (True, FooterCache(None))
    >>> resolve_footer_cache(3)
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: footer_cache=3 is not valid: expected True (memory only), a folder path (memory and disk), a FooterCache, or None/False for no cache
    """
    if value is None or value is False:
        return None
    if value is True:
        return FooterCache()
    if isinstance(value, FooterCache):
        return value
    if isinstance(value, str | os.PathLike) and os.fspath(value).strip():
        return FooterCache(value)
    raise ParameterError(
        f"footer_cache={value!r} is not valid: expected True (memory only), a folder path "
        "(memory and disk), a FooterCache, or None/False for no cache"
    )


# -- reading the chosen column chunks of a file whose footer is known ---------------------------
#: Byte ranges closer than this are fetched as one request.
MAX_GAP = 64 * 2**10
#: Concurrent ranged GETs per file.
FETCH_THREADS = 8


def chunk_spans(
    metadata: pq.FileMetaData, columns: Iterable[str], row_groups: Iterable[int] | None = None
) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of the column chunks of ``columns`` (top-level names) in
    ``row_groups`` (all when ``None``), dictionary pages included, in file order per group."""
    wanted = set(columns)
    leaves = [
        i
        for i in range(metadata.num_columns)
        if metadata.schema.column(i).path.split(".", 1)[0] in wanted
    ]
    spans = []
    for rg in range(metadata.num_row_groups) if row_groups is None else row_groups:
        group = metadata.row_group(rg)
        for i in leaves:
            col = group.column(i)
            start = chunk_start(col)
            spans.append((start, start + col.total_compressed_size))
    return spans


def chunk_start(col: pq.ColumnChunkMetaData) -> int:
    """Where a column chunk starts in its file: its dictionary page, else its first data page."""
    start = col.data_page_offset
    if col.has_dictionary_page and col.dictionary_page_offset:
        start = min(start, col.dictionary_page_offset)
    return start


def column_ranges(metadata: pq.FileMetaData, columns: Iterable[str]) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` byte ranges of the column chunks of ``columns`` (all row groups)."""
    from .fetch import coalesce

    return coalesce(chunk_spans(metadata, columns), MAX_GAP)


def read_columns(fh: Any, metadata: pq.FileMetaData, columns: list[str]) -> pa.Table:
    """``columns`` of the open parquet file ``fh`` whose footer is ``metadata``.

    The column chunks are fetched concurrently (one ranged read each, neighbours merged) with
    the file's own fetcher, so s3fs reads them with ``If-Match`` on the ETag the file was
    opened with (the one the footer is keyed by), then served to pyarrow from fsspec's
    :class:`~fsspec.caching.KnownPartsOfAFile`. A read outside the fetched ranges (which
    pyarrow does not make) falls back to reading the columns through ``fh`` as usual.
    """
    ranges = column_ranges(metadata, columns)
    cache = getattr(fh, "cache", None)
    fetch = getattr(cache, "fetcher", None)
    if fetch is None or len(ranges) < 2:
        return pq.ParquetFile(fh, metadata=metadata, pre_buffer=True).read(columns=columns)
    with ThreadPoolExecutor(min(FETCH_THREADS, len(ranges))) as pool:
        blobs = list(pool.map(lambda r: fetch(r[0], r[1]), ranges))
    parts = dict(zip(ranges, blobs, strict=True))
    fh.cache = KnownPartsOfAFile(fh.blocksize, fetch, fh.size, data=parts, strict=True)
    try:
        return pq.ParquetFile(fh, metadata=metadata).read(columns=columns)
    except ValueError:  # KnownPartsOfAFile(strict=True): a read outside the fetched ranges
        log.debug("read outside the prefetched column ranges of %s; reading through", fh)
    finally:
        fh.cache = cache
    return pq.ParquetFile(fh, metadata=metadata, pre_buffer=True).read(columns=columns)
