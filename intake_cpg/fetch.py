"""S3 requests on s3fs's event loop: byte-range reads pinned to one ETag, and listings.

This module knows HTTP ranges and S3 semantics, nothing about parquet. Signed requests go
through ``S3FileSystem._call_s3`` (botocore's retries, endpoint and credentials); anonymous
ones (the public gallery) are plain unsigned HTTP GETs through aiohttp, which cost a fifth
of botocore's CPU per request and need no botocore client, retried here with the same
budget. Every request runs on fsspec's I/O loop, with at most :data:`MAX_IN_FLIGHT` in
flight per process, whatever the number of dask threads.

* :func:`read_tail` is one suffix-range GET (``Range: bytes=-N``): its answer gives the
  object's size and ETag too, so a reader never needs a HEAD.
* :func:`read_ranges` fetches byte ranges concurrently, neighbours closer than
  :data:`MAX_GAP` merged into one request (:func:`coalesce`).
* Every request carries ``If-Match: <ETag>`` (the listing's ETag when known, else the one the
  first answer gave), so a replaced object ends the read with a
  :class:`~intake_cpg.errors.StorageError` naming it: never a mix of two versions.
* A body shorter than the range asked for (a connection closed mid-answer) is retried like a
  transport fault, up to the filesystem's ``retries``; then it is a ``StorageError``.
* :func:`list_prefix` lists one level of an anonymous bucket (``ListObjectsV2``, every page;
  :func:`parse_listing` reads one).

>>> coalesce([(0, 10), (12, 20), (1000, 1010)], gap=8)
[(0, 20), (1000, 1010)]
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import errno
import functools
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import StorageError
from .storage import is_transport_failure, s3_endpoint, transport_error

log = logging.getLogger(__name__)

__all__ = [
    "MAX_GAP",
    "MAX_IN_FLIGHT",
    "NoSuchBucketError",
    "Pinned",
    "ShortReadError",
    "coalesce",
    "is_async_s3",
    "list_prefix",
    "parse_listing",
    "plain_listing",
    "read_ranges",
    "read_tail",
    "run",
]

#: Requests in flight per process (all files, all dask threads together).
MAX_IN_FLIGHT = 64
#: Byte ranges closer than this are fetched as one request (a gap costs less than a round trip).
MAX_GAP = 256 * 2**10
#: Requests larger than this are split into concurrent parts.
MAX_PART = 16 * 2**20
#: Bytes a response's body buffer takes before reading pauses (aiohttp's default: 64 KiB).
#: 1 MiB cut this process's CPU for the fetch of 40 whole 11 MB plates from 0.51 to 0.44 s
#: (medians of 6 in-process fetches; fewer, larger reads from the socket).
READ_BUFFER = 2**20
#: Bodies this large or larger are copied into one buffer as they arrive (:func:`_sized_body`):
#: for 40 whole 11 MB plates, 0.29 CPU-s instead of 0.38 and 48 MB of page faults instead
#: of 239 (medians of 8 in-process fetches, interleaved with ``read()``).
SIZED_BODY = 2**20
#: Keys per page of a listing (S3's maximum).
LIST_PAGE_KEYS = 1000
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SEMAPHORES: dict[int, asyncio.Semaphore] = {}


class ShortReadError(OSError):
    """An answer's body had fewer bytes than the range asked for (retried, then reported)."""


class NoSuchBucketError(FileNotFoundError):
    """A request named a bucket that does not exist (HTTP 404 ``NoSuchBucket``)."""


@dataclass(frozen=True, slots=True)
class Pinned:
    """One object version: where it is, its size and the ETag every read must match."""

    url: str
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None


def is_async_s3(fs: Any) -> bool:
    """True for s3fs filesystems (the ones this module can read through)."""
    return type(fs).__name__ == "S3FileSystem" and hasattr(fs, "_call_s3")


def run(fs: Any, coro: Any) -> Any:
    """Run ``coro`` on ``fs``'s event loop from synchronous code (a dask worker thread)."""
    from fsspec.asyn import sync

    return sync(fs.loop, lambda: coro)


def submit(fs: Any, coro: Any) -> concurrent.futures.Future[Any]:
    """Start ``coro`` on ``fs``'s event loop and return at once: a future of its result."""
    return asyncio.run_coroutine_threadsafe(coro, fs.loop)


def coalesce(
    ranges: Sequence[tuple[int, int]], gap: int = MAX_GAP, most: int | None = None
) -> list[tuple[int, int]]:
    """Sorted, merged ``(start, end)`` ranges: ranges less than ``gap`` apart become one,
    unless the merged range would exceed ``most`` bytes (then no range is ever cut).

    >>> coalesce([(0, 4), (4, 8), (8, 12)], gap=0, most=8)
    [(0, 8), (8, 12)]
    """
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if (
            out
            and start - out[-1][1] <= gap
            and (most is None or max(out[-1][1], end) - out[-1][0] <= most)
        ):
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _SEMAPHORES.get(id(loop))
    if sem is None:
        sem = _SEMAPHORES[id(loop)] = asyncio.Semaphore(MAX_IN_FLIGHT)
    return sem


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _is_precondition(exc: BaseException) -> bool:
    text = str(exc)
    return (isinstance(exc, OSError) and exc.errno == errno.EINVAL and "pre-condition" in text) or (
        "PreconditionFailed" in text or "412" in text.split(":", 1)[0]
    )


def _changed(url: str, etag: str, exc: BaseException | None = None) -> StorageError:
    from s3fs.utils import FileExpired

    expired = FileExpired(url, etag)
    expired.__cause__ = exc  # the request's own error, when there was one
    err = transport_error(url, expired)
    err.__cause__ = expired  # readers tells a replaced object by this cause (pin_etags)
    return err


def _anonymous_endpoint(fs: Any) -> str | None:
    """The base URL to GET objects from without signing, or ``None`` (signed: use botocore).

    Anonymous reads (the public gallery) need no signature, so they skip botocore's request
    machinery, which costs several ms of CPU per request: a plain HTTP client makes the same
    GET for a fifth of that (measured in ``docs/performance.md``).
    """
    if not getattr(fs, "anon", False):
        return None
    options = {"client_kwargs": getattr(fs, "client_kwargs", None),
               "endpoint_url": getattr(fs, "endpoint_url", None)}  # fmt: skip
    ep = s3_endpoint(options)  # the environment's too, as botocore would use
    return ep.rstrip("/") if ep else "https://s3.amazonaws.com"


_SESSIONS: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}


def _session() -> Any:
    import aiohttp

    loop = asyncio.get_running_loop()
    hit = _SESSIONS.get(id(loop))
    if hit is None or hit[1].closed:
        if not _SESSIONS:
            atexit.register(close_sessions)
        sess = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            auto_decompress=False,
            read_bufsize=READ_BUFFER,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
        )
        _SESSIONS[id(loop)] = (loop, sess)
        return sess
    return hit[1]


def close_sessions() -> None:
    """Close the plain-HTTP sessions (run at exit, so aiohttp reports no unclosed session)."""
    while _SESSIONS:
        _, (loop, sess) = _SESSIONS.popitem()
        if sess.closed:
            continue
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(sess.close(), loop).result(timeout=2)
            elif not loop.is_closed():
                loop.run_until_complete(sess.close())
        except Exception as exc:  # at exit: never fail the interpreter's shutdown
            log.debug("could not close an HTTP session: %s", exc)


class _HTTPStatus(OSError):
    """A non-success answer of the plain HTTP path (errno EIO for retryable statuses)."""


_ERROR_PART = re.compile(rb"<(Code|Message)>([^<]{0,300})</")


def _error_text(body: bytes) -> str:
    """S3's error code and message from an error answer's XML, else the body's start.

    >>> _error_text(b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
    'AccessDenied: Access Denied'
    """
    parts = dict(_ERROR_PART.findall(body[:4096]))
    if parts:
        return ": ".join(p.decode(errors="replace") for p in parts.values())
    return " ".join(body[:300].decode(errors="replace").split())


def _status_error(status: int, reason: str, body: bytes, where: str) -> BaseException:
    """The exception for a non-success answer of the plain HTTP path about ``where``
    (``bucket/key``): retryable statuses carry errno EIO."""
    text = _error_text(body)
    if status == 412:
        return OSError(errno.EINVAL, f"PreconditionFailed (412): pre-conditions failed {text}")
    if status == 404 and b"<Code>NoSuchBucket</Code>" in body:
        bucket = where.split("/", 1)[0]
        return NoSuchBucketError(errno.ENOENT, f"NoSuchBucket (HTTP 404): {bucket}", where)
    if status == 404:
        return FileNotFoundError(errno.ENOENT, f"{where} not found", where)
    if status == 403:
        return StorageError(
            f"access to s3://{where} was denied (HTTP 403): {text}; it is not public: pass "
            "credentials in storage_options (then requests are signed)"
        )
    if status in (429, 500, 502, 503, 504):
        return _HTTPStatus(errno.EIO, f"HTTP {status} {reason}: {text}")
    return StorageError(f"s3://{where}: HTTP {status} {reason}: {text}")


async def _plain(url: str, params: dict[str, str] | None, headers: dict[str, str],
                 where: str) -> tuple[bytes, Any]:  # fmt: skip
    """One unsigned GET: the body and the answer's headers, or the error of its status."""
    async with _session().get(url, headers=headers, params=params) as resp:
        if resp.status not in (200, 206):
            raise _status_error(resp.status, resp.reason or "", await resp.read(), where)
        size = resp.content_length
        if size is None or size < SIZED_BODY or resp.headers.get("Content-Encoding"):
            return await resp.read(), resp.headers
        return await _sized_body(resp.content, size), resp.headers


async def _sized_body(content: Any, size: int) -> bytes:
    """A body of ``size`` announced bytes, each chunk copied into one buffer as it arrives.

    ``aiohttp``'s ``read()`` keeps every chunk until the end and then joins them: two copies
    of the body in memory at once, the second in fresh pages. Here a chunk is freed once
    copied (``BytesIO.getvalue()`` then hands the buffer over without copying it). A body
    that ends early is returned short (the caller's length check retries it); one that
    runs past ``size`` is an error, never a truncated answer.
    """
    buf = io.BytesIO(bytes(size))
    view = buf.getbuffer()
    at = 0
    try:
        async for chunk in content.iter_any():
            end = at + len(chunk)
            if end > size:
                raise ShortReadError(errno.EIO, f"the body ran past its {size} announced bytes")
            view[at:end] = chunk
            at = end
    finally:
        view.release()
    return buf.getvalue() if at == size else buf.getvalue()[:at]


async def _raw_get(
    base: str, bucket: str, key: str, headers: dict[str, str], version_id: str | None
) -> tuple[bytes, dict[str, Any]]:
    from urllib.parse import quote

    url = f"{base}/{bucket}/{quote(key, safe='/~')}"
    params = {"versionId": version_id} if version_id else None
    body, h = await _plain(url, params, headers, f"{bucket}/{key}")
    return body, {"ContentRange": h.get("Content-Range"), "ETag": h.get("ETag"),
                  "ContentLength": h.get("Content-Length")}  # fmt: skip


def _attempts(fs: Any) -> int:
    """s3fs's retries times botocore's attempts: the retry budget the rest of intake-cpg has."""
    retries = (getattr(fs, "config_kwargs", None) or {}).get("retries") or {}
    return max(int(getattr(fs, "retries", 5)), 1) * max(int(retries.get("max_attempts", 5)), 1)


async def _get(
    fs: Any,
    url: str,
    bucket: str,
    key: str,
    rng: str,
    etag: str | None,
    expect: int | None,
    version_id: str | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """One ranged GET: the body (exactly ``expect`` bytes when given) and the answer's headers."""
    base = _anonymous_endpoint(fs)
    headers = {"Range": rng}
    kw: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": rng}
    if etag:
        kw["IfMatch"] = headers["If-Match"] = _quoted(etag)
    if version_id:
        kw["VersionId"] = version_id
    attempts = _attempts(fs) if base else max(int(getattr(fs, "retries", 5)), 1)

    async def once() -> tuple[bytes, dict[str, Any]]:
        try:
            if base is not None:
                body, resp = await _raw_get(base, bucket, key, headers, version_id)
            else:
                resp = await fs._call_s3("get_object", **kw)
                try:
                    body = await resp["Body"].read()
                finally:
                    resp["Body"].close()
        except Exception as exc:
            if _is_precondition(exc):
                changed = _changed(url, etag or "?", exc)
                raise changed from changed.__cause__  # FileExpired, caused by exc
            raise
        if expect is not None and len(body) != expect:
            raise ShortReadError(errno.EIO, f"{url}: {rng} answered {len(body)} bytes of {expect}")
        return body, resp

    return await _retrying(url, rng, attempts, once, "read")


async def _retrying(url: str, what: str, attempts: int, call: Any, doing: str) -> Any:
    """``await call()`` (one request, at most :data:`MAX_IN_FLIGHT` in flight), again with
    exponential backoff after a transport failure or a short body, ``attempts`` times in
    all; then the :func:`~intake_cpg.storage.transport_error` naming ``url``."""
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            async with _semaphore():
                return await call()
        except FileNotFoundError:
            raise
        except Exception as exc:  # transient (retried) or fatal
            if not (isinstance(exc, ShortReadError) or is_transport_failure(exc)):
                raise
            last = exc
            log.debug("retrying %s %s after %s: %s", url, what, type(exc).__name__, exc)
            await asyncio.sleep(min(0.05 * 1.7**attempt, 5))
    assert last is not None
    raise transport_error(url, last, doing) from last


async def head(
    fs: Any, url: str, version_id: str | None = None, *, if_match: str | None = None
) -> tuple[str, int]:
    """``(ETag, size)`` of ``url``, for a URL no listing described (a warm-cache lookup
    needs the version before any byte is read). With ``if_match``, a replaced object raises
    the :class:`~intake_cpg.errors.StorageError` of a changed object."""
    bucket, key = _split_url(fs, url)
    base = _anonymous_endpoint(fs)
    if base is not None:  # a 1-byte ranged GET answers size and ETag like a HEAD, unsigned
        try:
            _, resp = await _get(fs, url, bucket, key, "bytes=0-0", if_match, None, version_id)
        except StorageError as exc:  # e.g. 416 for an empty object: ask with a HEAD below
            if "changed while it was being read" in str(exc):
                raise
            resp = {}
        m = _CONTENT_RANGE.match(str(resp.get("ContentRange") or ""))
        if m and m.group(3) != "*":
            return str(resp.get("ETag") or "").strip('"'), int(m.group(3))
    kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kw["VersionId"] = version_id
    if if_match:
        kw["IfMatch"] = _quoted(if_match)
    try:
        async with _semaphore():
            info = await fs._call_s3("head_object", **kw)
    except FileNotFoundError:
        raise
    except Exception as exc:
        if _is_precondition(exc):
            changed = _changed(url, if_match or "?", exc)
            raise changed from changed.__cause__  # FileExpired, caused by exc
        if is_transport_failure(exc):
            raise transport_error(url, exc) from exc
        raise
    return str(info.get("ETag") or "").strip('"'), int(info["ContentLength"])


def _split_url(fs: Any, url: str) -> tuple[str, str]:
    bucket, key, _ = fs.split_path(url)
    return bucket, key


async def read_tail(
    fs: Any,
    url: str,
    n: int,
    *,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
) -> tuple[bytes, Pinned]:
    """The last ``n`` bytes of ``url`` (all of it when smaller) and the version they belong to.

    One suffix-range GET, ``If-Match`` when ``etag`` is known; the answer's ``Content-Range``
    and ``ETag`` give the size and ETag, so no HEAD is made.
    """
    bucket, key = _split_url(fs, url)
    expect = None if size is None else min(n, size)
    attempts = max(int(getattr(fs, "retries", 5)), 1)
    for attempt in range(attempts):  # size unknown: a short body is only seen here, retried
        body, resp = await _get(fs, url, bucket, key, f"bytes=-{n}", etag, expect, version_id)
        m = _CONTENT_RANGE.match(str(resp.get("ContentRange") or ""))
        total = int(m.group(3)) if m and m.group(3) != "*" else None
        if total is None:  # a server that ignores ranges answers the whole object
            total = int(resp.get("ContentLength") or len(body))
            body = body[-n:] if len(body) == total else body
        if size is not None and total != size:
            raise _changed(url, etag or "?")
        got = (resp.get("ETag") or "").strip('"')
        if etag and got and got != etag.strip('"'):
            raise _changed(url, etag)
        if len(body) == min(n, total):
            return body, Pinned(url, bucket, key, total, got or (etag or ""), version_id)
        etag = etag or got or None  # the retry asks for the version the first answer gave
        log.debug("retrying the tail of %s: %d bytes of %d", url, len(body), min(n, total))
        await asyncio.sleep(min(0.05 * 1.7**attempt, 5))
    raise transport_error(url, ShortReadError(errno.EIO, f"tail of {len(body)} bytes"))


async def read_ranges(
    fs: Any, obj: Pinned, ranges: Sequence[tuple[int, int]], gap: int = MAX_GAP
) -> dict[tuple[int, int], bytes]:
    """The bytes of every ``(start, end)`` range of ``obj``, fetched concurrently.

    Ranges closer than ``gap`` are one request; requests over :data:`MAX_PART` are split.
    The result maps each merged request range to its bytes.
    """
    merged = coalesce(ranges, gap)
    parts: list[tuple[int, int]] = []
    for s, e in merged:
        parts.extend((p, min(p + MAX_PART, e)) for p in range(s, e, MAX_PART))
    for s, e in parts:
        if s < 0 or e > obj.size or s >= e:
            raise StorageError(
                f"{obj.url}: byte range {s}-{e} is outside the object ({obj.size} bytes); "
                "its footer does not match its size: the file may be truncated"
            )

    async def one(s: int, e: int) -> bytes:
        body, _ = await _get(
            fs, obj.url, obj.bucket, obj.key, f"bytes={s}-{e - 1}", obj.etag, e - s, obj.version_id
        )
        return body

    blobs = await asyncio.gather(*(one(s, e) for s, e in parts))
    got = dict(zip(parts, blobs, strict=True))
    out = {}
    for s, e in merged:
        pieces = [got[(p, min(p + MAX_PART, e))] for p in range(s, e, MAX_PART)]
        out[(s, e)] = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    return out


# --------------------------------------------------------------------------------------------
# listings
# --------------------------------------------------------------------------------------------
_S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def plain_listing(fs: Any) -> bool:
    """Whether ``fs``'s listings can go over plain HTTP (:func:`list_prefix`): an anonymous
    s3fs filesystem that does not list object versions. Creating botocore's client for the
    first listing costs 0.1-0.25 s, more than the listings of a whole entry."""
    return (
        is_async_s3(fs)
        and _anonymous_endpoint(fs) is not None
        and not getattr(fs, "version_aware", False)
    )


def parse_listing(xml: bytes, bucket: str, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """One ``ListObjectsV2`` page (``encoding-type=url``): s3fs-style info dicts of its
    common prefixes (``type: directory``) and objects, and the continuation token of the
    next page (``None``: the last one). ``where`` names the listing in errors.

    >>> page = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    ...         b"<IsTruncated>false</IsTruncated><Contents><Key>a/x%20y.csv</Key><Size>3</Size>"
    ...         b"<ETag>&quot;9f&quot;</ETag></Contents><CommonPrefixes><Prefix>a/b/</Prefix>"
    ...         b"</CommonPrefixes></ListBucketResult>")
    >>> infos, token = parse_listing(page, "bkt", "s3://bkt/a/")
    >>> [(i["name"], i["type"], i["size"], i.get("ETag")) for i in infos], token
    ([('bkt/a/b', 'directory', 0, None), ('bkt/a/x y.csv', 'file', 3, '"9f"')], None)
    >>> parse_listing(b"<html>", "bkt", "s3://bkt/a/")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.StorageError: s3://bkt/a/: the answer to a listing is not an S3 listing ...
    """
    import xml.etree.ElementTree as ET
    from urllib.parse import unquote_plus

    def bad(why: str) -> StorageError:
        return StorageError(
            f"{where}: the answer to a listing is not an S3 listing ({why}); check the "
            "endpoint (client_kwargs endpoint_url) points at an S3 server"
        )

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise bad(f"XML: {exc}") from exc
    if root.tag != f"{_S3_XML}ListBucketResult":
        raise bad(f"root element {root.tag!r}")
    out: list[dict[str, Any]] = []
    try:
        for p in root.iter(f"{_S3_XML}CommonPrefixes"):
            name = unquote_plus(p.findtext(f"{_S3_XML}Prefix") or "").rstrip("/")
            out.append({"name": f"{bucket}/{name}", "type": "directory", "size": 0})
        for c in root.iter(f"{_S3_XML}Contents"):
            key = unquote_plus(c.findtext(f"{_S3_XML}Key") or "")
            size = int(c.findtext(f"{_S3_XML}Size") or "")
            out.append({"name": f"{bucket}/{key}", "type": "file", "size": size,
                        "ETag": c.findtext(f"{_S3_XML}ETag")})  # fmt: skip
    except ValueError as exc:
        raise bad(f"an object without a size: {exc}") from exc
    token = None
    if (root.findtext(f"{_S3_XML}IsTruncated") or "").strip().lower() == "true":
        token = root.findtext(f"{_S3_XML}NextContinuationToken")
        if not token:  # never a silently partial listing
            raise bad("truncated, without a continuation token")
    return out, token


async def list_prefix(
    fs: Any, bucket: str, prefix: str, *, delimiter: str = "/"
) -> list[dict[str, Any]]:
    """Every object and common prefix (one level, by ``delimiter``; ``""``: every object
    below, recursively) under ``prefix`` of ``bucket``, as s3fs-style info dicts, over plain
    HTTP (see :func:`plain_listing`): one unsigned ``ListObjectsV2`` request per page of
    :data:`LIST_PAGE_KEYS`, each retried like a read."""
    base = _anonymous_endpoint(fs)
    assert base is not None, "list_prefix needs an anonymous filesystem (plain_listing)"
    where = f"s3://{bucket}/{prefix}"
    params = {"list-type": "2", "prefix": prefix, "encoding-type": "url",
              "max-keys": str(LIST_PAGE_KEYS)}  # fmt: skip
    if delimiter:
        params["delimiter"] = delimiter
    out: list[dict[str, Any]] = []
    while True:
        call = functools.partial(_list_page, f"{base}/{bucket}", dict(params), f"{bucket}/{prefix}")
        infos, token = parse_listing(
            await _retrying(where, "listing", _attempts(fs), call, "list"), bucket, where
        )
        out.extend(infos)
        if token is None:
            return out
        params["continuation-token"] = token


async def _list_page(url: str, params: dict[str, str], where: str) -> bytes:
    body, _ = await _plain(url, params, {}, where)
    return body
