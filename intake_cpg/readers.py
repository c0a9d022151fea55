"""Reading one gallery table file into pandas: formats, dtypes, schema alignment.

This module knows file formats and column rules; it knows nothing about Intake or dask.
:mod:`intake_cpg.sources` builds the dask graph from it. Everything here is either pure
(works on names, dtypes and DataFrames) or reads exactly one file through fsspec.

Rules applied to every table, whatever its format:

* every ``Metadata_*`` column, and the deep-learning tables' ``source, batch, plate, well``,
  is a string (:data:`STRING_DTYPE`), so the plate ``1053601756`` never becomes an integer;
* numbers in text files are ``float64`` (a sample of rows cannot prove that a later row is
  not empty), numbers in parquet keep their stored type;
* list-typed (embedding) columns stay lists unless expansion is asked for.

>>> detect_format("s3://b/p/BR1/BR1_normalized.csv.gz")
FileFormat(kind='text', sep=',', compression='gzip')
>>> is_string_column("Metadata_Plate"), is_string_column("plate"), is_string_column("Cells_Area")
(True, True, False)
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import polars_frames
from .errors import (
    CPGError,
    DataReadError,
    EtagMismatchError,
    OutOfMemoryError,
    ParameterError,
    SchemaMismatchError,
    StorageError,
    close_matches,
)
from .fetch import is_async_s3
from .footer_cache import FooterCache, object_identity, read_columns
from .layout import GalleryPath
from .refs import FileRef, ref_from_url
from .storage import (
    filesystem,
    is_transport_failure,
    protocol_of,
    transport_error,
    transport_errors,
)

log = logging.getLogger(__name__)

__all__ = [
    "FileFormat",
    "FileSchema",
    "ReadPlan",
    "SCHEMA_MODES",
    "STRING_DTYPE",
    "apply_filters",
    "combine_schemas",
    "detect_format",
    "dtype_names",
    "expand_list_columns",
    "filter_columns",
    "is_string_column",
    "path_values",
    "read_file",
    "read_partition",
    "read_schema",
    "typed_like",
]

#: The one string dtype of every string column, in meta and in partitions: ``string[pyarrow]``,
#: the dtype dask's string conversion gives, so ``read_partition`` and ``to_dask`` agree.
STRING_DTYPE = pd.StringDtype("pyarrow")
#: Lower-case metadata columns of the deep-learning profiles.
DL_STRING_COLUMNS = frozenset({"source", "batch", "plate", "well", "site"})
#: Schema modes of :class:`~intake_cpg.sources.ProfilesSource`.
SCHEMA_MODES = ("strict", "first", "union", "intersection")
#: Output column -> :class:`~intake_cpg.layout.GalleryPath` field, for path-derived metadata.
PATH_COLUMNS: Mapping[str, str] = {
    "Metadata_Source": "source",
    "Metadata_Batch": "batch",
    "Metadata_Plate": "plate",
}
#: Decoded tables larger than this are converted to pandas freeing Arrow memory as they go
#: (one copy at a time instead of two: a row group of an assembled file is hundreds of MB).
LARGE_TABLE_BYTES = 64 * 2**20
#: Bytes of a text file read to learn its columns and dtypes (more when the header is longer).
TEXT_SAMPLE_BYTES = 256 * 1024
#: Reads of a whole text file whose body arrives shorter than the object's size.
SHORT_READ_ATTEMPTS = 3

_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_TEXT_SEPS = {"csv": ",", "tsv": "\t", "txt": "\t"}
_FORMAT_NAMES = ("parquet", "csv", "csv.gz", "tsv", "tsv.gz", "txt", "txt.gz")
_READ_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowException,
    pd.errors.EmptyDataError,
    pd.errors.ParserError,
    UnicodeDecodeError,
    gzip.BadGzipFile,
    zlib.error,
    EOFError,
    ValueError,
    OSError,
    MemoryError,
)


def is_string_column(name: str) -> bool:
    """True for columns that must be strings: ``Metadata_*`` and the DL tables' id columns.

    >>> is_string_column("Metadata_Well"), is_string_column("well"), is_string_column("Nuclei_Area")
    (True, True, False)
    """
    return name.startswith("Metadata_") or name in DL_STRING_COLUMNS


@dataclass(frozen=True, slots=True)
class FileFormat:
    """How a file is decoded: ``kind`` is ``"parquet"`` or ``"text"``."""

    kind: Literal["parquet", "text"]
    sep: str | None = None
    compression: str | None = None


def detect_format(url: str, format: str | None = None) -> FileFormat:
    """The format of ``url`` from its extension, or from ``format`` when given.

    ``.txt`` and ``.tsv`` are tab separated (the gallery's platemaps); ``.gz``, ``.bz2``,
    ``.xz`` and ``.zst`` are decompressed.

    >>> detect_format("platemap/C-7161-01-LM6-001.txt")
    FileFormat(kind='text', sep='\\t', compression=None)
    >>> detect_format("x.parquet")
    FileFormat(kind='parquet', sep=None, compression=None)
    >>> detect_format("x.data", format="csv")
    FileFormat(kind='text', sep=',', compression=None)
    >>> detect_format("x.npz")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: cannot tell the format of 'x.npz' from its extension; expected .parquet, .csv, .csv.gz, .tsv or .txt (tab separated); pass format= one of 'parquet', 'csv', 'csv.gz', 'tsv', 'tsv.gz', 'txt', 'txt.gz'
    """
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
    compression = None
    for ext, comp in _COMPRESSIONS.items():
        if name.endswith(ext):
            compression, name = comp, name[: -len(ext)]
            break
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in _FORMAT_NAMES:
            raise ParameterError(
                f"unknown format={format!r}; expected one of {', '.join(map(repr, _FORMAT_NAMES))}"
            )
        if fmt.endswith(".gz"):
            fmt, compression = fmt[:-3], "gzip"
        ext = fmt
    else:
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        if ext == "pq":
            ext = "parquet"
    if ext == "parquet":
        return FileFormat("parquet")
    if ext in _TEXT_SEPS:
        return FileFormat("text", _TEXT_SEPS[ext], compression)
    raise ParameterError(
        f"cannot tell the format of {url!r} from its extension; expected .parquet, .csv, .csv.gz, "
        f".tsv or .txt (tab separated); pass format= one of {', '.join(map(repr, _FORMAT_NAMES))}"
    )


# --------------------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FileSchema:
    """Columns and pandas dtypes of one file, learnt from its footer or header.

    ``list_widths`` maps each list-typed column to its length when known (fixed-size lists,
    or the first row when that was read), else ``None``.
    """

    url: str
    dtypes: Mapping[str, Any]
    list_widths: Mapping[str, int | None] = field(default_factory=dict)
    num_rows: int | None = None
    list_dtypes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.dtypes)


def check_unique_columns(names: Sequence[str], url: str) -> None:
    """Refuse a table whose header names a column twice (readers would rename or crash).

    >>> check_unique_columns(["Metadata_Well", "Cells_x", "Cells_x"], "p.csv")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.DataReadError: p.csv has duplicated column names: 'Cells_x' (2 times). Each column name must appear once; fix the file, or rewrite it with unique names
    """
    if len(set(names)) == len(names):
        return
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    dups = [(n, k) for n, k in counts.items() if k > 1]
    if dups:
        shown = ", ".join(f"{n!r} ({k} times)" for n, k in dups[:10])
        more = f" and {len(dups) - 10} more" if len(dups) > 10 else ""
        raise DataReadError(
            f"{url} has duplicated column names: {shown}{more}. Each column name must appear "
            "once; fix the file, or rewrite it with unique names"
        )


def check_pinned(fh: Any, url: str, etag: str | None) -> None:
    """Refuse an open object whose ETag is not the one it was pinned to (``verify=True``).

    The open saw the object's current ETag (one HEAD) and every range read after it is
    conditional on that ETag (``If-Match``), so checking it here pins the whole read.
    Objects whose store keeps no ETag (local files) are not checked.
    """
    ident = object_identity(fh) if etag else None
    if ident is not None and ident[0].lower() != etag.strip('"').lower():  # type: ignore[union-attr]
        raise EtagMismatchError(
            f"{url} changed after it was verified: its ETag is {ident[0]!r}, verify=True "
            f"checked {etag!r}. Nothing of it was read; load again to verify the object now"
        )


def _read_whole(fs: Any, path: str, url: str, etag: str | None = None) -> bytes:
    """All bytes of one object, checked against its size (a short body is read again)."""
    got = expected = 0
    for attempt in range(1, SHORT_READ_ATTEMPTS + 1):
        with fs.open(path, "rb") as fh:
            check_pinned(fh, url, etag)
            size = getattr(fh, "size", None)
            raw = fh.read()
        if size is None or len(raw) == size:
            return raw
        got, expected = len(raw), int(size)
        log.warning(
            "%s: received %d of its %d bytes (attempt %d of %d); reading it again",
            url, got, expected, attempt, SHORT_READ_ATTEMPTS,
        )  # fmt: skip
    raise StorageError(
        f"{url}: received {got:,} of its {expected:,} bytes, {SHORT_READ_ATTEMPTS} times: the "
        "body was cut short on the way (a proxy, cache or the network). Nothing of it was "
        "returned; try again later."
    )


class ExactReads:
    """An open remote file whose reads return every byte asked for, up to the object's end.

    A body cut short on the way (a proxy or cache that sends fewer bytes than asked, with a
    Content-Length that agrees) is read on from where it stopped, up to
    :data:`SHORT_READ_ATTEMPTS` times per read, then a :class:`~intake_cpg.errors.StorageError`:
    parquet readers never see a short range (they would report a corrupt file, or worse).
    Everything else is the wrapped file's (``details``, ``size``, ``seek``, ...).
    """

    def __init__(self, fh: Any, url: str) -> None:
        self._fh, self._url = fh, url

    @classmethod
    def wrap(cls, fh: Any, url: str) -> Any:
        """``fh`` wrapped when it knows its size (remote files); local files as they are."""
        return cls(fh, url) if isinstance(getattr(fh, "size", None), int) else fh

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __setattr__(self, name: str, value: Any) -> None:  # e.g. ``fh.cache = ...``
        if name in ("_fh", "_url"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._fh, name, value)

    def _complete(self, got: bytes, want: int, more: Callable[[int], bytes]) -> bytes:
        parts, have = [got], len(got)
        for _ in range(SHORT_READ_ATTEMPTS):
            if have >= want:
                break
            log.warning("%s: a read returned %d of %d bytes; reading on", self._url, have, want)
            chunk = more(have)
            parts.append(chunk)
            have += len(chunk)
        if have < want:
            raise StorageError(
                f"{self._url}: a read returned {have:,} of {want:,} bytes after "
                f"{SHORT_READ_ATTEMPTS} more attempts: the body was cut short on the way (a "
                "proxy, cache or the network). Nothing of it was returned; try again later."
            )
        return b"".join(parts)

    def read(self, n: int = -1) -> bytes:
        start = self._fh.tell()
        left = max(self._fh.size - start, 0)
        want = left if n is None or n < 0 else min(n, left)
        return self._complete(self._fh.read(want), want, lambda have: self._fh.read(want - have))

    def _fetch_range(self, start: int, end: int) -> bytes:
        want = max(min(end, self._fh.size) - start, 0)
        fetch = self._fh._fetch_range
        return self._complete(fetch(start, end), want, lambda have: fetch(start + have, end))


def _decompress(raw: bytes, compression: str | None) -> bytes:
    if compression is None:
        return raw
    from fsspec.compression import compr

    with compr[compression](io.BytesIO(raw), mode="rb") as f:
        return f.read()


def _missing_error(url: str, exc: FileNotFoundError) -> StorageError:
    """A deleted (or never existing) object, or a missing bucket, named with what to do."""
    if type(exc.__cause__).__name__ == "NoSuchBucket" or "bucket does not exist" in str(exc):
        return StorageError(
            f"{url}: the bucket does not exist ({exc}); check the URL or root and the endpoint"
        )
    return StorageError(
        f"{url} does not exist ({exc}): it was deleted or moved after it was listed, or "
        "never existed. List again (intake-cpg --refresh, or cat.refresh()) to load the "
        "files that exist now."
    )


def _options_error(
    url: str, storage_options: Mapping[str, Any] | None, exc: TypeError
) -> ParameterError:
    protocol = protocol_of(url)
    return ParameterError(
        f"the {protocol} file system reading {url} does not take storage_options "
        f"{sorted(storage_options or {})}: {exc}. Options are for one kind of storage (these "
        f"look like another's); give {protocol} URLs options of their own, or none."
    )


def _arrow_string_safe(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every string column (see :func:`is_string_column`) typed string."""
    fields = []
    for f in schema:
        if is_string_column(f.name) and not pa.types.is_string(f.type):
            f = f.with_type(pa.string())
        fields.append(f)
    return pa.schema(fields)


def _cast_string_columns(table: pa.Table) -> pa.Table:
    """``table`` with every string column typed string; a float NaN becomes a missing value."""
    safe = _arrow_string_safe(table.schema)
    if safe == table.schema:
        return table
    columns = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if is_string_column(f.name) and pa.types.is_floating(f.type):
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, f.type), col)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=table.schema).cast(safe)


def written_numpy_types(schema: pa.Schema) -> dict[str, str] | None:
    """The NumPy type pandas metadata records per column (empty without pandas metadata), or
    ``None`` when only pyarrow's own conversion can honour that metadata: an index stored as
    columns, or metadata that does not parse.

    >>> t = pa.Table.from_pandas(pd.DataFrame({"a": [1.0]}))
    >>> written_numpy_types(t.schema), written_numpy_types(pa.table({"a": [1.0]}).schema)
    ({'a': 'float64'}, {})
    >>> written_numpy_types(pa.Table.from_pandas(pd.DataFrame({"a": [1.0]}, index=[7])).schema)
    """
    raw = (schema.metadata or {}).get(b"pandas")
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
        if any(isinstance(i, str) for i in meta.get("index_columns", [])):
            return None
        return {c.get("field_name", c.get("name")): c.get("numpy_type") for c in meta["columns"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _plain_dtypes(schema: pa.Schema) -> dict[str, Any] | None:
    """The pandas dtypes of a schema of numbers, booleans and strings, or ``None`` when some
    column needs pyarrow's pandas conversion to tell (other types). Types map one to one, as
    pyarrow maps them without pandas metadata: no empty table is converted (0.25 s for a
    4,765-column plate)."""
    by_type: dict[pa.DataType, Any] = {}  # a wide plate has 4,765 columns of 2 or 3 types
    for t in set(schema.types):
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            by_type[t] = STRING_DTYPE
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            by_type[t] = np.dtype(t.to_pandas_dtype())
        else:
            by_type[t] = None
    out: dict[str, Any] = {}
    for name, t in zip(schema.names, schema.types, strict=True):
        if is_string_column(name):
            out[name] = STRING_DTYPE
            continue
        dt = by_type[t]
        if dt is None:
            return None
        out[name] = dt
    return out


def _pandas_dtypes(schema: pa.Schema) -> dict[str, Any]:
    plain = _plain_dtypes(schema)
    if plain is not None:
        return plain
    schema = _arrow_string_safe(schema)
    empty = schema.empty_table().to_pandas()
    out: dict[str, Any] = {}
    for f, dt in zip(schema, empty.dtypes, strict=True):  # not empty[name]: 4,765 lookups
        if (
            is_string_column(f.name)
            or pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
        ):
            dt = STRING_DTYPE
        out[f.name] = dt
    return out


def dtype_names(df: pd.DataFrame) -> dict[str, str]:
    """Each column's dtype as text, naming each distinct dtype once (``str`` of a NumPy
    dtype costs ~4 us: 20 ms for a full-width plate's 4,765 columns, one by one).

    >>> dtype_names(pd.DataFrame({"n": [1], "x": [1.5], "y": [2.5]}))
    {'n': 'int64', 'x': 'float64', 'y': 'float64'}
    """
    dtypes = df.dtypes.tolist()  # tolist: iterating an Index or a Series is ~10x slower
    named = {t: str(t) for t in set(dtypes)}
    return dict(zip(df.columns.tolist(), (named[t] for t in dtypes), strict=True))


def empty_frame(dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """An empty frame with these columns and dtypes, in order: ``meta`` for dask.

    Consecutive columns of one NumPy dtype become one 2-D block, so 4,765 feature columns
    cost one array, not 4,765 Series (about 1.5 s for a full-width plate's meta).

    >>> meta = empty_frame({"Metadata_Plate": STRING_DTYPE, "a": "float32", "b": "float32"})
    >>> [str(t) for t in meta.dtypes], len(meta)
    (['string', 'float32', 'float32'], 0)
    """
    names = list(dtypes)
    kinds = [pd.api.types.pandas_dtype(dtypes[c]) for c in names]
    parts: list[pd.DataFrame] = []
    start = 0
    for i in range(1, len(names) + 1):
        if i < len(names) and isinstance(kinds[i], np.dtype) and kinds[i] == kinds[start]:
            continue
        cols = pd.Index(names[start:i], dtype=object)
        if isinstance(kinds[start], np.dtype):
            block = np.empty((0, i - start), dtype=kinds[start])
            parts.append(pd.DataFrame(block, columns=cols, copy=False))
        else:
            parts.append(pd.DataFrame({names[start]: pd.array([], dtype=kinds[start])}))
        start = i
    if not parts:
        return pd.DataFrame(index=pd.RangeIndex(0))
    return parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)


def _list_dtypes(schema: pa.Schema) -> dict[str, np.dtype]:
    out = {}
    for f in schema:
        if (
            pa.types.is_list(f.type)
            or pa.types.is_large_list(f.type)
            or pa.types.is_fixed_size_list(f.type)
        ):
            vt = f.type.value_type
            out[f.name] = (
                np.dtype(vt.to_pandas_dtype()) if pa.types.is_floating(vt) else np.dtype("float64")
            )
    return out


def _list_widths(schema: pa.Schema) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            out[f.name] = f.type.list_size
        elif pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            out[f.name] = None
    return out


def _text_dtypes(sample: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, dt in sample.dtypes.items():
        if is_string_column(str(name)):
            out[str(name)] = STRING_DTYPE
        elif pd.api.types.is_bool_dtype(dt):
            out[str(name)] = pd.BooleanDtype()
        elif pd.api.types.is_numeric_dtype(dt):
            out[str(name)] = np.dtype("float64")
        else:
            out[str(name)] = STRING_DTYPE
    return out


def _memory_error(url: str, exc: BaseException, fs: Any, path: str) -> OutOfMemoryError:
    try:
        size = f"{int(fs.size(path)):,} bytes"
    except Exception:  # the size only makes the message better
        size = "size unknown"
    m = re.search(r"size (\d+)", str(exc))
    needed = f"; one allocation of {int(m.group(1)):,} bytes failed" if m else ""
    return OutOfMemoryError(
        f"reading {url} ({size}) needed more memory than this process has "
        f"({type(exc).__name__}: {exc or 'out of memory'}{needed}). Load fewer columns "
        "(columns=[...]) or rows (filters=), or use a machine or dask workers with more memory."
    )


def _data_error(
    url: str, fmt: FileFormat, exc: BaseException, fs: Any = None, path: str = ""
) -> CPGError:
    if isinstance(exc, MemoryError):
        return _memory_error(url, exc, fs, path)
    if is_transport_failure(exc):  # the request failed, the bytes may be fine
        return transport_error(url, exc)
    kind = "parquet" if fmt.kind == "parquet" else f"{fmt.compression or 'plain'} text"
    return DataReadError(
        f"cannot read {url} as {kind}: {type(exc).__name__}: {exc}. The file may be truncated, "
        "empty or in another format; check it (e.g. its size and ETag against the manifest), or "
        "pass format= if the extension is misleading."
    )


@contextlib.contextmanager
def _read_errors(
    url: str,
    fmt: FileFormat,
    storage_options: Mapping[str, Any] | None,
    fs: Any,
    path: str,
    etag: str | None = None,
) -> Iterator[None]:
    """The one mapping of a failed read to the project's errors (schema and data reads):
    missing object, bad storage options, a replaced object under ``etag``, unreadable data."""
    try:
        yield
    except FileNotFoundError as exc:
        raise _missing_error(url, exc) from exc
    except CPGError:
        raise
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise _options_error(url, storage_options, exc) from exc
    except (*_READ_ERRORS, *transport_errors()) as exc:
        if etag and type(exc).__name__ == "FileExpired":  # an If-Match read found a new ETag
            raise EtagMismatchError(
                f"{url} changed while it was being read, after verify=True checked its ETag "
                f"{etag!r}: {exc}. Nothing of it was returned; load again to verify it now"
            ) from exc
        raise _data_error(url, fmt, exc, fs, path) from exc


def read_schema(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    format: str | None = None,
    list_widths: bool = False,
    sample_bytes: int = TEXT_SAMPLE_BYTES,
    footer_cache: FooterCache | None = None,
    ref: FileRef | None = None,
) -> FileSchema:
    """Columns and dtypes of one file, reading only its parquet footer or text header.

    A parquet footer costs about 600 bytes per column (a 4,765-column plate: ~3 MB); a text
    header read takes the first ``sample_bytes`` (uncompressed) to infer dtypes. With
    ``list_widths=True`` the first row of each variable-length list column is read too.
    With a ``footer_cache`` the footer of an unchanged object is not read again. On S3 the
    footer comes through :func:`~intake_cpg.parquet_engine.read_footer` (no HEAD; with the
    size and ETag of ``ref``, the file's listing entry, one request or none).
    """
    fmt = detect_format(url, format)
    fs, path = filesystem(url, storage_options)
    with _read_errors(url, fmt, storage_options, fs, path):
        if fmt.kind == "parquet" and is_async_s3(fs):
            from .parquet_engine import read_footer

            md = read_footer(fs, ref if ref is not None and ref.url == url else url, footer_cache)
            schema = md.schema.to_arrow_schema()
            widths = _list_widths(schema)
            if not (list_widths and any(w is None for w in widths.values())):
                check_unique_columns(schema.names, url)
                return FileSchema(
                    url, _pandas_dtypes(schema), widths, md.num_rows, _list_dtypes(schema)
                )
        if fmt.kind == "parquet":  # (or a list column's first row is needed for its width)
            with fs.open(path, "rb", cache_type="none") as raw:
                fh = ExactReads.wrap(raw, url)
                md = None if footer_cache is None else footer_cache.load(fh, url)
                if md is None:
                    frag = ds.ParquetFileFormat().make_fragment(fh)
                    schema, num_rows = frag.physical_schema, frag.metadata.num_rows
                else:
                    schema, num_rows = md.schema.to_arrow_schema(), md.num_rows
                check_unique_columns(schema.names, url)
                widths = _list_widths(schema)
                if list_widths and any(w is None for w in widths.values()):
                    pf = pq.ParquetFile(fh, metadata=md)
                    todo = [c for c, w in widths.items() if w is None]
                    first = next(pf.iter_batches(batch_size=1, columns=todo), None)
                    if first is not None and first.num_rows:
                        for c in todo:
                            value = first.column(c)[0]
                            widths[c] = len(value) if value.is_valid else None
            return FileSchema(url, _pandas_dtypes(schema), widths, num_rows, _list_dtypes(schema))
        with fs.open(path, "rb", compression=fmt.compression, block_size=sample_bytes) as fh:
            data = fh.read(sample_bytes)
            while b"\n" not in data:  # the sample always holds the whole header line
                more = fh.read(sample_bytes)
                if not more:
                    break
                data += more
            complete = len(fh.read(1)) == 0
        if not complete and b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]
        sample = _read_text_bytes(data, fmt, names=None, url=url)
        return FileSchema(url, _text_dtypes(sample), {}, len(sample) if complete else None)


def _text_header(data: bytes, fmt: FileFormat, url: str) -> list[str]:
    """The column names of a text table as written (pandas would rename duplicates)."""
    first = pd.read_csv(io.BytesIO(data), sep=fmt.sep, header=None, nrows=1, dtype=str)
    raw = list(first.iloc[0]) if len(first) else []
    cols = [f"Unnamed: {i}" if pd.isna(c) else str(c) for i, c in enumerate(raw)]  # as pandas
    check_unique_columns(cols, url)
    return cols


def _read_text_bytes(
    data: bytes,
    fmt: FileFormat,
    names: Sequence[str] | None,
    dtypes: Mapping[str, Any] | None = None,
    url: str = "table",
) -> pd.DataFrame:
    """Decode (already decompressed) text; string columns stay strings."""
    cols = _text_header(data, fmt, url)
    dtype: dict[str, Any] = {c: str for c in cols if is_string_column(c)}
    for c, dt in (dtypes or {}).items():
        if c in cols and not is_string_column(c):
            dtype[c] = "float64" if pd.api.types.is_float_dtype(dt) else dt
    usecols: Callable[[str], bool] | None = None
    if names is not None:
        wanted = set(names)
        usecols = lambda c: c in wanted  # noqa: E731
    return pd.read_csv(
        io.BytesIO(data), sep=fmt.sep, dtype=dtype, usecols=usecols, low_memory=False
    )


def typed_like(schema: FileSchema, donor: FileSchema) -> FileSchema:
    """``schema`` (a header-only text file's: no rows, so no dtypes) with ``donor``'s dtypes.

    >>> empty = FileSchema("a.csv", {"Metadata_Well": STRING_DTYPE, "x": STRING_DTYPE}, num_rows=0)
    >>> rows = FileSchema("b.csv", {"Metadata_Well": STRING_DTYPE, "x": np.dtype("float64")})
    >>> typed_like(empty, rows).dtypes["x"]
    dtype('float64')
    """
    dtypes = {
        c: dt if is_string_column(c) else donor.dtypes.get(c, dt) for c, dt in schema.dtypes.items()
    }
    return FileSchema(schema.url, dtypes, schema.list_widths, schema.num_rows, schema.list_dtypes)


def combine_schemas(schemas: Sequence[FileSchema], mode: str) -> dict[str, Any]:
    """The expected columns and dtypes of several files under ``mode``.

    ``"union"``: every column of every file, in first-seen order; ``"intersection"``: the
    columns of every file, in the first file's order; ``"strict"`` and ``"first"``: the first
    file's. Numeric dtypes that differ are promoted (``float32`` + ``float64`` -> ``float64``);
    other conflicts become strings.

    >>> a = FileSchema("a", {"x": np.dtype("float32"), "y": np.dtype("float32")})
    >>> b = FileSchema("b", {"x": np.dtype("float64"), "z": np.dtype("float64")})
    >>> combine_schemas([a, b], "union")
    {'x': dtype('float64'), 'y': dtype('float32'), 'z': dtype('float64')}
    >>> combine_schemas([a, b], "intersection")
    {'x': dtype('float64')}
    """
    if mode not in SCHEMA_MODES:
        raise ParameterError(f"unknown schema={mode!r}; expected one of {', '.join(SCHEMA_MODES)}")
    if not schemas:
        return {}
    if mode in ("strict", "first"):
        return dict(schemas[0].dtypes)
    out: dict[str, Any] = {}
    for s in schemas:
        for c, dt in s.dtypes.items():
            out[c] = dt if c not in out else _promote(out[c], dt)
    if mode == "intersection":
        common = set.intersection(*(set(s.columns) for s in schemas))
        out = {c: out[c] for c in schemas[0].columns if c in common}
    return out


def _promote(a: Any, b: Any) -> Any:
    if a == b:
        return a
    if isinstance(a, np.dtype) and isinstance(b, np.dtype) and a.kind in "iuf" and b.kind in "iuf":
        return np.result_type(a, b)
    return STRING_DTYPE if a == STRING_DTYPE or b == STRING_DTYPE else np.dtype(object)


# --------------------------------------------------------------------------------------
# pure transformations
# --------------------------------------------------------------------------------------
def path_values(path: GalleryPath | None) -> dict[str, str]:
    """``Metadata_Source``/``Metadata_Batch``/``Metadata_Plate`` values of a parsed gallery path.

    Files outside the gallery layout (``path=None``) give ``{}``.

    >>> from intake_cpg.layout import parse_key
    >>> path_values(parse_key("cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR1/BR1.parquet"))
    {'Metadata_Source': 'source_4', 'Metadata_Batch': '2021_04_26_Batch1', 'Metadata_Plate': 'BR1'}
    """
    if path is None:
        return {}
    out = {}
    for col, attr in PATH_COLUMNS.items():
        value = getattr(path, attr, None)
        if value:
            out[col] = str(value)
    return out


def filter_columns(filters: Any) -> list[str]:
    """Column names used by a DNF ``filters`` list (pyarrow's format).

    >>> filter_columns([("a", "==", 1), ("b", "in", [1, 2])])
    ['a', 'b']
    >>> filter_columns([[("a", ">", 1)], [("c", "<", 0)]])
    ['a', 'c']
    """
    out: list[str] = []
    for conj in _dnf(filters):
        for col, _, _ in conj:
            if col not in out:
                out.append(col)
    return out


def _dnf(filters: Any) -> list[list[tuple[str, str, Any]]]:
    if filters is None or (isinstance(filters, list | tuple) and not filters):
        return []

    def term(t: Any) -> bool:
        return isinstance(t, tuple | list) and len(t) == 3 and isinstance(t[0], str)

    bad = ParameterError(
        f"filters={filters!r} is not in pyarrow's DNF form: a list of (column, op, value) "
        "tuples, or a list of such lists (OR of ANDs)"
    )
    if not isinstance(filters, list | tuple):
        raise bad
    if all(term(t) for t in filters):
        dnf = [[tuple(t) for t in filters]]
    elif all(isinstance(c, list | tuple) and all(term(t) for t in c) for c in filters):
        dnf = [[tuple(t) for t in conj] for conj in filters]
    else:
        raise bad
    for conj in dnf:
        for t in conj:
            if t[1] not in _OPS:
                raise ParameterError(
                    f"unknown filter operator {t[1]!r} in {t!r}; expected one of {list(_OPS)}"
                )
    return dnf  # type: ignore[return-value]


_OPS: dict[str, Callable[[pd.Series, Any], pd.Series]] = {
    "==": lambda s, v: s == v,
    "=": lambda s, v: s == v,
    "!=": lambda s, v: s != v,
    "<": lambda s, v: s < v,
    "<=": lambda s, v: s <= v,
    ">": lambda s, v: s > v,
    ">=": lambda s, v: s >= v,
    "in": lambda s, v: s.isin(list(v)),
    "not in": lambda s, v: ~s.isin(list(v)),
}


def apply_filters(df: pd.DataFrame, filters: Any) -> pd.DataFrame:
    """Rows of ``df`` that satisfy the DNF ``filters`` (same meaning as pyarrow's).

    >>> df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    >>> apply_filters(df, [("a", ">", 1), ("b", "!=", "z")])["a"].tolist()
    [2]
    >>> apply_filters(df, [[("a", "==", 1)], [("b", "in", ["z"])]])["a"].tolist()
    [1, 3]
    """
    dnf = _dnf(filters)
    if not dnf:
        return df
    keep = pd.Series(False, index=df.index)
    for conj in dnf:
        part = pd.Series(True, index=df.index)
        for col, op, value in conj:
            if op not in _OPS:
                raise ParameterError(
                    f"unknown filter operator {op!r}; expected one of {list(_OPS)}"
                )
            if col not in df.columns:
                raise ParameterError(
                    f"filter column {col!r} is not in the table; columns: {list(df.columns)[:20]}"
                )
            part &= _OPS[op](df[col], value).fillna(False).astype(bool)
        keep |= part
    return df.loc[keep.to_numpy()]


def expand_list_columns(df: pd.DataFrame, widths: Mapping[str, int], url: str = "") -> pd.DataFrame:
    """Replace each list column ``name`` by float columns ``name_0 .. name_{k-1}``.

    >>> df = pd.DataFrame({"well": ["A01", "A02"], "emb": [np.array([1.0, 2.0]), np.array([3.0, 4.0])]})
    >>> expand_list_columns(df, {"emb": 2}).to_dict("list")
    {'well': ['A01', 'A02'], 'emb_0': [1.0, 3.0], 'emb_1': [2.0, 4.0]}
    """
    if not widths:
        return df
    pieces: list[pd.DataFrame | pd.Series] = []
    for col in df.columns:
        if col not in widths:
            pieces.append(df[col])
            continue
        k = widths[col]
        values = df[col].tolist()
        rows = np.full((len(values), k), np.nan)
        for i, v in enumerate(values):
            if v is None or (np.isscalar(v) and pd.isna(v)):
                continue
            arr = np.asarray(v, dtype="float64")
            if arr.shape != (k,):
                raise DataReadError(
                    f"{url or 'table'}: row {i} of list column {col!r} has {arr.size} values, "
                    f"expected {k} (the first file's width); load with expand_embeddings=False"
                )
            rows[i] = arr
        names = [f"{col}_{j}" for j in range(k)]
        pieces.append(pd.DataFrame(rows, index=df.index, columns=names))
    return pd.concat(pieces, axis=1) if pieces else df


# --------------------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadPlan:
    """Everything a dask worker needs to turn files into partitions (picklable, no data).

    ``meta`` is the empty output frame (columns and dtypes every partition has, with the
    ``index`` column still a column). ``expected`` are the file columns a file must provide (``strict``), or may
    provide (other modes); ``path_columns`` are filled from the path when a file lacks them;
    ``check_extra`` makes ``strict``/``first`` look at columns beyond ``expected``;
    ``pin_etags`` makes every read of a file conditional on its reference's ETag (the one
    ``verify=True`` checked): a replaced object is an :class:`~intake_cpg.errors.EtagMismatchError`.
    """

    meta: pd.DataFrame
    expected: tuple[str, ...]
    mode: str = "strict"
    storage_options: Mapping[str, Any] | None = None
    format: str | None = None
    filters: Any = None
    path_columns: tuple[str, ...] = ()
    list_widths: Mapping[str, int] = field(default_factory=dict)
    expected_dtypes: Mapping[str, Any] = field(default_factory=dict)
    check_extra: bool = True
    index: str | None = None
    footer_cache: FooterCache | None = None
    pin_etags: bool = False
    warm_cache: Any = None  # a parquet_engine.WarmCache; else one derived from footer_cache


def read_file(
    url: str,
    columns: Sequence[str] | None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    format: str | None = None,
    filters: Any = None,
    dtypes: Mapping[str, Any] | None = None,
    footer_cache: FooterCache | None = None,
    limit: int | None = None,
    etag: str | None = None,
    prefetched: Any = None,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Read the ``columns`` of one file that it has (all when ``None``).

    ``prefetched`` is the :class:`~intake_cpg.parquet_engine.FileRead` of this file when the
    read engine already fetched and decoded it (:func:`read_partition` does, for S3 parquet);
    only the dtype rules and filters are applied then.

    Returns the frame and all of the file's column names (from the footer or header, at no
    extra cost). Parquet reads go through one fsspec handle without read-ahead, so only the
    footer and the byte ranges of the chosen columns (and, with ``filters`` on columns the file
    has, the row groups whose statistics may match) are transferred. Rows are then filtered
    exactly. Filters on columns the file lacks are left to the caller. With a ``footer_cache``
    the footer of an unchanged object (same ETag and size) comes from the cache; the row
    filter is then applied after reading the chosen columns.
    """
    fmt = detect_format(url, format)
    expr = None
    if prefetched is not None:
        names = tuple(prefetched.names)
        check_unique_columns(names, url)
        if isinstance(prefetched.table, polars_frames.PolarsFile):  # decoded by polars
            df = polars_frames.to_pandas(prefetched.take(), STRING_DTYPE)
            return _finish_frame(df, filters, None), names
        if isinstance(prefetched.table, pd.DataFrame):  # a large piece, decoded into a block
            return _finish_frame(prefetched.take(), filters, None), names
        if filters and _pushdown_ok(prefetched.table.schema, filter_columns(filters)):
            expr = pq.filters_to_expression(filters)
            prefetched.table = prefetched.table.filter(expr)
        return _parquet_frame(prefetched.take(), filters, expr), names
    fs, path = filesystem(url, storage_options)
    with _read_errors(url, fmt, storage_options, fs, path, etag):
        if fmt.kind == "parquet":
            with fs.open(path, "rb", cache_type="none") as raw:
                check_pinned(raw, url, etag)
                fh = ExactReads.wrap(raw, url)
                md = None if footer_cache is None else footer_cache.load(fh, url)
                frag = pf = None
                if md is None and filters and limit is None:  # prunes row groups by statistics
                    frag = ds.ParquetFileFormat().make_fragment(fh)
                    schema = frag.physical_schema
                else:  # ParquetFile reads wide files about twice as fast as a fragment scan
                    pf = pq.ParquetFile(fh, metadata=md, pre_buffer=limit is None)
                    schema = pf.schema_arrow
                names = tuple(schema.names)
                check_unique_columns(names, url)
                have = set(names)
                present = names if columns is None else [c for c in columns if c in have]
                if filters and _pushdown_ok(schema, filter_columns(filters)):
                    expr = pq.filters_to_expression(filters)
                if limit is not None:  # only the first batches: no more row groups than needed
                    assert pf is not None
                    table = _first_rows(pf, list(present), expr, limit)
                elif frag is not None:
                    table = frag.to_table(columns=list(present), filter=expr)
                else:  # with a known footer the chosen chunks are fetched concurrently
                    assert pf is not None
                    cols = list(present)
                    table = read_columns(fh, md, cols) if md is not None else pf.read(columns=cols)
                    table = table if expr is None else table.filter(expr)
            return _parquet_frame(table, filters, expr), names
        else:
            data = _decompress(_read_whole(fs, path, url, etag), fmt.compression)
            df = _read_text_bytes(data, fmt, columns, dtypes, url=url)
            df = df if limit is None else df.head(limit)
            names = tuple(_text_header(data, fmt, url))
    return _finish_frame(df, filters, expr), names


def _parquet_frame(table: pa.Table, filters: Any, expr: Any) -> pd.DataFrame:
    """A decoded parquet table as pandas, with the dtype rules (and remaining filters)."""
    table = _cast_string_columns(table)
    if table.nbytes > LARGE_TABLE_BYTES:  # free Arrow column by column while converting
        return _finish_frame(table.to_pandas(self_destruct=True, split_blocks=True), filters, expr)
    return _finish_frame(table.to_pandas(), filters, expr)


@functools.lru_cache(maxsize=32)
def _string_named(labels: tuple[Any, ...]) -> tuple[Any, ...]:
    """The column labels that must hold strings (:func:`is_string_column`), found once per
    set of columns (a partition of a plate asked it of 4,765 names: 2-7 ms each time)."""
    return tuple(c for c in labels if is_string_column(str(c)))


def _finish_frame(df: pd.DataFrame, filters: Any, expr: Any) -> pd.DataFrame:
    # tolist: iterating a str Index costs ~20 us per name
    for c in _string_named(tuple(df.columns.tolist())):
        col = df[c]  # (a frame when the label is repeated)
        if isinstance(col, pd.DataFrame) or col.dtype != STRING_DTYPE:
            df[c] = col.astype(STRING_DTYPE)
    if filters and expr is None and all(c in df.columns for c in filter_columns(filters)):
        df = apply_filters(df, filters)
    if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
        return df
    return df.reset_index(drop=True)


def _first_rows(pf: pq.ParquetFile, columns: list[str], expr: Any, limit: int) -> pa.Table:
    """The first ``limit`` rows (matching ``expr``) of a parquet file, batch by batch."""
    batches, got = [], 0
    if limit > 0:
        for batch in pf.iter_batches(batch_size=limit, columns=columns):
            part = pa.Table.from_batches([batch])
            part = part if expr is None else part.filter(expr)
            batches.append(part)
            got += part.num_rows
            if got >= limit:
                break
    if not batches:
        return pf.schema_arrow.empty_table().select(columns)
    return pa.concat_tables(batches).slice(0, limit)


def _pushdown_ok(schema: pa.Schema, columns: Sequence[str]) -> bool:
    """Filters go to pyarrow when the file has every filter column stored as it is returned
    (a ``Metadata_*`` column stored as integers is compared as strings, after the cast)."""
    for c in columns:
        idx = schema.get_field_index(c)
        if idx < 0:
            return False
        if is_string_column(c) and not pa.types.is_string(schema.field(idx).type):
            return False
    return True


def _na_series(n: int, dtype: Any, index: pd.Index) -> pd.Series:
    if dtype == STRING_DTYPE:
        return pd.Series(np.nan, index=index, dtype=STRING_DTYPE)
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        dtype = np.dtype("float64")
    return pd.Series(
        pd.NA if isinstance(dtype, pd.api.extensions.ExtensionDtype) else np.nan,
        index=index,
        dtype=dtype,
    )


def _with_path_columns(
    df: pd.DataFrame,
    refs: Sequence[FileRef],
    lengths: Sequence[int],
    plan: ReadPlan,
    have: set[str],
) -> pd.DataFrame:
    """``df`` (the rows of ``refs``, ``lengths`` rows each) with the path-derived columns the
    files lack in front, where ``plan.meta`` has them (appended, they would need reordering)."""
    todo = [c for c in plan.path_columns if c not in have]
    if not todo:
        return df
    values = [path_values(r.path) for r in refs]
    added = {
        col: pd.array(
            np.repeat(np.array([v.get(col) for v in values], dtype=object), lengths),
            dtype=STRING_DTYPE,
        )
        for col in todo
    }
    return pd.concat([pd.DataFrame(added, index=df.index), df], axis=1)


def _as_ref(ref: FileRef | str) -> FileRef:
    return ref if isinstance(ref, FileRef) else ref_from_url(ref)


def _wanted(plan: ReadPlan) -> list[str]:
    fcols = filter_columns(plan.filters)
    wanted = list(plan.expected) + [c for c in fcols if c not in plan.expected]
    if plan.index and plan.index not in wanted:
        wanted.append(plan.index)
    return wanted


def read_one(
    ref: FileRef | str, plan: ReadPlan, limit: int | None = None, prefetched: Any = None
) -> pd.DataFrame:
    """One file as a frame that matches ``plan.meta`` exactly (columns, order, dtypes).

    Path-derived columns come from ``ref.path`` (a URL string is parsed once, here). With
    ``limit``, only the file's first ``limit`` rows are read (the first batches).
    ``prefetched`` is the read engine's read of it (see :func:`read_partition`).
    """
    ref = _as_ref(ref)
    url = ref.url
    fcols = filter_columns(plan.filters)
    wanted = _wanted(plan)
    df, names = read_file(
        url,
        wanted,
        plan.storage_options,
        format=plan.format,
        filters=plan.filters,
        dtypes=plan.expected_dtypes,
        footer_cache=plan.footer_cache,
        limit=limit,
        etag=ref.etag if plan.pin_etags else None,
        prefetched=prefetched,
    )
    have = set(names)
    fillable = set(plan.path_columns)
    missing = [c for c in plan.expected if c not in have and c not in fillable]
    expected = set(plan.expected)
    extra = [c for c in names if c not in expected] if plan.check_extra else []
    extra = [c for c in extra if c not in fillable]
    if plan.mode == "strict" and (missing or extra):
        raise SchemaMismatchError(
            f"{url} does not have the columns of the first file: missing {_show(missing)}, "
            f"extra {_show(extra)}. Load with schema='first' (the first file's columns, missing "
            "ones as NaN, extra ones dropped with a warning), schema='union' (all columns) or "
            "schema='intersection' (shared columns only)."
        )
    if plan.mode == "first" and extra:
        log.warning(
            "schema='first': dropping %d column(s) of %s that the first file lacks: %s",
            len(extra),
            url,
            _show(extra),
        )
    df = _with_path_columns(df, [ref], [len(df)], plan, have)
    if plan.filters and not all(c in names for c in fcols):
        df = apply_filters(df, plan.filters)
    if plan.list_widths:
        df = expand_list_columns(df, plan.list_widths, url)
    return conform(df, plan.meta, url)


def reorder_columns(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """``df[order]`` (unique column names) without copying the data when ``order`` is a few
    runs of ``df``'s consecutive columns (path columns moved to the front, a column subset):
    those runs are sliced as views and put side by side, where ``df[order]`` copies every
    column (264 MB for one assembled-profile row group).

    >>> df = pd.DataFrame({"a": [1], "b": [2], "c": [3], "p": ["x"]})
    >>> reorder_columns(df, ["p", "a", "b", "c"]).columns.tolist()
    ['p', 'a', 'b', 'c']
    """
    pos = df.columns.get_indexer(order)
    runs, start = [], 0
    for i in range(1, len(pos) + 1):
        if i == len(pos) or pos[i] != pos[i - 1] + 1:
            runs.append((int(pos[start]), int(pos[i - 1]) + 1))
            start = i
    if not runs or len(runs) > 16:  # scattered columns: one take is cheaper than many slices
        return df[list(order)]
    if len(runs) == 1:
        return df.iloc[:, runs[0][0] : runs[0][1]]
    return pd.concat([df.iloc[:, a:b] for a, b in runs], axis=1)


def conform(df: pd.DataFrame, meta: pd.DataFrame, url: str = "") -> pd.DataFrame:
    """``df`` with exactly ``meta``'s columns, order and dtypes (missing columns as NA)."""
    wanted = meta.columns.tolist()  # tolist: iterating a str Index costs ~20 us per name
    have = df.columns.tolist()
    if df.columns.is_unique and set(wanted) <= set(have):  # common case: no copy at all
        out = df if have == wanted else reorder_columns(df, wanted)
        if out.dtypes.tolist() == meta.dtypes.tolist():
            return out
    cols = {}
    for col in meta.columns:
        dtype = meta[col].dtype
        if col not in df.columns:
            cols[col] = _na_series(len(df), dtype, df.index)
            continue
        s = df[col]
        if s.dtype != dtype:
            try:
                s = s.astype(dtype)
            except (TypeError, ValueError) as exc:
                raise DataReadError(
                    f"{url}: column {col!r} holds {s.dtype} values that cannot become {dtype} "
                    f"like the first file's ({exc}); load with schema='union' to widen types"
                ) from exc
        cols[col] = s
    return pd.DataFrame(cols, index=df.index)


def read_partition(refs: Iterable[Any], plan: ReadPlan) -> pd.DataFrame:
    """Several files (one dask partition) concatenated, matching ``plan.meta``.

    Items are URLs, :class:`~intake_cpg.refs.FileRef` or
    :class:`~intake_cpg.parquet_engine.Piece` (a file's row groups). Parquet files on S3 are
    fetched together through :mod:`intake_cpg.parquet_engine` (all of them concurrently), each
    request pinned by ``If-Match`` to the reference's ETag (from the listing, or the one
    ``verify=True`` checked).
    """
    from . import parquet_engine

    items = list(refs)
    stack = (
        not plan.filters and not plan.list_widths and polars_frames.flat_dtypes(plan.meta.dtypes)
    )
    try:
        reads = parquet_engine.prefetch(
            items, plan, _wanted(plan) if plan.check_extra is False else None, stack=stack
        )
    except StorageError as exc:
        if plan.pin_etags and _is_changed(exc):
            raise EtagMismatchError(
                f"{exc} It changed after verify=True checked its ETag: nothing of it was "
                "returned; load again to verify it now"
            ) from exc
        raise
    except FileNotFoundError as exc:  # deleted after listing: the same error as other reads
        url = f"s3://{exc.filename}" if exc.filename else parquet_engine.ref_of(items[0]).url
        raise _missing_error(url, exc) from exc
    out = None
    if isinstance(reads, parquet_engine.StackedRead):
        out = _read_stacked(items, reads, plan)
        if out is None:
            reads = reads.split()
    if out is None:
        frames = [
            read_one(parquet_engine.ref_of(u), plan, prefetched=r)
            for u, r in zip(items, reads, strict=True)
        ]
        out = frames[0] if len(frames) == 1 else pd.concat(frames, axis=0, ignore_index=True)
    return out.set_index(plan.index) if plan.index else out


def _read_stacked(items: Sequence[Any], read: Any, plan: ReadPlan) -> pd.DataFrame | None:
    """A partition of whole flat files decoded together (``read``, a
    :class:`~intake_cpg.parquet_engine.StackedRead`) converted once, when they have exactly
    the plan's columns; ``None`` when the files need :func:`read_one` (columns in another
    order, or other columns than the plan's)."""
    from .parquet_engine import ref_of

    names = read.names
    if names != tuple(plan.expected):
        return None
    check_unique_columns(names, read.urls[0])
    table, read.table = read.table, None
    df = _finish_frame(polars_frames.to_pandas(table, STRING_DTYPE), None, None)
    refs = [_as_ref(ref_of(it)) for it in items]
    df = _with_path_columns(df, refs, read.lengths, plan, set(names))
    return conform(df, plan.meta, read.urls[0])


def _is_changed(exc: BaseException) -> bool:
    """Whether a read found its object replaced (an ``If-Match`` refusal in the causes)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "FileExpired":
            return True
        seen = seen.__cause__
    return False


def _show(cols: Sequence[str], n: int = 10) -> str:
    if not cols:
        return "none"
    shown = ", ".join(repr(c) for c in cols[:n])
    return f"[{shown}{', ...' if len(cols) > n else ''}] ({len(cols)})"


def unknown_columns_error(unknown: Sequence[str], known: Sequence[str], url: str) -> ParameterError:
    """A :class:`ParameterError` for ``columns=`` names that a file does not have."""
    hints = []
    for c in unknown:
        m = close_matches(c, known)
        if m:
            hints.append(f"{c!r} -> did you mean {' or '.join(map(repr, m))}?")
    return ParameterError(
        f"columns {list(unknown)} are not in {url} (nor derivable from its path). "
        + (" ".join(hints) + " " if hints else "")
        + f"It has {len(known)} columns, e.g. {list(known)[:8]}; check columns=, or use "
        "schema='union' if other files have them."
    )
