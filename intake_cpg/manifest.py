"""Gallery manifests: records in every real shape, parsed once into :class:`ManifestRecord`.

A manifest lists derived products with their provenance: ``subset, url, recipe_permalink,
config_permalink, etag``. Real manifests come in several shapes, all accepted here:

* a JSON list of records, or a JSON object wrapping that list under ``"datasets"``;
* CSV ``subset,url[,etag]``, quoted or not, with ``", "`` separators, with or without a
  trailing newline;
* records with ``"etag": ""`` (no ETag recorded) and the ``profile_url`` spelling of ``url``;
* tab-separated file lists with ``file_name`` and ``md5`` columns and no subset (the CLUE
  manifests): the subset is then the file name without its extensions.

Parsing is pure (:func:`parse_manifest`); :func:`read_manifest` adds the one read.
Manifest URLs are HTTPS bucket URLs; :meth:`ManifestRecord.resolve` maps them to the S3 URL
they load from, or to the same key under another root (a mirror):

>>> records = parse_manifest('"subset","url"\\n"orf", "https://cellpainting-gallery.s3.amazonaws.com/'
...                          'cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/'
...                          'v1.0a/profiles_wellpos.parquet"', name="index.csv")
>>> records[0].subset, records[0].bucket, records[0].version, records[0].etag
('orf', 'cellpainting-gallery', 'v1.0a', None)
>>> records[0].resolve()
's3://cellpainting-gallery/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/profiles_wellpos.parquet'
>>> records[0].resolve("/mirror")
'/mirror/cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/profiles_wellpos.parquet'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import ManifestError, StorageError

__all__ = [
    "ManifestRecord",
    "parse_manifest",
    "read_manifest",
    "recipe_ref",
    "split_storage_url",
]

log = logging.getLogger(__name__)

#: Column / field names accepted for each record field (first one is canonical).
_URL_FIELDS = ("url", "profile_url", "file_name")
_ETAG_FIELDS = ("etag", "md5")
_ETAG_RE = re.compile(r"^[0-9a-fA-F]{32}(-[1-9][0-9]*)?$")
_PERMALINK_RE = re.compile(
    r"^https?://github\.com/[^/]+/[^/]+/(?:tree|blob|commit|releases/tag)/(?P<ref>[^/?#]+)"
)


def split_storage_url(url: str) -> tuple[str | None, str, str]:
    """Return ``(bucket, key, storage_url)`` for a manifest URL.

    S3 bucket URLs (``https://<bucket>.s3.amazonaws.com/<key>``, regional and path-style
    forms, ``s3://<bucket>/<key>``) load through S3, so their storage URL is
    ``s3://<bucket>/<key>``. Any other URL or path loads as written, with ``bucket`` None
    and ``key`` the path without its leading slash.

    >>> split_storage_url("https://cellpainting-gallery.s3.amazonaws.com/a/b.parquet")
    ('cellpainting-gallery', 'a/b.parquet', 's3://cellpainting-gallery/a/b.parquet')
    >>> split_storage_url("https://s3.us-east-1.amazonaws.com/cellpainting-gallery/a/b.parquet")[0]
    'cellpainting-gallery'
    >>> split_storage_url("https://example.org/x/y.csv.gz")
    (None, 'x/y.csv.gz', 'https://example.org/x/y.csv.gz')

    A pinned version (``?versionId=``) is kept in the storage URL:

    >>> split_storage_url("https://b.s3.amazonaws.com/a/b.parquet?versionId=v1")[2]
    's3://b/a/b.parquet?versionId=v1'
    """
    from .errors import GalleryPathError
    from .layout import split_url

    try:
        bucket, key = split_url(url)
    except GalleryPathError:  # not a bucket URL: loads as written
        return None, urlsplit(url).path.lstrip("/"), url
    if bucket is None:  # a plain path
        return None, key, url
    key = key.partition("?")[0]  # s3:// keys keep their query in split_url
    if not bucket or not key.strip("/"):
        raise ManifestError(
            f"URL {url!r} names no object: expected s3://<bucket>/<key> or "
            "https://<bucket>.s3.amazonaws.com/<key>"
        )
    version = version_of(url)
    return bucket, key, f"s3://{bucket}/{key}" + (f"?versionId={version}" if version else "")


def version_of(url: str) -> str | None:
    """The object version a URL pins (``?versionId=...``), or ``None``.

    >>> version_of("https://b.s3.amazonaws.com/k/x.parquet?versionId=3HL4kqtJlcpX")
    '3HL4kqtJlcpX'
    >>> version_of("s3://b/k/x.parquet") is None
    True
    """
    if "versionId=" not in url:  # (most URLs: parsing each costs ~10 us)
        return None
    values = parse_qs(urlsplit(url).query).get("versionId")
    return values[0] if values else None


def recipe_ref(permalink: str | None) -> str | None:
    """The commit sha or tag a GitHub permalink points at (None if it is not one).

    >>> recipe_ref("https://github.com/broadinstitute/jump-profiling-recipe/tree/v0.6.0")
    'v0.6.0'
    >>> recipe_ref("https://github.com/o/r/blob/a917fa79342ff92cf0ea05d6d9174d9028a90f8f/inputs/orf.json")
    'a917fa79342ff92cf0ea05d6d9174d9028a90f8f'
    >>> recipe_ref(None) is None
    True
    """
    if not permalink:
        return None
    m = _PERMALINK_RE.match(permalink.strip())
    return m.group("ref") if m else None


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One manifest record, parsed.

    ``subset`` is the record's name in the manifest; ``path_subset``, ``project``,
    ``source``, ``product``, ``version`` and ``variant`` are parsed from the URL through the
    gallery layout (None where the URL does not say). ``etag`` is None when none was recorded.
    """

    subset: str
    url: str
    storage_url: str
    bucket: str | None
    key: str
    etag: str | None = None
    recipe_permalink: str | None = None
    config_permalink: str | None = None
    recipe_ref: str | None = None
    project: str | None = None
    source: str | None = None
    product: str | None = None
    path_subset: str | None = None
    version: str | None = None
    variant: str | None = None
    version_id: str | None = None

    def resolve(self, root: str | None = None) -> str:
        """The URL to load from: the storage URL, or the same key under ``root``.

        A key that would leave ``root`` (or its bucket) is refused with a
        :class:`~intake_cpg.errors.GalleryPathError` (see :func:`~intake_cpg.storage.contained_key`).

        >>> r = parse_manifest('[{"subset": "a", "url": "https://b.s3.amazonaws.com/k/x.parquet"}]', "m")[0]
        >>> r.resolve(), r.resolve("s3://mirror/prefix/"), r.resolve("/data")
        ('s3://b/k/x.parquet', 's3://mirror/prefix/k/x.parquet', '/data/k/x.parquet')
        """
        from .storage import contained_key  # the one containment rule, for every key

        if not root:
            if self.bucket is not None:
                contained_key(self.key, f"s3://{self.bucket}")
            return self.storage_url
        return f"{root.rstrip('/')}/{contained_key(self.key, root)}"

    def storage_root(self, root: str | None = None) -> str:
        """The root the record's ``key`` is relative to (``s3://<bucket>`` or ``root``)."""
        if root:
            return root.rstrip("/") or "/"
        if self.bucket is not None:
            return f"s3://{self.bucket}"
        base = self.storage_url[: len(self.storage_url) - len(self.key)].rstrip("/")
        return base or "/"

    def to_metadata(self) -> dict[str, Any]:
        """The record as a plain dict (entry metadata)."""
        return asdict(self)


# -- parsing ------------------------------------------------------------------------------
def _where(name: str, index: int, subset: Any = None) -> str:
    label = f"{name}: record {index}"
    if subset:
        label += f" (subset {subset!r})"
    return label


def _table_rows(text: str, name: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    header = lines[0] if lines else ""
    delimiter = "\t" if "\t" in header else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ManifestError(f"{name}: not valid CSV ({exc})") from exc
    if not rows:
        raise ManifestError(f"{name}: the manifest is empty")
    columns = [c.strip().lower() for c in rows[0]]
    if not ({"subset", *_URL_FIELDS} & set(columns)) or len(set(columns)) != len(columns):
        raise ManifestError(
            f"{name}: unrecognised manifest header {rows[0]!r}; expected a JSON list of records "
            "or a CSV with columns subset,url[,etag]"
        )
    out = []
    for i, row in enumerate(rows[1:]):
        if len(row) > len(columns):
            raise ManifestError(
                f"{_where(name, i, row[0] if row else None)}: {len(row)} fields for "
                f"{len(columns)} columns {columns}; quote values that contain the separator"
            )
        out.append({c: v.strip() for c, v in zip(columns, row, strict=False)})
    return out


def _json_rows(text: str, name: str) -> list[Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{name}: not valid JSON ({exc})") from exc
    if isinstance(doc, Mapping):
        if "datasets" not in doc:
            raise ManifestError(
                f"{name}: a JSON object manifest must hold its records under 'datasets'; "
                f"found keys {sorted(doc)!r}"
            )
        doc = doc["datasets"]
    if not isinstance(doc, list):
        raise ManifestError(f"{name}: expected a list of records, got {type(doc).__name__}")
    return doc


def _pick(row: Mapping[str, Any], fields: Iterable[str], where: str) -> Any:
    found = {f: row[f] for f in fields if row.get(f) not in (None, "")}
    values = set(map(str, found.values()))
    if len(values) > 1:
        raise ManifestError(f"{where}: conflicting values {found!r}; keep one of them")
    return next(iter(found.values()), None)


def _stem(url: str) -> str:
    base = url.rstrip("/").rsplit("/", 1)[-1]
    return base.split(".", 1)[0] or base


def _layout_fields(key: str) -> dict[str, str | None]:
    from . import layout  # imported here: manifest parsing must not fail if layout cannot parse

    try:
        path = layout.parse_key(key)
    except ValueError:
        log.debug("key %r does not follow the gallery layout", key)
        return {}
    return {
        "project": path.project,
        "source": path.source,
        "product": path.product,
        "path_subset": path.subset,
        "version": path.version,
        "variant": path.variant,
    }


def _record(row: Any, index: int, name: str, derive_subset: bool) -> ManifestRecord:
    if not isinstance(row, Mapping):
        raise ManifestError(
            f"{_where(name, index)}: expected an object with subset and url, "
            f"got {type(row).__name__} {row!r}"
        )
    row = {str(k).strip().lower(): v for k, v in row.items()}
    subset = row.get("subset")
    where = _where(name, index, subset)
    url = _pick(row, _URL_FIELDS, where)
    if not isinstance(url, str) or not url.strip():
        raise ManifestError(f"{where}: no URL (expected one of the fields {list(_URL_FIELDS)})")
    url = url.strip()
    if subset is None and derive_subset:
        subset = _stem(url)
    if not isinstance(subset, str) or not subset.strip():
        raise ManifestError(f"{where}: no subset name (expected a non-empty 'subset' field)")
    subset = subset.strip()
    etag = _pick(row, _ETAG_FIELDS, where)
    if etag is not None:
        etag = str(etag).strip().strip('"')
        if not _ETAG_RE.match(etag):
            raise ManifestError(
                f"{where}: {etag!r} is not an S3 ETag (expected 32 hex digits, "
                "optionally followed by -<number of parts>)"
            )
        etag = etag.lower()
    try:
        bucket, key, storage_url = split_storage_url(url)
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from exc
    recipe = row.get("recipe_permalink") or None
    config = row.get("config_permalink") or None
    return ManifestRecord(
        subset=subset,
        url=url,
        storage_url=storage_url,
        bucket=bucket,
        key=key,
        etag=etag,
        recipe_permalink=recipe,
        config_permalink=config,
        recipe_ref=recipe_ref(recipe) or recipe_ref(config),
        version_id=version_of(url),
        **_layout_fields(key),
    )


def parse_manifest(text: str, name: str = "<manifest>") -> tuple[ManifestRecord, ...]:
    """Parse a manifest's text (any real shape) into records; ``name`` labels errors.

    >>> text = '{"datasets": [{"subset": "orf", "profile_url": "s3://b/p/orf.parquet", "etag": ""}]}'
    >>> parse_manifest(text, "index.json")[0].etag is None
    True
    >>> parse_manifest("[1, 2]", "bad.json")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ManifestError: bad.json: record 0: expected an object with subset and url, got int 1
    """
    if not isinstance(text, str):
        raise ManifestError(f"{name}: expected the manifest as text, got {type(text).__name__}")
    body = text.lstrip("\ufeff").strip()
    if not body:
        raise ManifestError(f"{name}: the manifest is empty")
    rows = _json_rows(body, name) if body[0] in "[{" else _table_rows(body, name)
    derive = bool(rows) and all(isinstance(r, Mapping) and "subset" not in r for r in rows)
    records = tuple(_record(row, i, name, derive) for i, row in enumerate(rows))
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.subset in seen:
            raise ManifestError(
                f"{_where(name, i, rec.subset)}: duplicate subset name, also record {seen[rec.subset]}; "
                "subset names must be unique within a manifest"
            )
        seen[rec.subset] = i
    return records


def read_manifest(
    urlpath: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[ManifestRecord, ...]:
    """Read and parse a manifest from a local path, ``s3://`` or ``https://`` URL.

    HTTPS bucket URLs are read through S3 (anonymously unless ``storage_options`` brings
    credentials); ``storage_options`` apply as :func:`intake_cpg.storage.effective_options`
    says (S3 only: local paths and other web pages get none).

    >>> import tempfile, os
    >>> fn = os.path.join(tempfile.mkdtemp(), "index.csv")
    >>> _ = open(fn, "w").write("subset,url\\norf,https://b.s3.amazonaws.com/k/orf.parquet")
    >>> [r.subset for r in read_manifest(fn)]
    ['orf']
    """
    from .storage import open_url

    if not isinstance(urlpath, str) or not urlpath.strip():
        raise ManifestError(f"manifest location must be a non-empty path or URL, got {urlpath!r}")
    bucket, key, storage_url = split_storage_url(urlpath)
    target = storage_url if bucket is not None else urlpath
    try:
        with open_url(target, storage_options) as f:
            raw = f.read()
    except FileNotFoundError as exc:
        raise ManifestError(f"no manifest at {urlpath!r} (read from {target!r})") from exc
    except OSError as exc:
        raise StorageError(f"could not read the manifest {urlpath!r}: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{urlpath}: not UTF-8 text ({exc}); expected JSON or CSV") from exc
    records = parse_manifest(text, urlpath)
    log.debug("read %d records from manifest %s", len(records), urlpath)
    return records
