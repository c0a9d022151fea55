"""Table file formats an export can write, as one table: name, extensions, how to open a writer.

A writer takes Arrow tables of one schema, one after the other (``write_table``), and is
closed once (``close``); its codec comes from the target's name and the format
(``compression(target, given)``), since the writer itself writes a temporary file. The export loop (:mod:`intake_cpg.export`) streams partitions into it
and renames the temporary file onto the target when it is complete. Formats:

* ``parquet`` (``.parquet``, ``.pq``): zstd-compressed, statistics on the non-float columns;
* ``csv`` (``.csv``, ``.csv.gz``): a header line, then rows; ``.csv.gz`` is gzip-compressed.
  CSV has no list type, so tables with list-typed (embedding) columns are refused: load with
  ``expand_embeddings=True`` or write parquet or arrow;
* ``arrow`` (``.arrow``, ``.feather``, ``.ipc``): the Arrow IPC file format, which is Feather
  version 2 (``pyarrow.feather.read_table``, ``polars.read_ipc``, ``pandas.read_feather``),
  zstd-compressed.

>>> import os, tempfile, pyarrow as pa, pyarrow.feather as feather
>>> table = pa.table({"Metadata_Plate": ["1053601756"], "x": [1.5]})
>>> path = os.path.join(tempfile.mkdtemp(), "t.feather")
>>> fmt = format_for(path)
>>> fmt.name
'arrow'
>>> w = fmt.open(path, table.schema, fmt.compression(path, None))
>>> w.write_table(table); w.close()
>>> feather.read_table(path).column("Metadata_Plate").to_pylist()
['1053601756']
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from .errors import ParameterError

__all__ = ["FORMATS", "TableFormat", "TableWriter", "format_for"]


class TableWriter(Protocol):
    """What an export writes through: tables of one schema in order, then ``close()``."""

    def write_table(self, table: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TableFormat:
    """One output format: its name, file extensions and how to open a writer on a path."""

    name: str
    extensions: tuple[str, ...]
    #: ``open(path, schema, compression)``: a writer on ``path`` (a temporary file).
    open: Callable[[str, Any, str | None], TableWriter]
    description: str
    #: ``compression(target, given)``: the codec for the target file (``given`` if not None).
    compression: Callable[[str, str | None], str | None]


def statistics_columns(schema: Any) -> list[str]:
    """Columns worth Parquet min/max statistics: everything but floating-point features."""
    import pyarrow as pa

    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _zstd(target: str, given: str | None) -> str | None:
    return "zstd" if given is None else given


def _gzip_by_name(target: str, given: str | None) -> str | None:
    if given is not None:
        return given
    return "gzip" if target.lower().endswith(".gz") else None


def _open_parquet(path: str, schema: Any, compression: str | None) -> TableWriter:
    import pyarrow.parquet as pq

    return pq.ParquetWriter(
        path, schema, compression=compression, write_statistics=statistics_columns(schema)
    )


class _CSVWriter:
    """``pyarrow.csv.CSVWriter`` on a file it owns (gzip-compressed for ``.gz``)."""

    def __init__(self, path: str, schema: Any, compression: str | None) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
                 or pa.types.is_fixed_size_list(f.type)]  # fmt: skip
        if lists:
            raise ParameterError(
                f"CSV cannot hold list-typed columns {lists[:5]}; load with "
                "expand_embeddings=True (one column per element), or export to parquet or arrow"
            )
        if compression not in (None, "gzip"):
            raise ParameterError(f"CSV is written plain or gzip-compressed, not {compression!r}")
        self._file: Any = gzip.open(path, "wb") if compression else open(path, "wb")  # noqa: SIM115
        try:
            self._writer = pacsv.CSVWriter(self._file, schema)
        except BaseException:
            self._file.close()
            raise

    def write_table(self, table: Any) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._file.close()


def _open_csv(path: str, schema: Any, compression: str | None) -> TableWriter:
    return _CSVWriter(path, schema, compression)


def _open_arrow(path: str, schema: Any, compression: str | None) -> TableWriter:
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression=compression)
    return pa.ipc.new_file(path, schema, options=options)


#: Format name -> format (read-only). ``feather`` is another name of ``arrow``.
FORMATS: Mapping[str, TableFormat] = MappingProxyType(
    {
        "parquet": TableFormat(
            "parquet", (".parquet", ".pq"), _open_parquet, "Parquet, zstd-compressed", _zstd
        ),
        "csv": TableFormat(
            "csv", (".csv", ".csv.gz"), _open_csv, "comma-separated text", _gzip_by_name
        ),
        "arrow": TableFormat(
            "arrow",
            (".arrow", ".feather", ".ipc"),
            _open_arrow,
            "Arrow IPC file (Feather v2), zstd-compressed",
            _zstd,
        ),  # fmt: skip
    }
)
_ALIASES = {"feather": "arrow", "ipc": "arrow", "pq": "parquet"}


def format_for(path: str, format: str | None = None) -> TableFormat:
    """The format named by ``format``, else the one ``path``'s extension says.

    >>> format_for("plates.csv.gz").name, format_for("x.out", "feather").name
    ('csv', 'arrow')
    >>> format_for("x.xlsx")
    Traceback (most recent call last):
    ...
    intake_cpg.errors.ParameterError: cannot tell the output format of 'x.xlsx' from its extension; pass format= one of 'parquet', 'csv', 'arrow', 'feather' (or name the file .parquet, .pq, .csv, .csv.gz, .arrow, .feather, .ipc)
    """
    names = [*FORMATS, "feather"]
    if format is not None:
        key = _ALIASES.get(format.lower(), format.lower())
        if key not in FORMATS:
            raise ParameterError(
                f"unknown output format {format!r}; expected one of {', '.join(map(repr, names))}"
            )
        return FORMATS[key]
    lower = path.lower()
    for fmt in FORMATS.values():
        if lower.endswith(fmt.extensions):
            return fmt
    exts = ", ".join(e for f in FORMATS.values() for e in f.extensions)
    raise ParameterError(
        f"cannot tell the output format of {path!r} from its extension; pass format= one of "
        f"{', '.join(map(repr, names))} (or name the file {exts})"
    )
