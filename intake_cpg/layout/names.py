"""Names and versions: gallery URLs, file extensions, folder names that are safe, version order.

Pure string functions every other part of the layout (and the package) uses: no table, no I/O.

>>> split_url("https://cellpainting-gallery.s3.amazonaws.com/cpg0016-jump/x.parquet")
('cellpainting-gallery', 'cpg0016-jump/x.parquet')
>>> max(["v1.0", "v1.0a", "v0.9"], key=version_key)
'v1.0a'
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from ..errors import GalleryPathError, ParameterError

__all__ = [
    "COMPRESSION_SUFFIXES",
    "MAX_NAME_BYTES",
    "has_glob",
    "https_url",
    "s3_url",
    "split_ext",
    "split_url",
    "validate_name",
    "version_key",
]

#: Compression suffixes kept as part of the extension (``csv.gz``).
COMPRESSION_SUFFIXES = frozenset({"gz", "bz2", "xz", "zst"})

_HTTPS_HOST = re.compile(r"(?P<bucket>[^/]+?)\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com$")


def split_url(url: str) -> tuple[str | None, str]:
    """Split a gallery URL into ``(bucket, key)``; a bare key gives ``(None, key)``.

    Accepts ``s3://bucket/key``, ``https://bucket.s3.amazonaws.com/key`` (also with a region,
    and the path style ``https://s3.amazonaws.com/bucket/key``) and bucket-relative keys.
    HTTPS paths are percent-decoded.

    >>> split_url("https://cellpainting-gallery.s3.amazonaws.com/cpg0016-jump/x.parquet")
    ('cellpainting-gallery', 'cpg0016-jump/x.parquet')
    >>> split_url("s3://cellpainting-gallery/cpg0016-jump/x.parquet")
    ('cellpainting-gallery', 'cpg0016-jump/x.parquet')
    >>> split_url("cpg0016-jump/x.parquet")
    (None, 'cpg0016-jump/x.parquet')
    """
    if not isinstance(url, str):
        raise GalleryPathError(f"expected a key or URL string, got {type(url).__name__} {url!r}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None, url.lstrip("/")
    scheme = scheme.lower()
    host, _, path = rest.partition("/")
    if scheme in ("s3", "s3a"):
        if not host:
            raise GalleryPathError(f"URL {url!r} names no bucket; expected s3://<bucket>/<key>")
        return host, path
    if scheme in ("https", "http"):
        host = host.lower()
        path = unquote(path.partition("?")[0].partition("#")[0])
        m = _HTTPS_HOST.fullmatch(host)
        if m and m.group("bucket") != "s3":
            return m.group("bucket"), path
        if host == "s3.amazonaws.com" or re.fullmatch(r"s3[.-][a-z0-9-]+\.amazonaws\.com", host):
            bucket, _, key = path.partition("/")
            return bucket, key
        raise GalleryPathError(
            f"URL {url!r} is not an S3 bucket URL; expected https://<bucket>.s3.amazonaws.com/<key>"
        )
    raise GalleryPathError(
        f"URL {url!r} has scheme {scheme!r}; expected s3://, https:// or a bucket-relative key"
    )


_URL_SAFE = "/-_.~!$&'()*+,;=:@"


def https_url(bucket: str, key: str) -> str:
    """The public HTTPS URL of ``key`` in ``bucket`` (the form manifests use).

    >>> https_url("cellpainting-gallery", "cpg0016-jump/source_4/a b.csv")
    'https://cellpainting-gallery.s3.amazonaws.com/cpg0016-jump/source_4/a%20b.csv'
    """
    return f"https://{bucket}.s3.amazonaws.com/{quote(key, safe=_URL_SAFE)}"


def s3_url(bucket: str, key: str) -> str:
    """The ``s3://`` URL of ``key`` in ``bucket``.

    >>> s3_url("cellpainting-gallery", "cpg0016-jump/index.html")
    's3://cellpainting-gallery/cpg0016-jump/index.html'
    """
    return f"s3://{bucket}/{key}"


def split_ext(filename: str) -> tuple[str, str | None]:
    """Split a file name into ``(stem, extension)``, keeping compression suffixes.

    >>> split_ext("BR00117037_normalized.csv.gz")
    ('BR00117037_normalized', 'csv.gz')
    >>> split_ext("OAA01.02.03.04.A.txt")
    ('OAA01.02.03.04.A', 'txt')
    >>> split_ext(".zgroup")
    ('.zgroup', None)
    """
    dot = filename.rfind(".")
    if dot <= 0:
        return filename, None
    ext = filename[dot + 1 :]
    if ext in COMPRESSION_SUFFIXES:
        dot2 = filename.rfind(".", 0, dot)
        if dot2 > 0:
            return filename[:dot2], filename[dot2 + 1 :]
    return filename[:dot], ext


#: Longest folder or file name accepted (the limit of common filesystems; S3 keys are 1,024).
MAX_NAME_BYTES = 255
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB = re.compile(r"[*?\[\]]")


def has_glob(text: str) -> bool:
    """True when ``text`` holds a glob character (``* ? [ ]``).

    >>> has_glob("BR*"), has_glob("BR00117037")
    (True, False)
    """
    return _GLOB.search(text) is not None


def validate_name(value: str, field: str, *, allow_glob: bool = False) -> str:
    """Check that ``value`` is a single, harmless folder or file name and return it.

    Rejects what could leave the gallery root or be read as a template or URL: empty
    names, ``/`` and ``\\``, ``..``, percent-encoding (``%2e``, ``%2f``), control characters,
    ``{{``/``}}``/``{%``/``%}`` template syntax, a leading ``!`` or ``~``, ``://``; glob
    characters ``* ? [ ]`` only with ``allow_glob=True``.

    >>> validate_name("BR00117037", "plate")
    'BR00117037'
    >>> validate_name("../x", "plate")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: invalid plate '../x': contains '/'; expected a single folder or file name such as 'BR00117037' or '2021_04_26_Batch1'
    """
    if not isinstance(value, str):
        reason = f"is a {type(value).__name__}, not a string"
        raise ParameterError(f"invalid {field} {value!r}: {reason}")
    reason = None
    if not value or not value.strip():
        reason = "is empty"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        reason = f"is longer than {MAX_NAME_BYTES} bytes (no folder or file name is)"
    elif "/" in value or "\\" in value:
        reason = "contains '/'" if "/" in value else "contains '\\'"
    elif ".." in value or value == ".":
        reason = "contains '..'" if ".." in value else "is '.'"
    elif _PERCENT.search(value):
        reason = "contains URL percent-encoding"
    elif _CONTROL.search(value):
        reason = "contains a control character"
    elif any(t in value for t in ("{{", "}}", "{%", "%}")):
        reason = "contains template syntax"
    elif value[0] in "!~":
        reason = f"starts with {value[0]!r}"
    elif value != value.strip():
        reason = "has leading or trailing whitespace"
    elif not allow_glob and has_glob(value):
        reason = "contains a glob character (* ? [ ]); pass allow_glob=True to build a pattern"
    if reason:
        shown = repr(value) if len(value) <= 80 else repr(value[:60]) + f"... ({len(value)} chars)"
        raise ParameterError(
            f"invalid {field} {shown}: {reason}; expected a single folder or file name "
            "such as 'BR00117037' or '2021_04_26_Batch1'"
        )
    return value


_VERSION_TOKEN = re.compile(r"[0-9]+|[A-Za-z]+")
_VERSION_LIKE = re.compile(r"[vV]?[0-9]+(?:[._-]?[0-9A-Za-z]+)*")


def version_key(version: str) -> tuple:
    """A sort key for version folder names: ``v1.0 < v1.0a < v1.0b < v1.1 < v2.0``.

    Names that do not look like versions sort before all versions, alphabetically.

    >>> sorted(["v1.1", "v1.0b", "v2.0", "v1.0", "v1.0a", "v10.0"], key=version_key)
    ['v1.0', 'v1.0a', 'v1.0b', 'v1.1', 'v2.0', 'v10.0']
    >>> max(["v1.0", "jump-profiling-recipe_2024_a917fa7"], key=version_key)
    'v1.0'
    """
    if not _VERSION_LIKE.fullmatch(version):
        return (0, (), version)
    body = version[1:] if version[:1] in "vV" else version
    parts = tuple(
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _VERSION_TOKEN.findall(body)
    )
    return (1, parts, version)
