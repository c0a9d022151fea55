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
import io
import logging
from typing import BinaryIO

__all__ = [
    "COMMON_PART_SIZES",
    "compute_etag",
    "etag_part_count",
    "etag_part_size",
]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Part sizes uploaders commonly use: S3 minimum, aws cli default, s3fs 50 MiB, and others.
COMMON_PART_SIZES: tuple[int, ...] = (5 * MiB, 8 * MiB, 16 * MiB, 50 * MiB, 64 * MiB, 100 * MiB)
#: Chunk size used when hashing a stream (bounded memory whatever the part size).
_READ_CHUNK = 1 * MiB


def _as_stream(data: bytes | bytearray | memoryview | BinaryIO) -> BinaryIO:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data))
    if not hasattr(data, "read"):
        raise TypeError(
            f"compute_etag expects bytes or a binary file object, got {type(data).__name__}"
        )
    return data


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
    if part_size is not None and part_size <= 0:
        raise ValueError(f"part_size must be a positive number of bytes, got {part_size!r}")
    stream = _as_stream(data)
    whole = hashlib.md5(usedforsecurity=False)
    if part_size is None:
        while chunk := stream.read(_READ_CHUNK):
            whole.update(chunk)
        return whole.hexdigest()

    digests: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, part_size - in_part))
        if not chunk:
            break
        part.update(chunk)
        whole.update(chunk)
        in_part += len(chunk)
        if in_part == part_size:
            digests.append(part.digest())
            part = hashlib.md5(usedforsecurity=False)
            in_part = 0
    if in_part or not digests:
        digests.append(part.digest())
    if len(digests) == 1:
        return whole.hexdigest()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


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
        raise ValueError(
            f"not an S3 ETag: {etag!r} (expected 32 hex digits, optionally '-<parts>')"
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
