"""Reading parquet files from S3 at the speed of the network: few round trips, many in flight.

Per file, cold (size and ETag known from the listing, so no HEAD):

1. one suffix-range GET of the last ``N`` bytes (``N`` learnt from the first file's footer,
   grown when a footer is longer; :func:`intake_cpg.fetch.read_tail`);
2. the chosen columns' chunks found in the footer bytes without decoding the footer
   (:func:`intake_cpg.thrift.find_columns`), then fetched in one concurrent batch of ranges;
3. decoded by pyarrow from a compact in-memory file: those chunks and a slim footer of only
   those columns (:func:`intake_cpg.thrift.slim_footer`).

A file whose footer the scan cannot read with certainty (nested columns, unusual writers) is
decoded with pyarrow's own footer reader instead, as is every read of all columns (then the
whole object is one GET: the footer comes with it). Every request is pinned to one ETag.

:class:`WarmCache` keeps, per (URL, ETag, size, column set), what step 2 learnt: the chunk
ranges and the slim footer (``mode="ranges"``: a warm read is one round trip of chunk ranges,
no footer bytes, no footer decode), or the compact file itself (``mode="chunks"``: no request
at all; ``mode="both"`` writes both and reads the compact file first). Entries are tiny (a
few KB per file), on disk, written atomically and loaded lazily.

Many files are read concurrently from one call (:func:`read_parquet`): a dask task that reads
a batch of small files keeps up to :data:`intake_cpg.fetch.MAX_IN_FLIGHT` requests in flight.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import hashlib
import io
import itertools
import json
import logging
import os
import struct
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import fetch, polars_frames, thrift
from .errors import DataReadError, ParameterError, StorageError
from .footer_cache import chunk_spans

log = logging.getLogger(__name__)

__all__ = [
    "FileRead",
    "StackedRead",
    "WarmCache",
    "read_footer",
    "read_parquet",
    "resolve_warm_cache",
    "tail_hint",
]

#: Suffix bytes read from the first file, before any footer length is known: a gallery
#: plate's footer (1.4-3 MB for 4,765 columns) in one request, not a 64 KiB probe and then
#: the rest (one round trip fewer before a load can start). Later files read what the
#: footers seen so far need (:func:`tail_hint`), never this guess.
FIRST_TAIL = 4 * 2**20
#: Files up to this size are read whole in one GET when their size is known.
WHOLE_FILE = 1 * 2**20
#: Whole-file reads up to this size are decoded from one contiguous buffer.
WHOLE_READ_LIMIT = 512 * 2**20
#: Column selections larger than this use pyarrow's footer reader (the scan is per column).
MAX_SCAN_COLUMNS = 64
_MAGIC = b"PAR1"
#: Decode whole flat files with polars (``False``: always pyarrow; the benchmark compares both).
POLARS = os.environ.get("INTAKE_CPG_DECODER", "polars") != "pyarrow"
_TAIL: dict[str, int | None] = {"n": None}  # learnt from the footers read so far
_TAIL_LOCK = threading.Lock()


def tail_hint(footer_length: int | None = None) -> int:
    """The suffix length read per file; learn from ``footer_length`` (bytes) when given.

    Before any footer is seen it is :data:`FIRST_TAIL`; after, the largest footer seen
    with a margin.
    """
    if footer_length is not None:
        want = footer_length + 8 + max(4096, footer_length // 32)
        with _TAIL_LOCK:
            if _TAIL["n"] is None or want > _TAIL["n"]:
                _TAIL["n"] = want
    n = _TAIL["n"]
    return FIRST_TAIL if n is None else n


@dataclass(slots=True)
class FileRead:
    """What one file gave: the table of its chosen columns and the column names it has.

    ``table`` is a :class:`pyarrow.Table`, a pandas frame (a large piece decoded a few
    columns at a time, see :func:`_read_in_column_batches`), or a
    :class:`~intake_cpg.polars_frames.PolarsFile` for whole flat files
    (polars decodes 4,765 columns about four times faster than pyarrow; see
    :mod:`intake_cpg.polars_frames`).

    ``names`` is every column of the file when ``all_names``; after a scan-only read it is
    the chosen columns the file has (a scan cannot list the others).
    """

    url: str
    table: Any  # a pyarrow Table, a pandas DataFrame, or a polars_frames.PolarsFile
    names: tuple[str, ...]
    all_names: bool
    requests: int = 0

    def take(self) -> Any:
        """The table, dropping this object's reference (so converting it can free it)."""
        table, self.table = self.table, None
        return table


@dataclass(slots=True)
class StackedRead:
    """Whole flat files with the same columns and dtypes, decoded together by polars: one
    frame of all their rows in the files' order, ``lengths[i]`` rows of file ``urls[i]``
    (see :func:`intake_cpg.polars_frames.decode_stacked`)."""

    urls: tuple[str, ...]
    table: Any  # a polars_frames.PolarsFile
    lengths: tuple[int, ...]
    requests: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.table.names)

    def split(self) -> list[FileRead]:
        """One :class:`FileRead` per file, each a zero-copy slice of the frame (for a
        partition that reads file by file after all, e.g. columns in another order)."""
        starts = list(itertools.accumulate(self.lengths, initial=0))[:-1]
        table, self.table = self.table, None
        return [
            FileRead(url, polars_frames.sliced(table, start, n), table.names, True, req)
            for url, start, n, req in zip(
                self.urls, starts, self.lengths, self.requests, strict=True
            )
        ]


# --------------------------------------------------------------------------------------------
# the warm cache
# --------------------------------------------------------------------------------------------
class WarmCache:
    """Chunk ranges and slim footers (or compact files) per (URL, ETag, size, columns).

    The entries live in a :class:`~intake_cpg.diskcache.DiskCache` under ``directory`` (the
    project's one cache format: written whole or not at all, signed with the user's key,
    checked against their own key when read; a bad one is logged, deleted and rebuilt), one
    per file and one per distinct column schema (files with the same columns share it).
    ``max_bytes`` bounds the folder (least recently used entries go first), ``memory_bytes``
    the entries kept in memory.

    >>> import tempfile
    >>> c = WarmCache(tempfile.mkdtemp())
    >>> c.put(("s3://b/k", "e1", 10, ("x",)), {"ranges": [[4, 8]]}, b"rest", b"schema")
    >>> c.get(("s3://b/k", "e1", 10, ("x",)))[0]["ranges"]
    [[4, 8]]
    >>> c.get(("s3://b/k", "e2", 10, ("x",))) is None  # another ETag never sees the entry
    True
    """

    MODES = ("ranges", "chunks", "both")

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        mode: str = "ranges",
        max_bytes: int = 1 * 2**30,
        memory_bytes: int = 64 * 2**20,
    ) -> None:
        from .diskcache import DiskCache

        if mode not in self.MODES:
            raise ParameterError(f"warm cache mode={mode!r}; expected one of {self.MODES}")
        self.directory = os.fspath(directory)
        self.mode = mode
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes

        def part(name: str, bound: int | None) -> DiskCache:
            return DiskCache(os.path.join(self.directory, name), what=f"warm cache {name[:-1]}",
                             then="reading cold", suffix=".cpgw", fanout=True, max_bytes=bound,
                             logger=log)  # fmt: skip

        # per-object entries (bounded), the column schemas they share, a bare URL's last version
        self.disk, self.schemas, self.versions = (
            part("objects", max_bytes),
            part("schemas", None),
            part("versions", max_bytes // 64),
        )
        self._mem: collections.OrderedDict[str, tuple[dict[str, Any], bytes, bytes]] = (
            collections.OrderedDict()
        )
        self._used = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WarmCache({self.directory!r}, mode={self.mode!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "mode": self.mode, "max_bytes": self.max_bytes,
                "memory_bytes": self.memory_bytes}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("directory"), **state)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WarmCache) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash(tuple(self.__getstate__().items()))

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.directory, self.mode)

    @staticmethod
    def _canon(key: tuple[Any, ...]) -> list[Any]:
        return json.loads(json.dumps(list(key)))

    def get(self, key: tuple[Any, ...]) -> tuple[dict[str, Any], bytes, bytes] | None:
        """``(header, body, schema part)`` of ``key``, or ``None``."""
        name = json.dumps(list(key))
        with self._lock:
            hit = self._mem.get(name)
            if hit is not None:
                self._mem.move_to_end(name)
                return hit
        payload = self.disk.get(self._canon(key))
        if payload is None:
            return None
        try:
            (hlen,) = struct.unpack("<I", payload[:4])
            header = json.loads(payload[4 : 4 + hlen])
            body = payload[4 + hlen :]
            schema = self.schemas.get(header["schema"])
            if schema is None or hashlib.sha256(schema).hexdigest() != header["schema"]:
                raise ValueError("its schema part is missing")
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            self.disk.reject(self._canon(key), exc)
            return None
        self._remember(name, (header, body, schema))
        return header, body, schema

    def last_version(self, url: str, columns: Sequence[str]) -> tuple[str, int] | None:
        """``(etag, size)`` of the version of ``url`` last cached for ``columns``, or ``None``
        (for bare URLs, whose version no listing gave)."""
        doc = self.versions.get_json([url, list(columns)])
        try:
            return (str(doc["etag"]), int(doc["size"])) if doc is not None else None
        except (KeyError, TypeError, ValueError) as exc:
            self.versions.reject([url, list(columns)], exc)
            return None

    def remember_version(self, url: str, columns: Sequence[str], etag: str, size: int) -> None:
        """Record the version of ``url`` whose entries were just stored."""
        self.versions.put_json([url, list(columns)], {"etag": etag, "size": size})

    @staticmethod
    def _cost(item: tuple[dict[str, Any], bytes, bytes]) -> int:
        return len(item[1]) + 256 * len(item[0].get("ranges", ())) + 512

    def _remember(self, name: str, item: tuple[dict[str, Any], bytes, bytes]) -> None:
        with self._lock:
            self._mem[name] = item
            self._used += self._cost(item)
            while self._used > self.memory_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._used -= self._cost(old)

    def put(self, key: tuple[Any, ...], header: dict[str, Any], body: bytes, schema: bytes) -> None:
        """Store ``header`` (JSON-able) and ``body`` under ``key``; ``schema`` once per content."""
        sid = hashlib.sha256(schema).hexdigest()
        if sid not in self.schemas:
            self.schemas.put(sid, schema)
        head = json.dumps({**header, "schema": sid}).encode()
        self.disk.put(self._canon(key), struct.pack("<I", len(head)) + head + body)
        self._remember(json.dumps(list(key)), (json.loads(head), body, schema))


def resolve_warm_cache(value: Any) -> WarmCache | None:
    """``None``/``False``: no cache; ``True``: the user cache folder; a path; a WarmCache."""
    if value is None or value is False:
        return None
    if isinstance(value, WarmCache):
        return value
    if value is True:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return WarmCache(os.path.join(base, "intake-cpg", "warm"))
    if isinstance(value, str | os.PathLike):
        return WarmCache(value)
    raise ParameterError(
        f"cache={value!r} is not a folder, True, False or a WarmCache; pass a folder path"
    )


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
class _KnownParts(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only the fetched ranges are known (ranges
    come and go with :meth:`add` and :meth:`drop` while a large piece decodes)."""

    def __init__(self, size: int, parts: dict[tuple[int, int], bytes], url: str) -> None:
        self._size, self.url, self.pos = size, url, 0
        self.parts = parts
        self._index()

    def _index(self) -> None:
        self.starts = sorted(self.parts)
        self._keys = [s for s, _ in self.starts]

    def add(self, parts: dict[tuple[int, int], bytes]) -> None:
        self.parts.update(parts)
        self._index()

    def drop(self) -> None:
        """Forget every range (their bytes go)."""
        self.parts.clear()
        self._index()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self._size}[whence] + offset
        return self.pos

    def read(self, n: int = -1) -> bytes | memoryview:
        end = self._size if n is None or n < 0 else min(self.pos + n, self._size)
        i = bisect.bisect_right(self._keys, self.pos) - 1
        if i >= 0:
            s, e = self.starts[i]
            blob = self.parts[(s, e)]
            if self.pos >= s and end <= e:
                out = memoryview(blob)[self.pos - s : end - s]  # a view: no copy
                self.pos = end
                return out
        raise DataReadError(
            f"{self.url}: bytes {self.pos}-{end} were not fetched (the footer points outside "
            "the column chunks it lists); the file may be corrupt"
        )


def _compact(found_or_ranges: Sequence[tuple[int, int]], got: dict[tuple[int, int], bytes],
             footer: bytes) -> bytes:  # fmt: skip
    """``PAR1 + the chunks in order + footer + length + PAR1``."""
    pieces = [_MAGIC]
    for s, e in found_or_ranges:
        for (gs, ge), blob in got.items():
            if gs <= s and e <= ge:
                pieces.append(blob[s - gs : e - gs])
                break
        else:  # pragma: no cover - read_ranges returns every range asked for
            raise AssertionError(f"range {s}-{e} not fetched")
    pieces += [footer, struct.pack("<I", len(footer)), _MAGIC]
    return b"".join(pieces)


def _decode_compact(url: str, data: bytes) -> pa.Table:
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataReadError(
            f"cannot decode the chosen columns of {url}: {type(exc).__name__}: {exc}; the file "
            "may be corrupt (or written in a way the fast path misreads: please report it)"
        ) from exc


def _footer_length(url: str, tail: bytes) -> int:
    if len(tail) < 12 or tail[-4:] != _MAGIC:
        raise DataReadError(
            f"{url} is not a parquet file (it does not end with 'PAR1'); it may be truncated or "
            "in another format: check its size, or pass format="
        )
    return struct.unpack("<I", tail[-8:-4])[0]


def _metadata(url: str, footer_and_len: bytes) -> pq.FileMetaData:
    try:
        return pq.read_metadata(pa.BufferReader(_MAGIC + footer_and_len))
    except (pa.ArrowException, OSError) as exc:
        raise DataReadError(f"cannot read the parquet footer of {url}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
@dataclass
class _Job:
    url: str
    size: int | None
    etag: str | None
    version_id: str | None
    columns: tuple[str, ...] | None
    row_groups: tuple[int, ...] | None
    requests: int = 0
    footers: Any = None  # a footer_cache.FooterCache: full footers decoded anyway go there


def _keep_footer(job: _Job, md: pq.FileMetaData) -> None:
    if job.footers is not None and job.etag and job.size is not None:
        job.footers.put(job.url, job.etag, job.size, md)


async def _read_one(fs: Any, job: _Job, cache: WarmCache | None) -> Any:
    """Fetch what ``job`` needs; return a closure that decodes it (run off the event loop)."""
    cols = job.columns
    key = None
    if cache is not None and cols is not None and not (job.etag and job.size is not None):
        # a bare URL (no listing gave its version): look up the version last cached for it,
        # and check it is still current with one conditional 1-byte GET; none: read cold
        seen = cache.last_version(job.url, cols)
        if seen is not None:
            try:
                job.etag, job.size = await fetch.head(fs, job.url, job.version_id, if_match=seen[0])
                job.requests += 1
            except StorageError:  # replaced since: a cold read of the new version
                job.etag = job.size = None
    if cache is not None and cols is not None and job.etag and job.size is not None:
        key = (job.url, job.etag.strip('"'), job.size, cols)
        hit = None
        for kind in ("chunks", "ranges") if cache.mode == "both" else (cache.mode,):
            hit = hit or cache.get((*key, kind))
        if hit is not None:
            header, body, schema = hit
            if header.get("mode") == "chunks":
                return lambda: _finish(job, _decode_compact(job.url, body), header["names"], False)
            obj = fetch.Pinned(job.url, *fs.split_path(job.url)[:2], job.size, job.etag,
                               job.version_id)  # fmt: skip
            ranges = [tuple(r) for r in header["ranges"]]
            got = await fetch.read_ranges(fs, obj, ranges)
            job.requests += len(got)
            data = _compact(ranges, got, schema + body)
            return lambda: _finish(job, _decode_compact(job.url, data), header["names"], False)

    whole = cols is None and job.row_groups is None
    if job.size is not None and (whole or job.size <= WHOLE_FILE):  # one GET, footer included
        tail, obj = await fetch.read_tail(fs, job.url, job.size, size=job.size, etag=job.etag,
                                          version_id=job.version_id)  # fmt: skip
        job.requests += 1
        if whole:
            return _Whole(job, tail)
    else:
        n = tail_hint()
        tail, obj = await fetch.read_tail(fs, job.url, n, size=job.size, etag=job.etag,
                                          version_id=job.version_id)  # fmt: skip
        job.requests += 1
    flen = _footer_length(job.url, tail)
    tail_hint(flen)
    if flen + 8 > obj.size - 4:
        raise DataReadError(f"{job.url}: footer length {flen} exceeds the file ({obj.size} B)")
    if flen + 8 > len(tail):  # the footer is longer than the suffix read: fetch the rest
        start = obj.size - flen - 8
        got = await fetch.read_ranges(fs, obj, [(start, obj.size - len(tail))], gap=0)
        job.requests += 1
        tail = got[(start, obj.size - len(tail))] + tail
    footer = tail[len(tail) - flen - 8 : len(tail) - 8]
    if whole and obj.size <= WHOLE_READ_LIMIT:  # the rest of the file in one more batch
        if obj.size > len(tail):
            rest = (0, obj.size - len(tail))
            got = await fetch.read_ranges(fs, obj, [rest], gap=0)
            job.requests += 1
            tail = got[rest] + tail
        return _Whole(job, tail)

    if key is None and cache is not None and cols is not None and obj.etag:
        key = (job.url, obj.etag, obj.size, cols)  # the version the first answer gave
    found = None
    if cols is not None and len(cols) <= MAX_SCAN_COLUMNS and job.row_groups is None:
        found = thrift.find_columns(footer, cols)
        if found is not None and len(found.columns) != len(cols):
            found = None  # some column not found: only a full decode can tell "absent"
    if found is not None:
        ranges = found.ranges
        got = await fetch.read_ranges(fs, obj, ranges)
        job.requests += len(got)
        schema, rest = thrift.slim_footer(found)
        data = _compact(ranges, got, schema + rest)
        names = [c.name for c in found.columns]
        if key is not None and cache is not None:
            cache.remember_version(job.url, cols, obj.etag, obj.size)
            if cache.mode in ("chunks", "both"):
                cache.put((*key, "chunks"), {"mode": "chunks", "names": names}, data, schema)
            if cache.mode in ("ranges", "both"):
                header = {"mode": "ranges", "names": names, "ranges": ranges}
                cache.put((*key, "ranges"), header, rest, schema)
        return lambda: _finish(job, _decode_compact(job.url, data), names, False)

    md = await asyncio.to_thread(_metadata, job.url, tail[len(tail) - flen - 8 :])
    _keep_footer(job, md)
    names = md.schema.to_arrow_schema().names
    present = list(names) if cols is None else [c for c in cols if c in set(names)]
    rgs = list(range(md.num_row_groups)) if job.row_groups is None else list(job.row_groups)
    batches = _decode_batches(md, present, rgs)
    windows = _fetch_windows(md, rgs, batches or [present])
    got = await fetch.read_ranges(fs, obj, windows[0][1], gap=-1) if windows[0][1] else {}
    job.requests += len(got)

    def decode() -> FileRead:
        view = _KnownParts(obj.size, got, job.url)
        ahead = _FetchAhead(fs, obj, windows, view, job)
        pf = pq.ParquetFile(view, metadata=md, pre_buffer=False)
        try:
            table = _read_in_column_batches(pf, rgs, present, md, batches, ahead)
        except StorageError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataReadError(f"cannot decode {job.url}: {type(exc).__name__}: {exc}") from exc
        finally:
            ahead.close()  # the fetched bytes go as soon as they are decoded
        return _finish(job, table, names, True)

    return decode


#: Bytes per request of a footer-planned read (whole column chunks, so never cut and
#: joined again): the unit of a large piece's fetch.
PIECE_REQUEST_BYTES = 4 * 2**20
#: Compressed bytes of a large piece fetched together, one such window ahead of its decode:
#: a piece holds two windows of fetched bytes at a time, never the whole piece.
FETCH_WINDOW_BYTES = 4 * 2**20
#: Decoded sizes above which row groups are decoded a few columns at a time.
BATCHED_DECODE_BYTES = 64 * 2**20
#: Columns decoded together when decoding in batches, at most...
DECODE_BATCH_COLUMNS = 64
#: ...and about this many bytes of them in memory (pyarrow's pool keeps what a batch used).
DECODE_BATCH_BYTES = 8 * 2**20


def _decode_batches(
    md: pq.FileMetaData, present: Sequence[str], rgs: Sequence[int]
) -> list[list[str]] | None:
    """The column batches a piece is decoded in, or ``None`` to decode it whole.

    pyarrow's decode of a whole row group peaks at about twice the table it returns (its
    builders grow for all columns at once). So above :data:`BATCHED_DECODE_BYTES` in memory,
    a piece is decoded about :data:`DECODE_BATCH_BYTES` at a time (at most
    :data:`DECODE_BATCH_COLUMNS` columns).
    """
    in_memory = _group_bytes(md, present)
    size = sum(in_memory[g] for g in rgs)
    if size <= BATCHED_DECODE_BYTES or len(present) <= DECODE_BATCH_COLUMNS:
        return None
    width = max(1, min(DECODE_BATCH_COLUMNS, DECODE_BATCH_BYTES * len(present) // max(size, 1)))
    return [list(present[i : i + width]) for i in range(0, len(present), width)]


def _fetch_windows(
    md: pq.FileMetaData, rgs: Sequence[int], batches: Sequence[Sequence[str]]
) -> list[tuple[int, list[tuple[int, int]]]]:
    """Consecutive ``batches`` grouped into fetch windows of about :data:`FETCH_WINDOW_BYTES`
    of column chunks: ``(number of batches, request ranges)`` each, the requests whole
    chunks of about :data:`PIECE_REQUEST_BYTES` (:func:`intake_cpg.fetch.coalesce`) that
    hold no bytes of another window."""
    windows: list[tuple[int, list[tuple[int, int]]]] = []
    spans: list[tuple[int, int]] = []
    n = size = 0
    for cols in batches:
        more = chunk_spans(md, cols, rgs)
        spans += more
        n += 1
        size += sum(e - s for s, e in more)
        if size >= FETCH_WINDOW_BYTES:
            windows.append((n, spans))
            spans, n, size = [], 0, 0
    if n or not windows:
        windows.append((n, spans))
    # one window: small gaps merged, as for any read; several: no bytes of another window
    gap = fetch.MAX_GAP if len(windows) == 1 else 0
    return [(n, fetch.coalesce(spans, gap, PIECE_REQUEST_BYTES)) for n, spans in windows]


class _FetchAhead:
    """A piece's fetch windows (:func:`_fetch_windows`) fed to its decode: the first is in
    ``view`` already; when the decode reaches a window's first batch (:meth:`ready`), the
    previous window's bytes are dropped, this one's come in, and the next one's fetch starts
    on the event loop, so it arrives while this one decodes."""

    def __init__(
        self,
        fs: Any,
        obj: fetch.Pinned,
        windows: Sequence[tuple[int, list[tuple[int, int]]]],
        view: _KnownParts,
        job: _Job,
    ) -> None:
        self.fs, self.obj, self.view, self.job = fs, obj, view, job
        self.ranges = [r for _, r in windows]
        self.first = list(itertools.accumulate((n for n, _ in windows), initial=0))[:-1]
        self.window = 0
        self.next: Any = self._start(1)

    def _start(self, w: int) -> Any:
        if w >= len(self.ranges) or not self.ranges[w]:
            return None
        return fetch.submit(self.fs, fetch.read_ranges(self.fs, self.obj, self.ranges[w], gap=-1))

    def ready(self, batch: int) -> None:
        """Before decoding batch ``batch``: its window's bytes are in the view."""
        w = bisect.bisect_right(self.first, batch) - 1
        if w == self.window:
            return
        pending, self.next = self.next, None
        self.view.drop()
        got = pending.result() if pending is not None else {}
        self.job.requests += len(got)
        self.view.add(got)
        self.window = w
        self.next = self._start(w + 1)

    def close(self) -> None:
        if self.next is not None:
            self.next.cancel()
            self.next = None
        self.view.drop()


def _read_in_column_batches(
    pf: pq.ParquetFile,
    rgs: Sequence[int],
    present: Sequence[str],
    md: pq.FileMetaData,
    batches: Sequence[Sequence[str]] | None,
    ahead: _FetchAhead,
) -> pa.Table | pd.DataFrame:
    """``pf.read_row_groups(rgs, columns=present)``, in ``batches`` of columns when given
    (:func:`_decode_batches`).

    In batches, the features (:func:`_block_columns`) are copied straight into one
    preallocated 2-D block, pandas' own layout: the result is a pandas frame (where
    converting an Arrow table would copy it once more), and the peak stays near its size.
    Files whose pandas metadata stores an index get the decoded Arrow table. ``ahead`` feeds
    each batch's column chunks just before it decodes.
    """
    if batches is None:
        return pf.read_row_groups(rgs, columns=list(present), use_threads=False)
    schema = pf.schema_arrow
    decoded = _column_batches(pf, rgs, batches, ahead)
    floats, dtype = _block_columns(schema, present)
    if not floats:
        parts = list(decoded)
        fields = [f for p in parts for f in p.schema]
        columns = [c for p in parts for c in p.columns]
        del parts
        return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))
    rows = sum(md.row_group(g).num_rows for g in rgs)
    return _decode_into_block(
        decoded, present, floats, np.empty((len(floats), rows), dtype), schema
    )


def _block_columns(schema: pa.Schema, present: Sequence[str]) -> tuple[list[str], Any]:
    """The columns a large piece decodes into one block, and its dtype: the float columns of
    the commonest float type whose pandas metadata (if any) records that same NumPy type.
    None (an Arrow table instead) when the metadata stores an index, or when there are fewer
    than :data:`DECODE_BATCH_COLUMNS` of them."""
    from .readers import is_string_column, written_numpy_types

    written = written_numpy_types(schema)
    types = {c: schema.field(c).type for c in present}
    floats = [c for c in present if pa.types.is_floating(types[c]) and not is_string_column(c)]
    if written is None or not floats:
        return [], None
    common = collections.Counter(types[c] for c in floats).most_common(1)[0][0]
    dtype = np.dtype(common.to_pandas_dtype())
    floats = [c for c in floats if types[c] == common and written.get(c, dtype.name) == dtype.name]
    return (floats, dtype) if len(floats) >= DECODE_BATCH_COLUMNS else ([], None)


def _column_batches(
    pf: pq.ParquetFile,
    rgs: Sequence[int],
    batches: Sequence[Sequence[str]],
    ahead: _FetchAhead,
) -> Iterator[pa.Table]:
    """Each batch of columns decoded in turn, its chunks fed by ``ahead`` first."""
    for i, cols in enumerate(batches):
        ahead.ready(i)
        yield pf.read_row_groups(rgs, columns=list(cols), use_threads=False)


def _decode_into_block(
    batches: Iterator[pa.Table],
    present: Sequence[str],
    floats: Sequence[str],
    block: np.ndarray,
    schema: pa.Schema,
) -> pd.DataFrame:
    """The decoded ``batches`` as pandas, ``floats`` copied into ``block`` (a row each)."""
    from .readers import _parquet_frame, reorder_columns

    slot = {c: j for j, c in enumerate(floats)}
    rest_fields: list[pa.Field] = []
    rest_columns: list[pa.ChunkedArray] = []
    for part in batches:
        for field, col in zip(part.schema, part.columns, strict=True):
            j = slot.get(field.name)
            if j is None:
                rest_fields.append(field)
                rest_columns.append(col)
                continue
            at = 0
            for chunk in col.chunks:  # nulls become NaN, as pandas' conversion makes them
                block[j, at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                at += len(chunk)
        del part
    rows = block.shape[1]
    rest = pa.Table.from_arrays(
        rest_columns, schema=pa.schema(rest_fields, metadata=schema.metadata)
    )
    others = (
        _parquet_frame(rest, None, None) if rest_fields else pd.DataFrame(index=pd.RangeIndex(rows))
    )
    features = pd.DataFrame(block.T, columns=pd.Index(list(floats), dtype=object), copy=False)
    # the batches went through pyarrow's pool, which keeps freed memory for reuse: give it back
    # once per large piece (bench worker peak 781-783 MiB with this in two runs, 796-838 without)
    pa.default_memory_pool().release_unused()
    return reorder_columns(pd.concat([others, features], axis=1), list(present))


def _finish(job: _Job, table: Any, names: Sequence[str], complete: bool) -> FileRead:
    return FileRead(job.url, table, tuple(names), complete, job.requests)


@dataclass(slots=True)
class _Whole:
    """A whole file's fetched bytes: decoded alone when called, or with the other files of
    its partition by :func:`_stacked`."""

    job: _Job
    data: bytes

    def __call__(self) -> FileRead:
        return _finish_whole(self.job, self.data)


def _rows(job: _Job, data: bytes, first: str) -> int:
    """The rows of the whole flat file ``data``, from its footer: the values of its first
    column ``first`` (a flat column has one per row, nulls included), found by a scan of
    the footer (~1.5 ms for 4,765 columns; decoding it takes ~25)."""
    tail = _footer_tail(job.url, data)
    found = thrift.find_columns(tail[:-8], [first])
    if found is None or len(found.columns) != 1:
        return _metadata(job.url, tail).num_rows
    return sum(c.num_values for c in found.columns[0].chunks)


def _footer_tail(url: str, data: bytes) -> bytes:
    """The footer of the whole file ``data`` with its length and magic (``_metadata``'s input)."""
    return data[-8 - _footer_length(url, data) :]


#: How a parquet footer marks a column of Arrow's null type: the SchemaElement's logicalType
#: (field 10, after the name (field-header byte 0x6c) or the field id (0x1c)) holding the
#: UNKNOWN member (11, 0xbc), empty, then the union's end. polars would stack such a column
#: under another file's dtype (an int column then gets nulls and becomes float), where the
#: file alone goes to pyarrow; a false match only costs the stacking.
_UNKNOWN_TYPE, _BEFORE_UNKNOWN = b"\xbc\x00\x00", (0x6C, 0x1C)


def _has_null_column(data: bytes, start: int) -> bool:
    """Whether the footer in ``data[start:]`` may hold a null-typed column. ``bytes.find``
    (~0.5 ms for a 1.4 MB footer; a regex with a character class took ~8 ms, per file)."""
    at = data.find(_UNKNOWN_TYPE, max(start, 1))
    while at >= 0:
        if data[at - 1] in _BEFORE_UNKNOWN:
            return True
        at = data.find(_UNKNOWN_TYPE, at + 1)
    return False


def _stacked(wholes: Sequence[_Whole]) -> StackedRead | None:
    """``wholes`` decoded together (:func:`~intake_cpg.polars_frames.decode_stacked`), or
    ``None`` when they are not all flat with the same columns and dtypes. Their fetched
    bytes are dropped once decoded."""
    for w in wholes:
        if _has_null_column(w.data, len(w.data) - 8 - _footer_length(w.job.url, w.data)):
            return None
    table = polars_frames.decode_stacked([w.data for w in wholes])
    if table is None or not table.names:
        return None
    lengths = []
    for w in wholes:
        if w.job.footers is not None:  # decoded anyway, to be kept: its row count is there
            md = _metadata(w.job.url, _footer_tail(w.job.url, w.data))
            _keep_footer(w.job, md)
            lengths.append(md.num_rows)
        else:
            lengths.append(_rows(w.job, w.data, table.names[0]))
    if sum(lengths) != table.frame.height:  # never seen; the file-by-file path decides then
        log.debug("stacked decode of %d files: %d rows, footers say %d", len(wholes),
                  table.frame.height, sum(lengths))  # fmt: skip
        return None
    for w in wholes:
        w.data = b""  # the frame holds the rows now
    return StackedRead(
        tuple(w.job.url for w in wholes),
        table,
        tuple(lengths),
        tuple(w.job.requests for w in wholes),
    )


def _finish_whole(job: _Job, data: bytes) -> FileRead:
    """Decode a whole file: polars for flat tables (several times faster on wide files),
    pyarrow for the rest (lists, dictionaries, timestamps, nested types)."""
    _footer_length(job.url, data)  # not parquet at all: say so, naming the file
    try:
        decoded = polars_frames.decode(data) if POLARS else None
        if decoded is not None:
            if job.footers is not None:
                _keep_footer(job, _metadata(job.url, _footer_tail(job.url, data)))
            return FileRead(job.url, decoded, decoded.names, True, job.requests)
        pf = pq.ParquetFile(pa.BufferReader(data))
        table = pf.read(use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataReadError(
            f"cannot read {job.url} as parquet: {type(exc).__name__}: {exc}. The file may be "
            "truncated, empty or in another format"
        ) from exc
    _keep_footer(job, pf.metadata)
    return FileRead(job.url, table, tuple(table.schema.names), True, job.requests)


def _job(ref: Any, columns: Sequence[str] | None, row_groups: Sequence[int] | None) -> _Job:
    if isinstance(ref, str):
        url, size, etag, vid = ref, None, None, None
    else:
        url, size, etag, vid = ref.url, ref.size, ref.etag, getattr(ref, "version_id", None)
    return _Job(
        url,
        size,
        etag.strip('"') if etag else None,
        vid,
        None if columns is None else tuple(dict.fromkeys(columns)),
        None if row_groups is None else tuple(row_groups),
    )


def read_parquet(
    fs: Any,
    refs: Sequence[Any],
    columns: Sequence[str] | None = None,
    *,
    cache: WarmCache | None = None,
    row_groups: Sequence[Sequence[int] | None] | None = None,
    footer_cache: Any = None,
    stack: bool = False,
) -> list[FileRead] | StackedRead:
    """Read ``columns`` (all when ``None``) of every parquet file in ``refs``, concurrently.

    ``fs`` is an s3fs filesystem (see :func:`intake_cpg.fetch.is_async_s3`); ``refs`` are
    :class:`~intake_cpg.refs.FileRef` (size and ETag known: no HEAD, reads pinned to that
    ETag) or URLs (pinned to the ETag of the first answer). ``row_groups[i]`` restricts file
    ``i`` to those row groups. Results come in the order of ``refs``. Full footers the read
    decodes anyway (whole-file reads, the fallback path) are kept in ``footer_cache``.

    With ``stack``, several files read whole that are all flat with the same columns and
    dtypes come back as one :class:`StackedRead` (decoded together, ~30% faster than one by
    one); otherwise, and when they are not, as one :class:`FileRead` per file.
    """
    rgs = list(row_groups) if row_groups is not None else [None] * len(refs)
    jobs = [_job(r, columns, g) for r, g in zip(refs, rgs, strict=True)]
    for j in jobs:
        j.footers = footer_cache

    async def all_files() -> list[Any]:
        if len(jobs) > 1 and columns is not None and _TAIL["n"] is None:  # learn N first
            first = await _read_one(fs, jobs[0], cache)
            return [first, *await asyncio.gather(*(_read_one(fs, j, cache) for j in jobs[1:]))]
        return await asyncio.gather(*(_read_one(fs, j, cache) for j in jobs))

    decoders = fetch.run(fs, all_files())
    if stack and POLARS and len(decoders) > 1 and all(isinstance(d, _Whole) for d in decoders):
        stacked = _stacked(decoders)
        if stacked is not None:
            return stacked
    out = []
    for i in range(len(decoders)):  # each file's fetched bytes go as soon as it is decoded
        decode, decoders[i] = decoders[i], None
        out.append(decode())
        del decode
    return out


# --------------------------------------------------------------------------------------------
# partitions: pieces of files, and the loader's entry point
# --------------------------------------------------------------------------------------------
#: Target in-memory bytes of one partition (dask's ``split_row_groups`` idea, in bytes): four
#: full-width plates. A partition's read holds several times this while it runs (its fetched
#: bytes, ~1.5x the decoded size, and polars' frame and buffers); fewer, larger partitions
#: decode faster (polars decodes a partition's files together). Set per load with the dask
#: config key :data:`PARTITION_SIZE_KEY` (``intake-cpg export`` uses a smaller one).
PARTITION_BYTES = 32 * 2**20
#: The dask config key that overrides :data:`PARTITION_BYTES`: bytes, or a size such as
#: ``"16MiB"``, read when the dask dataframe is made (``to_dask()``).
PARTITION_SIZE_KEY = "intake-cpg.partition-size"
#: Files batched into one partition at most (they are read concurrently).
MAX_FILES_PER_PARTITION = 64
#: Partitions a load aims for at least, so every worker thread has work.
MIN_PARTITIONS = 8


@dataclass(frozen=True, slots=True)
class Piece:
    """Some row groups of one file: a partition's share of a large file."""

    ref: Any
    row_groups: tuple[int, ...]

    @property
    def url(self) -> str:
        return url_of(self.ref)


def ref_of(item: Any) -> Any:
    """The URL string or FileRef of an item of a partition (a :class:`Piece`'s file)."""
    return item.ref if isinstance(item, Piece) else item


def url_of(item: Any) -> str:
    """The URL of a URL string, a FileRef or a :class:`Piece`."""
    if isinstance(item, Piece):
        return url_of(item.ref)
    return item if isinstance(item, str) else item.url


def engine_fs(url: str, storage_options: Any) -> Any:
    """The s3fs filesystem to read ``url`` through the engine, or ``None`` (not S3)."""
    from .storage import filesystem

    fs, _ = filesystem(url, storage_options)
    return fs if fetch.is_async_s3(fs) else None


_WARM: dict[Any, WarmCache] = {}


def warm_for(footer_cache: Any) -> WarmCache | None:
    """The process's warm cache for a ``footer_cache=`` value (its folder's ``warm/``)."""
    if footer_cache is None:
        return None
    directory = getattr(footer_cache, "directory", footer_cache)
    if isinstance(footer_cache, WarmCache):
        return footer_cache
    key = os.fspath(directory) if directory else None
    if key not in _WARM:
        _WARM[key] = WarmCache(os.path.join(key, "warm") if key else tempfile.mkdtemp(
            prefix="intake-cpg-warm-"))  # fmt: skip
    return _WARM[key]


def prefetch(
    items: Sequence[Any], plan: Any, columns: Sequence[str] | None, *, stack: bool = False
) -> list[Any] | StackedRead:
    """The engine's reads of the parquet-on-S3 ``items`` of a partition (``None`` elsewhere);
    with ``stack``, one :class:`StackedRead` when every item is a whole flat file and they
    all have the same columns and dtypes (see :func:`read_parquet`)."""
    from .readers import detect_format

    out: list[Any] = [None] * len(items)
    idx = [
        i for i, it in enumerate(items) if detect_format(url_of(it), plan.format).kind == "parquet"
    ]
    if not idx:
        return out
    fs = engine_fs(url_of(items[idx[0]]), plan.storage_options)
    if fs is None:
        return out
    refs = [items[i].ref if isinstance(items[i], Piece) else items[i] for i in idx]
    rgs = [items[i].row_groups if isinstance(items[i], Piece) else None for i in idx]
    cache = getattr(plan, "warm_cache", None) or warm_for(plan.footer_cache)
    if getattr(plan, "pin_etags", False):  # verified: every read asks storage (If-Match)
        cache = None
    reads = read_parquet(
        fs, refs, columns, cache=cache, row_groups=rgs, footer_cache=plan.footer_cache,
        stack=stack and len(idx) == len(items),
    )  # fmt: skip
    if isinstance(reads, StackedRead):
        return reads
    for i, r in zip(idx, reads, strict=True):
        out[i] = r
    return out


def read_footer(fs: Any, ref: Any, footer_cache: Any = None) -> pq.FileMetaData:
    """The footer of one parquet file on S3 (``ref``: a URL or a FileRef), without a HEAD.

    From ``footer_cache`` when the listing gave its ETag and size; else one suffix read (two
    when the footer is longer than the tail learnt from the files read so far), pinned to
    the ETag, and then kept in ``footer_cache``.
    """
    job = _job(ref, None, None)
    job.footers = footer_cache
    return fetch.run(fs, _footer_of(fs, job))


def _cached_footer(job: _Job) -> pq.FileMetaData | None:
    if job.footers is None or not job.etag or job.size is None:
        return None
    return job.footers.get(job.url, job.etag, job.size)


async def _footer_of(fs: Any, job: _Job) -> pq.FileMetaData:
    """``job``'s footer from ``job.footers`` (by the listing's ETag and size, with no
    request; for a bare URL, by those of the first answer), else fetched and kept there."""
    md = _cached_footer(job)
    if md is not None:
        return md
    known = job.etag is not None and job.size is not None
    tail, obj = await fetch.read_tail(fs, job.url, tail_hint(), size=job.size, etag=job.etag,
                                      version_id=job.version_id)  # fmt: skip
    job.etag, job.size = obj.etag or job.etag, obj.size
    md = None if known else _cached_footer(job)  # (a listed version was looked up above)
    if md is not None:
        return md
    flen = _footer_length(job.url, tail)
    tail_hint(flen)
    if flen + 8 > len(tail):
        start = obj.size - flen - 8
        got = await fetch.read_ranges(fs, obj, [(start, obj.size - len(tail))], gap=0)
        tail = got[(start, obj.size - len(tail))] + tail
    md = await asyncio.to_thread(_metadata, job.url, tail[len(tail) - flen - 8 :])
    _keep_footer(job, md)
    return md


def _group_bytes(md: pq.FileMetaData, columns: Sequence[str] | None) -> list[int]:
    wanted = None if columns is None else set(columns)
    leaves = [
        i
        for i in range(md.num_columns)
        if wanted is None or md.schema.column(i).path.split(".", 1)[0] in wanted
    ]
    # in memory, not on disk: dictionary-encoded pages are far smaller than their values
    width = {"FLOAT": 4, "DOUBLE": 8, "INT32": 4, "INT64": 8, "BOOLEAN": 1, "INT96": 12}
    row = sum(width.get(md.schema.column(i).physical_type, 16) for i in leaves)
    out = []
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        stored = sum(group.column(i).total_uncompressed_size for i in leaves)
        out.append(max(stored, group.num_rows * row))
    return out


def partition_target() -> int:
    """The in-memory bytes a partition aims for: the dask config key
    :data:`PARTITION_SIZE_KEY` when set, else :data:`PARTITION_BYTES`.

    >>> import dask
    >>> partition_target() == PARTITION_BYTES
    True
    >>> with dask.config.set({PARTITION_SIZE_KEY: "16MiB"}):
    ...     partition_target()
    16777216
    >>> with dask.config.set({PARTITION_SIZE_KEY: "lots"}):
    ...     partition_target()
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: dask config 'intake-cpg.partition-size' = 'lots' is not a size: ...
    """
    import dask
    from dask.utils import parse_bytes

    value = dask.config.get(PARTITION_SIZE_KEY, None)
    if value is None:
        return PARTITION_BYTES
    size, why = 0, "it must be positive"
    if isinstance(value, bool):
        why = "a boolean is not a number of bytes"
    else:
        try:
            size = parse_bytes(value) if isinstance(value, str) else int(value)
        except (ValueError, TypeError) as exc:
            why = str(exc)
    if size < 1:
        raise ParameterError(
            f"dask config {PARTITION_SIZE_KEY!r} = {value!r} is not a size: {why}; give bytes "
            f"or a size such as '16MiB' (default {PARTITION_BYTES // 2**20} MiB)"
        )
    return size


def plan_pieces(
    fs: Any,
    refs: Sequence[Any],
    columns: Sequence[str] | None,
    target: int | None = None,
    per_file: int | None = None,
) -> list[tuple[Any, ...]]:
    """Partitions of parquet files: small files batched, large files split by row groups.

    ``target`` (in-memory bytes a partition aims for) defaults to :func:`partition_target`.

    ``per_file`` estimates the in-memory bytes of ``columns`` per file (from the schema the
    loader read anyway); without it, or when it exceeds ``target``, the first file's footer
    tells (its row groups' uncompressed sizes). When a file is larger
    than ``target``, every file's footer is read (concurrently) and each file is cut into
    pieces of whole row groups of at most ``target`` bytes (at least one row group each).
    Otherwise files are batched so that a partition holds about ``target`` bytes, at most
    :data:`MAX_FILES_PER_PARTITION` files, and the load has at least :data:`MIN_PARTITIONS`.
    """
    if not refs:
        return []
    target = partition_target() if target is None else target
    jobs = [_job(r, columns, None) for r in refs]
    if per_file is None or per_file > target:  # large files: their row groups are needed
        first = fetch.run(fs, _footer_of(fs, jobs[0]))
        per_file = sum(_group_bytes(first, columns))
    if per_file > target and first.num_row_groups > 1:

        async def footers() -> list[pq.FileMetaData]:
            rest = await asyncio.gather(*(_footer_of(fs, j) for j in jobs[1:]))
            return [first, *rest]

        out: list[tuple[Any, ...]] = []
        for ref, md in zip(refs, fetch.run(fs, footers()), strict=True):
            run: list[int] = []
            size = 0
            for g, b in enumerate(_group_bytes(md, columns)):
                if run and size + b > target:
                    out.append((Piece(ref, tuple(run)),))
                    run, size = [], 0
                run.append(g)
                size += b
            if run:
                out.append((Piece(ref, tuple(run)) if len(run) < md.num_row_groups else ref,))
        return out
    by_bytes = max(1, target // max(per_file, 1))
    by_count = max(1, -(-len(refs) // MIN_PARTITIONS))
    k = int(min(by_bytes, by_count, MAX_FILES_PER_PARTITION))
    return [tuple(refs[i : i + k]) for i in range(0, len(refs), k)]
